// `Fluxgate`: the client. Every call is async (the platform's fetch, WebSocket and WebCrypto).
import { APIError, ConnectionFailed, FluxgateError, TaskCanceledError, TaskFailedError, WebSocketUnavailable } from "./errors.js";
import {
  Backoff,
  Deadline,
  Dropped,
  FIRST_CONNECT_BUDGET_S,
  NotOpened,
  POLL_START_S,
  SeqFilter,
  type WebSocketConstructor,
  eventStreamViews,
  nextPollDelay,
  sleep,
  socketViews,
  taskWsUrl,
  withToken,
} from "./follow.js";
import {
  type SubmitOptions,
  type TaskInput,
  VERSION,
  backoffS,
  errorFromResponse,
  resolveApiKey,
  resolveBaseUrl,
  retryAfterStatus,
  sameHost,
  sameOrigin,
  submitHeaders,
  submitRequest,
  taskPath,
  unsupportedType,
} from "./http.js";
import { type JobView, type Submitted, type TaskTypeInfo, isTerminal } from "./models.js";

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

export const USER_AGENT = `fluxgate-client-js/${VERSION}`;
// A WebSocket handshake not done by then has failed (at most the client's `timeout`).
const WS_OPEN_TIMEOUT_S = 10;

/** Client of a Fluxgate server. */
export class Fluxgate {
  readonly baseUrl: string;
  readonly apiKey: string | null;
  readonly wsUrl: string | null;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly reconnectBudget: number;
  private readonly fetcher: typeof fetch;
  private readonly WebSocketCtor: WebSocketConstructor | null;
  // The `urls.ws` of recent submits: the server knows best where its WebSockets live.
  private readonly knownWs = new Map<string, string>();

  constructor(options: FluxgateOptions = {}) {
    this.baseUrl = resolveBaseUrl(options.baseUrl);
    this.apiKey = resolveApiKey(options.apiKey);
    this.wsUrl = options.wsUrl ?? null;
    this.timeout = options.timeout ?? 30;
    this.maxRetries = options.maxRetries ?? 3;
    this.reconnectBudget = options.reconnectBudget ?? 60;
    this.fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
    const platform = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? null;
    this.WebSocketCtor = options.WebSocket === undefined ? platform : options.WebSocket;
  }

  // --- HTTP -----------------------------------------------------------------------------------

  /** Any route, with the client's key, retries and typed errors. */
  async request(method: string, url: string, options: RequestOptions = {}): Promise<Response> {
    const verb = method.toUpperCase();
    const idempotent = options.idempotent ?? ["GET", "HEAD", "PUT", "DELETE"].includes(verb);
    const target = new URL(url, this.baseUrl + "/").toString();
    const headers: Record<string, string> = { ...options.headers };
    let body = options.body ?? null;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers["Content-Type"] ??= "application/json";
    }
    if (this.apiKey && !hasHeader(headers, "authorization") && sameOrigin(target, this.baseUrl)) {
      headers["Authorization"] = `Bearer ${this.apiKey}`;
    }
    // Browsers refuse to let a page set User-Agent; Node sends it.
    if (typeof (globalThis as { window?: unknown }).window === "undefined") headers["User-Agent"] ??= USER_AGENT;
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.fetcher(target, { method: verb, headers, body, signal: timeoutSignal(this.timeout, options.signal) });
      } catch (error) {
        if (options.signal?.aborted) throw options.signal.reason;
        // fetch cannot tell "never sent" from "sent, answer lost": retry only what is safe twice.
        if (idempotent && attempt < this.maxRetries) {
          await delay(backoffS(attempt), options.signal);
          continue;
        }
        throw new ConnectionFailed(`${verb} ${target}: ${describe(error)}`, { cause: error });
      }
      if (response.status < 400) return response;
      const wait = await retryAfterStatus(attempt, this.maxRetries, response);
      if (wait === null) throw await errorFromResponse(response);
      await response.body?.cancel().catch(() => undefined);
      await delay(wait, options.signal);
    }
  }

  // --- tasks ----------------------------------------------------------------------------------

  /** Queue a job of any type; answers at once. Image fields take a URL, base64, a `data:` URI,
   * or a Blob/File (then the submit is multipart). Safe to retry: it sends an Idempotency-Key. */
  async submit(type: string, input: TaskInput, options: SubmitOptions = {}): Promise<Submitted> {
    const { path, body, json } = submitRequest(type, input, options);
    const headers = submitHeaders(options);
    if (json) headers["Content-Type"] = "application/json";
    let response: Response;
    try {
      response = await this.request("POST", path, { body, headers, idempotent: true, ...signalOf(options.signal) });
    } catch (error) {
      // 422 on `type`: not a type this server has; 404/405: a server without POST /tasks.
      if (path === "/tasks" && error instanceof APIError && ([404, 405].includes(error.statusCode) || (error.statusCode === 422 && error.field === "type"))) {
        throw unsupportedType(type, error);
      }
      throw error;
    }
    const answer = (await response.json()) as Submitted;
    const submitted: Submitted = { ...answer, replayed: response.headers.get("idempotent-replayed")?.toLowerCase() === "true" };
    if (submitted.urls?.ws) this.remember(submitted.task_id, submitted.urls.ws);
    return submitted;
  }

  /** `submit("flux", input, options)`: FLUX text-to-image through `POST /flux`. */
  flux(input: TaskInput & { prompt: string }, options: SubmitOptions = {}): Promise<Submitted> {
    return this.submit("flux", input, options);
  }

  /** The job's current view (`GET /tasks/{id}`). */
  async get(taskId: string, options: { signal?: AbortSignal } = {}): Promise<JobView> {
    return (await (await this.request("GET", taskPath(taskId), signalOf(options.signal))).json()) as JobView;
  }

  /** Cancel a job. A running one answers still `running`: it stops at its next step. A finished
   * one is a ConflictError whose `view` says how it ended. */
  async cancel(taskId: string, options: { signal?: AbortSignal } = {}): Promise<JobView> {
    const response = await this.request("POST", taskPath(taskId, "/cancel"), { idempotent: true, ...signalOf(options.signal) });
    return (await response.json()) as JobView;
  }

  /** Every task type the server takes, with the JSON schema of its input (`GET /task-types`). */
  async taskTypes(options: { signal?: AbortSignal } = {}): Promise<TaskTypeInfo[]> {
    return (await (await this.request("GET", "/task-types", signalOf(options.signal))).json()) as TaskTypeInfo[];
  }

  /** The job's views as they happen, the current one first, until it ends. Reconnects after a
   * drop (the server's snapshot on the new connection covers what was missed) and never yields
   * the same or an older view twice (`seq`). Breaking out of the loop closes the connection. */
  async *stream(taskId: string, options: WaitOptions = {}): AsyncGenerator<JobView, void, undefined> {
    const deadline = new Deadline(options.timeout, taskId, options.signal);
    const seen = new SeqFilter();
    try {
      for await (const view of this.follow(taskId, options, deadline)) {
        if (seen.fresh(view)) yield view;
      }
    } finally {
      deadline.dispose();
    }
  }

  /** The job's final view, whatever it is; WaitTimeout when `timeout` passes first. */
  async wait(taskId: string, options: WaitOptions = {}): Promise<JobView> {
    let last: JobView | null = null;
    for await (const view of this.stream(taskId, options)) {
      await options.onUpdate?.(view);
      last = view;
    }
    if (last === null) throw new FluxgateError(`the stream of task ${taskId} ended without a view`);
    return last;
  }

  /** Submit and wait: the succeeded view, else TaskFailedError / TaskCanceledError. */
  async run(type: string, input: TaskInput, options: RunOptions = {}): Promise<JobView> {
    const submitted = await this.submit(type, input, options);
    return finalOrRaise(await this.wait(submitted.task_id, options));
  }

  /** The bytes at a URL (an image of a result or a preview). */
  async download(url: string, options: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
    const response = await this.request("GET", url, signalOf(options.signal));
    return new Uint8Array(await response.arrayBuffer());
  }

  /** The calling key's jobs, compute seconds and cost per task type and UTC day. */
  async usage(since?: string, until?: string): Promise<Record<string, unknown>> {
    const params = new URLSearchParams();
    if (since !== undefined) params.set("since", since);
    if (until !== undefined) params.set("until", until);
    const query = params.size ? `?${params}` : "";
    return (await (await this.request("GET", `/usage${query}`)).json()) as Record<string, unknown>;
  }

  // --- following ------------------------------------------------------------------------------

  private remember(taskId: string, url: string): void {
    this.knownWs.delete(taskId);
    this.knownWs.set(taskId, url);
    if (this.knownWs.size > 1024) this.knownWs.delete(this.knownWs.keys().next().value as string);
  }

  private async *follow(taskId: string, options: StreamOptions, deadline: Deadline): AsyncGenerator<JobView> {
    const transport = options.transport ?? "auto";
    const Ctor = this.WebSocketCtor;
    if (transport === "websocket" && Ctor === null) {
      throw new WebSocketUnavailable("no WebSocket in this runtime: pass the WebSocket option (Node 20: --experimental-websocket), or use transport 'sse'");
    }
    if ((transport === "auto" || transport === "websocket") && Ctor !== null) {
      const open = async (): Promise<AsyncGenerator<JobView>> => {
        const socket = await this.socketUrl(taskId, options.wsUrl, deadline);
        // The key rides in the URL (browsers cannot set socket headers): only to the API's own
        // host or a WebSocket host this client was given, never to one a response named.
        const bases = [this.baseUrl, options.wsUrl, this.wsUrl];
        const trusted = bases.some((base) => typeof base === "string" && sameHost(socket, base));
        const url = withToken(socket, trusted ? this.apiKey : null);
        return socketViews(Ctor, url, taskId, deadline, Math.min(this.timeout, WS_OPEN_TIMEOUT_S));
      };
      try {
        yield* this.reconnecting(taskId, deadline, open, "WebSocket");
        return;
      } catch (error) {
        if (!(error instanceof NotOpened)) throw error;
        if (transport === "websocket") throw new WebSocketUnavailable(error.message, { cause: error });
      }
    }
    if (transport !== "poll") {
      const open = async (): Promise<AsyncGenerator<JobView>> => eventStreamViews(this.fetcher, this.eventsUrl(taskId), this.authHeaders(), deadline);
      try {
        yield* this.reconnecting(taskId, deadline, open, "event stream");
        return;
      } catch (error) {
        if (!(error instanceof NotOpened)) throw error;
        if (transport === "sse") throw new ConnectionFailed(error.message, { cause: error });
      }
    }
    yield* this.poll(taskId, deadline);
  }

  /** One transport's connections, reopened after each drop until the task ends. */
  private async *reconnecting(
    taskId: string,
    deadline: Deadline,
    open: () => Promise<AsyncGenerator<JobView>>,
    what: string,
  ): AsyncGenerator<JobView> {
    const backoff = new Backoff(this.reconnectBudget);
    const firstConnect = new Backoff(Math.min(FIRST_CONNECT_BUDGET_S, this.reconnectBudget));
    let opened = false;
    let ended = false;
    while (true) {
      try {
        for await (const view of await open()) {
          opened = true;
          backoff.reset();
          yield view;
          if (isTerminal(view)) ended = true;
        }
        if (ended) return;
        // The server closed before the final view (a notifier restarting): a drop.
      } catch (error) {
        deadline.check();
        if (!(error instanceof Dropped) && !(error instanceof NotOpened)) throw error;
        if (!opened) {
          // Not opened yet: retry a few times before the caller falls back to the next transport.
          const wait = firstConnect.nextDelay();
          // NotOpened: the caller falls back to the next transport.
          if (wait === null) throw new NotOpened(`cannot open the ${what} of task ${taskId}: ${describe(error)}`);
          await sleep(wait, deadline);
          continue;
        }
      }
      // Dropped: the server's snapshot on the next connection covers whatever was missed.
      const wait = backoff.nextDelay();
      if (wait === null) {
        const message = `the ${what} of task ${taskId} stayed down for ${this.reconnectBudget} s`;
        throw what === "WebSocket" ? new WebSocketUnavailable(message) : new ConnectionFailed(message);
      }
      await sleep(wait, deadline);
    }
  }

  private async *poll(taskId: string, deadline: Deadline): AsyncGenerator<JobView> {
    let wait = POLL_START_S;
    while (true) {
      const view = await this.get(taskId, { signal: deadline.signal }).catch((error: unknown) => {
        deadline.check();
        throw error;
      });
      yield view;
      if (isTerminal(view)) return;
      await sleep(wait, deadline);
      wait = nextPollDelay(wait);
    }
  }

  /** Explicit argument, then a submit's `urls.ws`, then the client option, then the server's
   * own `urls.ws` for the task (which also says at once when there is no such task). */
  private async socketUrl(taskId: string, wsUrl: string | undefined, deadline: Deadline): Promise<string> {
    if (wsUrl) return taskWsUrl(wsUrl, taskId);
    const known = this.knownWs.get(taskId);
    if (known) return known;
    if (this.wsUrl) return taskWsUrl(this.wsUrl, taskId);
    const view = await this.get(taskId, { signal: deadline.signal });
    if (!view.urls?.ws) throw new WebSocketUnavailable(`the server named no WebSocket for task ${taskId}`);
    this.remember(taskId, view.urls.ws);
    return view.urls.ws;
  }

  private eventsUrl(taskId: string): string {
    return `${this.baseUrl}${taskPath(taskId, "/events")}`;
  }

  private authHeaders(): Record<string, string> {
    return this.apiKey ? { Authorization: `Bearer ${this.apiKey}` } : {};
  }
}

/** `run`'s contract: a succeeded view, or the error that says how the job ended. */
export function finalOrRaise(view: JobView): JobView {
  if (view.status === "failed") throw new TaskFailedError(view);
  if (view.status === "canceled" || view.status === "expired") throw new TaskCanceledError(view);
  return view;
}

function hasHeader(headers: Record<string, string>, name: string): boolean {
  return Object.keys(headers).some((key) => key.toLowerCase() === name);
}

function signalOf(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal === undefined ? {} : { signal };
}

function timeoutSignal(seconds: number, outer: AbortSignal | undefined): AbortSignal {
  const timeout = AbortSignal.timeout(seconds * 1000);
  return outer === undefined ? timeout : AbortSignal.any([timeout, outer]);
}

function delay(seconds: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, seconds * 1000);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? ` (${error.cause.message})` : "";
    return `${error.name}: ${error.message}${cause}`;
  }
  return String(error);
}
