// HTTP plumbing: request shapes, the error an answer means, and when a request is retried.
import { APIError, AuthenticationError, BadRequestError, ConflictError, NotFoundError, RateLimitError, ServerError, ServiceUnavailableError, UnsupportedTaskTypeError, isRecord, } from "./errors.js";
export const VERSION = "0.1.0";
export const DEFAULT_URL = "http://localhost:8080";
// A server may ask for minutes; a client call blocked that long looks hung, so each wait is capped.
export const RETRY_AFTER_CAP_S = 30;
function env(name) {
    // Node has `process.env`; a browser has no environment, and the defaults apply.
    const proc = globalThis.process;
    return proc?.env?.[name] || undefined;
}
export function resolveBaseUrl(baseUrl) {
    const found = baseUrl ?? env("FLUXGATE_URL") ?? defaultOrigin() ?? DEFAULT_URL;
    return found.replace(/\/+$/, "");
}
function defaultOrigin() {
    // In a page served by the gateway itself, the API is the page's own origin.
    const location = globalThis.location;
    return location?.origin && location.origin !== "null" ? location.origin : undefined;
}
export function resolveApiKey(apiKey) {
    if (apiKey !== undefined)
        return apiKey || null;
    return env("FLUXGATE_API_KEY") ?? null;
}
/** The API key goes only to our own server, never to a host named in a response. */
export function sameOrigin(url, base) {
    return new URL(url, base).origin === new URL(base).origin;
}
/** Whether `url` is on the host of `base`, whatever the scheme and port (an API and its
 * WebSocket endpoint may answer on different ports of one host). */
export function sameHost(url, base) {
    return new URL(url, base).hostname === new URL(base).hostname;
}
/** `Retry-After` as seconds (a number or an HTTP date), or null when absent or unreadable. */
export function parseRetryAfter(headers) {
    const value = headers.get("retry-after");
    if (!value)
        return null;
    if (/^\s*\d+(\.\d+)?\s*$/.test(value))
        return Math.max(Number(value), 0);
    const when = Date.parse(value);
    return Number.isNaN(when) ? null : Math.max((when - Date.now()) / 1000, 0);
}
/** The typed error for a non-2xx answer, from the server's `{"error": {...}}` body. */
export async function errorFromResponse(response) {
    const text = await response.text().catch(() => "");
    let body = text;
    try {
        body = JSON.parse(text);
    }
    catch {
        // not JSON: a proxy's page, most likely
    }
    const error = isRecord(body) ? body["error"] : undefined;
    const status = response.status;
    let code;
    let message;
    let field = null;
    if (isRecord(error)) {
        code = String(error["code"] || "http_error");
        message = String(error["message"] || response.statusText || "HTTP error");
        field = error["field"] == null ? null : String(error["field"]);
    }
    else {
        // Keep a little of the page for the message.
        const snippet = String(text).split(/\s+/).join(" ").trim().slice(0, 200);
        code = "http_error";
        message = (response.statusText || "HTTP error") + (snippet ? `: ${snippet}` : "");
    }
    if (status === 429 || status === 503) {
        const Kind = status === 429 ? RateLimitError : ServiceUnavailableError;
        return new Kind(status, code, message, field, body, parseRetryAfter(response.headers));
    }
    return new (errorClass(status))(status, code, message, field, body);
}
function errorClass(status) {
    if (status === 400 || status === 413 || status === 422)
        return BadRequestError;
    if (status === 401)
        return AuthenticationError;
    if (status === 404)
        return NotFoundError;
    if (status === 409)
        return ConflictError;
    return status >= 500 ? ServerError : APIError;
}
export function backoffS(attempt, base = 0.5, cap = 8) {
    // Jitter keeps many clients that failed together from retrying together.
    return Math.min(cap, base * 2 ** attempt) * (0.5 + Math.random() / 2);
}
/** Seconds to wait before retrying this answer, or null to give up on it. */
export async function retryAfterStatus(attempt, maxRetries, response) {
    if (attempt >= maxRetries)
        return null;
    if (response.status !== 429 && response.status !== 503 && !(await inProgress(response)))
        return null;
    const asked = parseRetryAfter(response.headers);
    return asked === null ? backoffS(attempt) : Math.min(asked, RETRY_AFTER_CAP_S);
}
/** 409 `idempotency_in_progress`: the same submit is still being accepted; ask again. */
async function inProgress(response) {
    if (response.status !== 409)
        return false;
    try {
        const body = await response.clone().json();
        return isRecord(body) && isRecord(body["error"]) && body["error"]["code"] === "idempotency_in_progress";
    }
    catch {
        return false;
    }
}
export function taskPath(taskId, suffix = "") {
    // Encoded so an id can never walk to another route.
    return `/tasks/${encodeURIComponent(taskId)}${suffix}`;
}
export function formatSeconds(value) {
    if (typeof value === "string")
        return value;
    return Number.isInteger(value) ? String(value) : value.toFixed(3).replace(/0+$/, "");
}
function isBlob(value) {
    return typeof Blob !== "undefined" && value instanceof Blob;
}
/** The route and body of a submit: `/flux` takes a flat JSON body, `/tasks` a typed envelope,
 * as multipart when an input field holds a Blob (the file part is named after the field). */
export function submitRequest(type, input, options) {
    const delivery = {};
    if (options.webhookUrl !== undefined)
        delivery["webhook_url"] = options.webhookUrl;
    if (options.webhookEvents !== undefined)
        delivery["webhook_events"] = [...options.webhookEvents];
    if (options.priority !== undefined)
        delivery["priority"] = options.priority;
    if (options.cache !== undefined)
        delivery["cache"] = options.cache;
    const files = Object.entries(input).filter((entry) => isBlob(entry[1]));
    if (files.length === 0) {
        if (type === "flux")
            return { path: "/flux", body: JSON.stringify({ ...input, ...delivery }), json: true };
        return { path: "/tasks", body: JSON.stringify({ type, input, ...delivery }), json: true };
    }
    const form = new FormData();
    form.append("type", type);
    const fields = Object.fromEntries(Object.entries(input).filter(([, value]) => !isBlob(value)));
    form.append("input", JSON.stringify(fields));
    for (const [name, value] of Object.entries(delivery)) {
        form.append(name, Array.isArray(value) ? value.join(",") : String(value));
    }
    for (const [name, blob] of files) {
        const fileName = typeof File !== "undefined" && blob instanceof File ? blob.name : name;
        form.append(name, blob, fileName);
    }
    return { path: "/tasks", body: form, json: false };
}
export function submitHeaders(options) {
    // One key per submit call, reused by its retries: a retried POST can never make two jobs.
    const headers = { "Idempotency-Key": options.idempotencyKey ?? crypto.randomUUID() };
    if (options.cancelAfter !== undefined)
        headers["Cancel-After"] = formatSeconds(options.cancelAfter);
    return headers;
}
export function unsupportedType(type, error) {
    return new UnsupportedTaskTypeError(error.statusCode, "unsupported_task_type", `this server does not accept task type '${type}' (POST /tasks answered ${error.statusCode} ${error.code}); 'flux' is always available`, "type", error.body);
}
