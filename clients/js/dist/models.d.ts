export type TaskStatus = "queued" | "running" | "succeeded" | "failed" | "canceled" | "expired";
/** The statuses a job never leaves. */
export declare const TERMINAL_STATUSES: ReadonlySet<string>;
/** Where a task can be read, canceled and followed, as the server announced them. */
export interface TaskUrls {
    status: string;
    cancel: string;
    ws: string;
    /** Server-sent events of the task (`GET /tasks/{id}/events`). */
    events?: string;
}
/** A small image of a running job's current latents (asked for with `preview: true`). */
export interface Preview {
    url: string;
    content_type: string;
    step: number;
    total: number;
    width: number;
    height: number;
}
export interface ImageOutput {
    url: string;
    content_type: string;
    width: number;
    height: number;
    seed?: number | null;
    /** With `?include=base64` only. */
    base64?: string;
    [key: string]: unknown;
}
export interface TaskResult {
    images: ImageOutput[];
    timings?: Record<string, unknown>;
    /** Type-specific keys beside `images` (`faces`, `mask`, `prompt`, ...). */
    [key: string]: unknown;
}
export interface TaskErrorInfo {
    code: string;
    message: string;
    [key: string]: unknown;
}
/** One job as the server sees it: the same shape from status, WebSocket, SSE and webhooks.
 * Fields the server adds later are kept (the index signature), so an older client keeps working. */
export interface JobView {
    task_id: string;
    type: string;
    status: TaskStatus | (string & {});
    /** 0..100, never decreasing. */
    progress: number;
    /** Numbers every change of the job; a view with a lower one is older. */
    seq: number;
    created_at: string | null;
    started_at: string | null;
    finished_at: string | null;
    /** While queued: jobs that start before this one in its queue (0: next). */
    queue_position: number | null;
    /** While queued: what the job waits for (`model_server`, `capacity`, `identical_job`). */
    waiting_for?: string | null;
    result: TaskResult | null;
    error: TaskErrorInfo | null;
    urls: TaskUrls | null;
    /** Stage durations (`queued_ms`, `running_ms`, `delivery_ms`), null until known. */
    timings?: Record<string, number | null> | null;
    /** What the job costs in megapixel-steps; null from a server that does not say. */
    cost?: number | null;
    /** While running, for a job that asked for previews: the latest one. */
    preview?: Preview | null;
    cached?: boolean;
    /** On streamed views: `snapshot` (always first), `started`, `progress`, `waiting`,
     * `succeeded`, `failed`, `canceled`, `expired`. Absent from `get`. */
    event?: string;
    [key: string]: unknown;
}
/** The answer to a submit: the task is accepted (or was already, for a replayed key). */
export interface Submitted {
    task_id: string;
    status: string;
    urls: TaskUrls | null;
    /** True when the server answered with an earlier submit of the same Idempotency-Key. */
    replayed: boolean;
    [key: string]: unknown;
}
/** One entry of `GET /task-types`. */
export interface TaskTypeInfo {
    name: string;
    queue: string;
    runs_on: string;
    description: string;
    /** Input fields that take an image (a URL, base64, a `data:` URI, or an uploaded Blob). */
    image_fields: string[];
    result_keys: Record<string, string>;
    /** False when a setting the type needs is missing (submits then answer 503). */
    available: boolean;
    /** The JSON schema of the type's `input`. */
    input_schema: Record<string, unknown>;
}
/** A verified webhook message. */
export interface WebhookMessage {
    /** `task.started`, `task.progress`, `task.succeeded`, ... */
    type: string;
    timestamp: string;
    data: JobView;
    [key: string]: unknown;
}
export declare function isTerminal(view: Pick<JobView, "status">): boolean;
