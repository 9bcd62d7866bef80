import { type WebSocketConstructor } from "./follow.js";
import { type SubmitOptions, type TaskInput } from "./http.js";
import { type JobView, type Submitted, type TaskTypeInfo } from "./models.js";
export interface FluxgateOptions {
    /** Default `$FLUXGATE_URL` in Node, the page's origin in a browser, else http://localhost:8080. */
    baseUrl?: string;
    /** Default `$FLUXGATE_API_KEY` in Node; none in a browser. */
    apiKey?: string | null;
    /** The WebSocket base when it is not the submit's `urls.ws` (e.g. ws://host:8300). */
    wsUrl?: string;
    /** Seconds per HTTP request, and at most 10 of them for a WebSocket handshake (default 30). */
    timeout?: number;
    /** Retries of 429, 503 and connection errors where safe (default 3). */
    maxRetries?: number;
    /** Seconds one outage of a followed task may last before giving up (default 60). */
    reconnectBudget?: number;
    /** A standard WebSocket constructor; default the platform's (browsers, Node 22+). Without one
     * (Node 20) tasks are followed over server-sent events. */
    WebSocket?: WebSocketConstructor | null;
    /** Default the platform's fetch. */
    fetch?: typeof fetch;
}
/** How `stream` and `wait` follow a task: `auto` is WebSocket, else server-sent events, else
 * polling, each falling back to the next when it cannot be opened at all. */
export type Transport = "auto" | "websocket" | "sse" | "poll";
export interface StreamOptions {
    transport?: Transport;
    /** This task's socket, or a WebSocket base (overrides the client's `wsUrl`). */
    wsUrl?: string;
    signal?: AbortSignal;
}
export interface WaitOptions extends StreamOptions {
    /** Seconds; WaitTimeout when the job has not ended by then (it may still finish). */
    timeout?: number;
    /** Called with every new view while waiting: drives progress bars and event logs. */
    onUpdate?: (view: JobView) => unknown;
}
export type RunOptions = SubmitOptions & Omit<WaitOptions, "signal">;
export interface RequestOptions {
    body?: BodyInit | null;
    /** A value sent as JSON. */
    json?: unknown;
    headers?: Record<string, string>;
    /** Retry after the request may have reached the server (default: GET, HEAD, PUT, DELETE). */
    idempotent?: boolean;
    signal?: AbortSignal;
}
export declare const USER_AGENT = "fluxgate-client-js/0.1.0";
/** Client of a Fluxgate server. */
export declare class Fluxgate {
    readonly baseUrl: string;
    readonly apiKey: string | null;
    readonly wsUrl: string | null;
    readonly timeout: number;
    readonly maxRetries: number;
    readonly reconnectBudget: number;
    private readonly fetcher;
    private readonly WebSocketCtor;
    private readonly knownWs;
    constructor(options?: FluxgateOptions);
    /** Any route, with the client's key, retries and typed errors. */
    request(method: string, url: string, options?: RequestOptions): Promise<Response>;
    /** Queue a job of any type; answers at once. Image fields take a URL, base64, a `data:` URI,
     * or a Blob/File (then the submit is multipart). Safe to retry: it sends an Idempotency-Key. */
    submit(type: string, input: TaskInput, options?: SubmitOptions): Promise<Submitted>;
    /** `submit("flux", input, options)`: FLUX text-to-image through `POST /flux`. */
    flux(input: TaskInput & {
        prompt: string;
    }, options?: SubmitOptions): Promise<Submitted>;
    /** The job's current view (`GET /tasks/{id}`). */
    get(taskId: string, options?: {
        signal?: AbortSignal;
    }): Promise<JobView>;
    /** Cancel a job. A running one answers still `running`: it stops at its next step. A finished
     * one is a ConflictError whose `view` says how it ended. */
    cancel(taskId: string, options?: {
        signal?: AbortSignal;
    }): Promise<JobView>;
    /** Every task type the server takes, with the JSON schema of its input (`GET /task-types`). */
    taskTypes(options?: {
        signal?: AbortSignal;
    }): Promise<TaskTypeInfo[]>;
    /** The job's views as they happen, the current one first, until it ends. Reconnects after a
     * drop (the server's snapshot on the new connection covers what was missed) and never yields
     * the same or an older view twice (`seq`). Breaking out of the loop closes the connection. */
    stream(taskId: string, options?: WaitOptions): AsyncGenerator<JobView, void, undefined>;
    /** The job's final view, whatever it is; WaitTimeout when `timeout` passes first. */
    wait(taskId: string, options?: WaitOptions): Promise<JobView>;
    /** Submit and wait: the succeeded view, else TaskFailedError / TaskCanceledError. */
    run(type: string, input: TaskInput, options?: RunOptions): Promise<JobView>;
    /** The bytes at a URL (an image of a result or a preview). */
    download(url: string, options?: {
        signal?: AbortSignal;
    }): Promise<Uint8Array>;
    /** The calling key's jobs, compute seconds and cost per task type and UTC day. */
    usage(since?: string, until?: string): Promise<Record<string, unknown>>;
    private remember;
    private follow;
    /** One transport's connections, reopened after each drop until the task ends. */
    private reconnecting;
    private poll;
    /** Explicit argument, then a submit's `urls.ws`, then the client option, then the server's
     * own `urls.ws` for the task (which also says at once when there is no such task). */
    private socketUrl;
    private eventsUrl;
    private authHeaders;
}
/** `run`'s contract: a succeeded view, or the error that says how the job ended. */
export declare function finalOrRaise(view: JobView): JobView;
