import type { JobView } from "./models.js";
/** Base of everything this package throws on purpose. */
export declare class FluxgateError extends Error {
    constructor(message: string, options?: {
        cause?: unknown;
    });
}
/** The server answered with an error: `{"error": {"code", "message", "field"?}, "task"?}`. */
export declare class APIError extends FluxgateError {
    readonly statusCode: number;
    readonly code: string;
    /** The input the server blamed (`width`, `input.image`), when it named one. */
    readonly field: string | null;
    /** The whole answer body: parsed JSON, or text when it was not ours. */
    readonly body: unknown;
    constructor(statusCode: number, code: string, message: string, field?: string | null, body?: unknown);
    toString(): string;
}
/** 400, 413 or 422: the request itself is wrong; `field` names the culprit when known. */
export declare class BadRequestError extends APIError {
}
/** The server does not serve this task type (`POST /tasks` refused the `type`, or the server is
 * older and has no `POST /tasks`). */
export declare class UnsupportedTaskTypeError extends BadRequestError {
}
/** 401: the API key is missing, unknown or revoked (a WebSocket closed with 4401 too). */
export declare class AuthenticationError extends APIError {
}
/** 404: no such task, or one that belongs to another API key (a WebSocket closed with 4404). */
export declare class NotFoundError extends APIError {
}
/** 409: e.g. canceling a finished job, or an Idempotency-Key reused with another body. */
export declare class ConflictError extends APIError {
    /** The task's view when the answer carried one (`"task"`): how the job ended. */
    get view(): JobView | null;
}
/** 429: the key's submit rate or its cap on active jobs is reached (after retries). */
export declare class RateLimitError extends APIError {
    /** Seconds the server asked us to wait (`Retry-After`), when it said. */
    readonly retryAfter: number | null;
    constructor(statusCode: number, code: string, message: string, field: string | null, body: unknown, retryAfter: number | null);
}
/** 503: Redis or the queue is down, or no model is configured (after retries). */
export declare class ServiceUnavailableError extends APIError {
    /** Seconds the server asked us to wait (`Retry-After`), when it said. */
    readonly retryAfter: number | null;
    constructor(statusCode: number, code: string, message: string, field: string | null, body: unknown, retryAfter: number | null);
}
/** Any other 5xx. */
export declare class ServerError extends APIError {
}
/** A job ended without succeeding; `view` is its final state. */
export declare class TaskError extends FluxgateError {
    readonly view: JobView;
    constructor(view: JobView);
}
/** The job ended `failed`. */
export declare class TaskFailedError extends TaskError {
}
/** The job ended `canceled` or `expired`. */
export declare class TaskCanceledError extends TaskError {
}
/** The job did not end within the time given to `wait` or `run`; it may still finish. */
export declare class WaitTimeout extends FluxgateError {
    readonly taskId: string | null;
    constructor(message: string, taskId?: string | null);
}
/** The server could not be reached (after retries where they were safe). */
export declare class ConnectionFailed extends FluxgateError {
}
/** The task's WebSocket could not be opened, or stayed down past the reconnect budget. */
export declare class WebSocketUnavailable extends ConnectionFailed {
}
/** A webhook's signature, timestamp or body is not acceptable: answer it with a 4xx. */
export declare class WebhookVerificationError extends FluxgateError {
}
export declare function isRecord(value: unknown): value is Record<string, unknown>;
