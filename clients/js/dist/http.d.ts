import { APIError, UnsupportedTaskTypeError } from "./errors.js";
export declare const VERSION = "0.1.0";
export declare const DEFAULT_URL = "http://localhost:8080";
export declare const RETRY_AFTER_CAP_S = 30;
/** Delivery fields and headers of a submit; `run` takes them too. */
export interface SubmitOptions {
    webhookUrl?: string;
    /** A subset of `started`, `progress`, `completed` (`completed` is always sent). */
    webhookEvents?: Iterable<string>;
    /** 0..9, 9 most urgent (default 5). */
    priority?: number;
    /** Answer from an identical request's stored result (a job with an explicit seed). */
    cache?: boolean;
    /** Reuse to make a retry the same submit; one is made per call when absent. */
    idempotencyKey?: string;
    /** Seconds (or `30s`, `5m`, `1h`): a job still queued then expires, a running one stops. */
    cancelAfter?: number | string;
    signal?: AbortSignal;
}
/** An input for `submit`: JSON values, and Blobs (Files) for image fields, sent as multipart. */
export type TaskInput = Record<string, unknown>;
export declare function resolveBaseUrl(baseUrl: string | undefined): string;
export declare function resolveApiKey(apiKey: string | null | undefined): string | null;
/** The API key goes only to our own server, never to a host named in a response. */
export declare function sameOrigin(url: string, base: string): boolean;
/** Whether `url` is on the host of `base`, whatever the scheme and port (an API and its
 * WebSocket endpoint may answer on different ports of one host). */
export declare function sameHost(url: string, base: string): boolean;
/** `Retry-After` as seconds (a number or an HTTP date), or null when absent or unreadable. */
export declare function parseRetryAfter(headers: Headers): number | null;
/** The typed error for a non-2xx answer, from the server's `{"error": {...}}` body. */
export declare function errorFromResponse(response: Response): Promise<APIError>;
export declare function backoffS(attempt: number, base?: number, cap?: number): number;
/** Seconds to wait before retrying this answer, or null to give up on it. */
export declare function retryAfterStatus(attempt: number, maxRetries: number, response: Response): Promise<number | null>;
export declare function taskPath(taskId: string, suffix?: string): string;
export declare function formatSeconds(value: number | string): string;
/** The route and body of a submit: `/flux` takes a flat JSON body, `/tasks` a typed envelope,
 * as multipart when an input field holds a Blob (the file part is named after the field). */
export declare function submitRequest(type: string, input: TaskInput, options: SubmitOptions): {
    path: string;
    body: string | FormData;
    json: boolean;
};
export declare function submitHeaders(options: SubmitOptions): Record<string, string>;
export declare function unsupportedType(type: string, error: APIError): UnsupportedTaskTypeError;
