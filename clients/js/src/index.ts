// TypeScript client of Fluxgate: submit AI image jobs, follow them live, verify webhooks.
export { Fluxgate, USER_AGENT, finalOrRaise } from "./client.js";
export type { FluxgateOptions, RequestOptions, RunOptions, StreamOptions, Transport, WaitOptions } from "./client.js";
export {
  APIError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  ConnectionFailed,
  FluxgateError,
  NotFoundError,
  RateLimitError,
  ServerError,
  ServiceUnavailableError,
  TaskCanceledError,
  TaskError,
  TaskFailedError,
  UnsupportedTaskTypeError,
  WaitTimeout,
  WebSocketUnavailable,
  WebhookVerificationError,
} from "./errors.js";
export type { WebSocketConstructor } from "./follow.js";
export { VERSION } from "./http.js";
export type { SubmitOptions, TaskInput } from "./http.js";
export { TERMINAL_STATUSES, isTerminal } from "./models.js";
export type { ImageOutput, JobView, Preview, Submitted, TaskErrorInfo, TaskResult, TaskStatus, TaskTypeInfo, TaskUrls, WebhookMessage } from "./models.js";
export { DEFAULT_TOLERANCE_S, verifyWebhook } from "./webhooks.js";
export type { WebhookHeaders, VerifyOptions } from "./webhooks.js";
