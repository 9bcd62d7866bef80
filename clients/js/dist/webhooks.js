// Verifying Fluxgate's webhooks, signed the Standard Webhooks way (standardwebhooks.com), with
// WebCrypto's HMAC-SHA256: the same code in browsers, Node 20+, Deno, Bun and edge runtimes.
import { WebhookVerificationError, isRecord } from "./errors.js";
export const DEFAULT_TOLERANCE_S = 300;
const encoder = new TextEncoder();
function header(headers, name) {
    if (typeof Headers !== "undefined" && headers instanceof Headers)
        return headers.get(name) ?? undefined;
    for (const [key, value] of Object.entries(headers)) {
        if (key.toLowerCase() === name)
            return Array.isArray(value) ? value.join(" ") : value;
    }
    return undefined;
}
function fromBase64(text) {
    try {
        const binary = atob(text);
        const bytes = new Uint8Array(binary.length);
        for (let i = 0; i < binary.length; i++)
            bytes[i] = binary.charCodeAt(i);
        return bytes;
    }
    catch {
        return null;
    }
}
/** The HMAC key of a `whsec_<base64>` secret is its base64-decoded part, as the spec says. */
function keyBytes(secret) {
    const bytes = fromBase64(secret.replace(/^whsec_/, ""));
    if (bytes === null)
        throw new TypeError("a webhook secret looks like whsec_<base64>");
    return bytes;
}
function toBytes(body) {
    if (typeof body === "string")
        return encoder.encode(body);
    if (body instanceof ArrayBuffer)
        return new Uint8Array(body);
    return new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
}
/** The parsed message (`{type, timestamp, data}`) of a genuine, fresh webhook.
 *
 * `body` must be the raw body received (not re-serialised JSON). `secret` may be a list while a
 * secret is being rotated: any one of them may have signed. Throws WebhookVerificationError for
 * anything that is not a valid, fresh signature of `body`. */
export async function verifyWebhook(headers, body, secret, options = {}) {
    const msgId = header(headers, "webhook-id");
    const timestamp = header(headers, "webhook-timestamp");
    const signatures = header(headers, "webhook-signature");
    if (!msgId || !timestamp || !signatures) {
        throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header");
    }
    if (!/^\d+$/.test(timestamp))
        throw new WebhookVerificationError(`webhook-timestamp is not a Unix time: '${timestamp}'`);
    // A captured message replayed later must fail, however valid its signature.
    const tolerance = options.toleranceS ?? DEFAULT_TOLERANCE_S;
    const age = (options.now ?? Date.now() / 1000) - Number(timestamp);
    if (Math.abs(age) > tolerance) {
        throw new WebhookVerificationError(`webhook-timestamp is ${Math.abs(age).toFixed(0)} s ${age > 0 ? "old" : "in the future"} (tolerance ${tolerance} s)`);
    }
    const secrets = typeof secret === "string" ? [secret] : [...secret];
    if (secrets.length === 0)
        throw new TypeError("no webhook secret given");
    const raw = toBytes(body);
    const signed = new Uint8Array([...encoder.encode(`${msgId}.${timestamp}.`), ...raw]);
    const keys = await Promise.all(secrets.map((each) => crypto.subtle.importKey("raw", keyBytes(each), { name: "HMAC", hash: "SHA-256" }, false, ["verify"])));
    const candidates = signatures
        .split(/\s+/)
        .map((part) => part.split(","))
        .filter(([version, signature]) => version === "v1" && signature)
        .map(([, signature]) => fromBase64(signature ?? ""))
        .filter((bytes) => bytes !== null);
    // WebCrypto's verify compares in constant time; every pair is tried, with no early exit that
    // would time which one matched.
    const outcomes = await Promise.all(candidates.flatMap((candidate) => keys.map((key) => crypto.subtle.verify("HMAC", key, candidate, signed))));
    if (!outcomes.includes(true))
        throw new WebhookVerificationError("no webhook-signature matches the body");
    let message;
    try {
        message = JSON.parse(new TextDecoder().decode(raw));
    }
    catch {
        throw new WebhookVerificationError("the webhook body is not JSON");
    }
    if (!isRecord(message))
        throw new WebhookVerificationError("the webhook body is not a JSON object");
    return message;
}
