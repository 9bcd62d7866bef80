import type { WebhookMessage } from "./models.js";
export declare const DEFAULT_TOLERANCE_S = 300;
/** A Fetch `Headers`, a plain object, or Node's `IncomingHttpHeaders`; names are case-insensitive. */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;
export interface VerifyOptions {
    /** Seconds a message's timestamp may be away from now (default 300). */
    toleranceS?: number;
    /** Unix seconds to check the timestamp against (default: the clock). */
    now?: number;
}
/** The parsed message (`{type, timestamp, data}`) of a genuine, fresh webhook.
 *
 * `body` must be the raw body received (not re-serialised JSON). `secret` may be a list while a
 * secret is being rotated: any one of them may have signed. Throws WebhookVerificationError for
 * anything that is not a valid, fresh signature of `body`. */
export declare function verifyWebhook(headers: WebhookHeaders, body: string | ArrayBuffer | ArrayBufferView, secret: string | readonly string[], options?: VerifyOptions): Promise<WebhookMessage>;
