// Every error the client throws; catch `FluxgateError` to catch them all. The same classes, and
// the same cases for each, as the Python client's `fluxgate_client.errors`.
import type { JobView } from "./models.js";

/** Base of everything this package throws on purpose. */
export class FluxgateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    // `name` is the class's own, so logs and `String(error)` say which one it is.
    this.name = new.target.name;
  }
}

/** The server answered with an error: `{"error": {"code", "message", "field"?}, "task"?}`. */
export class APIError extends FluxgateError {
  readonly statusCode: number;
  readonly code: string;
  /** The input the server blamed (`width`, `input.image`), when it named one. */
  readonly field: string | null;
  /** The whole answer body: parsed JSON, or text when it was not ours. */
  readonly body: unknown;

  constructor(statusCode: number, code: string, message: string, field: string | null = null, body: unknown = null) {
    const where = field ? ` (field ${field})` : "";
    // The stack (what a log shows) starts with status, code and field; `message` is then the
    // server's own words, as Python's `APIError.message`, fit to show a user.
    super(`${statusCode} ${code}${where}: ${message}`);
    this.message = message;
    this.statusCode = statusCode;
    this.code = code;
    this.field = field;
    this.body = body;
  }

  override toString(): string {
    const where = this.field ? ` (field ${this.field})` : "";
    return `${this.name}: ${this.statusCode} ${this.code}${where}: ${this.message}`;
  }
}

/** 400, 413 or 422: the request itself is wrong; `field` names the culprit when known. */
export class BadRequestError extends APIError {}

/** The server does not serve this task type (`POST /tasks` refused the `type`, or the server is
 * older and has no `POST /tasks`). */
export class UnsupportedTaskTypeError extends BadRequestError {}

/** 401: the API key is missing, unknown or revoked (a WebSocket closed with 4401 too). */
export class AuthenticationError extends APIError {}

/** 404: no such task, or one that belongs to another API key (a WebSocket closed with 4404). */
export class NotFoundError extends APIError {}

/** 409: e.g. canceling a finished job, or an Idempotency-Key reused with another body. */
export class ConflictError extends APIError {
  /** The task's view when the answer carried one (`"task"`): how the job ended. */
  get view(): JobView | null {
    const task = isRecord(this.body) ? this.body["task"] : undefined;
    return isRecord(task) ? (task as unknown as JobView) : null;
  }
}

/** 429: the key's submit rate or its cap on active jobs is reached (after retries). */
export class RateLimitError extends APIError {
  /** Seconds the server asked us to wait (`Retry-After`), when it said. */
  readonly retryAfter: number | null;

  constructor(statusCode: number, code: string, message: string, field: string | null, body: unknown, retryAfter: number | null) {
    super(statusCode, code, message, field, body);
    this.retryAfter = retryAfter;
  }
}

/** 503: Redis or the queue is down, or no model is configured (after retries). */
export class ServiceUnavailableError extends APIError {
  /** Seconds the server asked us to wait (`Retry-After`), when it said. */
  readonly retryAfter: number | null;

  constructor(statusCode: number, code: string, message: string, field: string | null, body: unknown, retryAfter: number | null) {
    super(statusCode, code, message, field, body);
    this.retryAfter = retryAfter;
  }
}

/** Any other 5xx. */
export class ServerError extends APIError {}

/** A job ended without succeeding; `view` is its final state. */
export class TaskError extends FluxgateError {
  readonly view: JobView;

  constructor(view: JobView) {
    const detail = view.error ? `: ${view.error.code}: ${view.error.message}` : "";
    super(`task ${view.task_id} ${view.status}${detail}`);
    this.view = view;
  }
}

/** The job ended `failed`. */
export class TaskFailedError extends TaskError {}

/** The job ended `canceled` or `expired`. */
export class TaskCanceledError extends TaskError {}

/** The job did not end within the time given to `wait` or `run`; it may still finish. */
export class WaitTimeout extends FluxgateError {
  readonly taskId: string | null;

  constructor(message: string, taskId: string | null = null) {
    super(message);
    this.taskId = taskId;
  }
}

/** The server could not be reached (after retries where they were safe). */
export class ConnectionFailed extends FluxgateError {}

/** The task's WebSocket could not be opened, or stayed down past the reconnect budget. */
export class WebSocketUnavailable extends ConnectionFailed {}

/** A webhook's signature, timestamp or body is not acceptable: answer it with a 4xx. */
export class WebhookVerificationError extends FluxgateError {}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
