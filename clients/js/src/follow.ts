// Following a task: one connection's views over a WebSocket or server-sent events, the order of
// views across reconnects, backoff and deadlines. The client's loop in client.ts joins them up.
import { AuthenticationError, FluxgateError, NotFoundError, WaitTimeout, isRecord } from "./errors.js";
import { errorFromResponse } from "./http.js";
import type { JobView } from "./models.js";

export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_NOT_FOUND = 4404;
export const RECONNECT_START_S = 0.2;
export const RECONNECT_MAX_S = 5;
// A first connection that fails (the notifier restarting, a rolling update) is retried for this
// long before the caller falls back to the next transport: about five tries.
export const FIRST_CONNECT_BUDGET_S = 5;
export const POLL_START_S = 0.2;
export const POLL_MAX_S = 2;

/** The constructor of a standard WebSocket (the browser's, Node 22's, or undici's). */
export type WebSocketConstructor = new (url: string | URL, protocols?: string | string[]) => WebSocket;

/** The connection ended before the task did: worth reconnecting; the next snapshot fills in. */
export class Dropped extends Error {}

/** The connection never opened. */
export class NotOpened extends Error {}

export function wsBaseFromHttp(baseUrl: string): string {
  return baseUrl.replace(/^http(s?):\/\//, "ws$1://");
}

/** The task's socket from a WebSocket base (`ws://host:8300`), or `wsUrl` itself when it already
 * is one task's socket (a submit's `urls.ws`). */
export function taskWsUrl(wsUrl: string, taskId: string): string {
  if (wsUrl.includes("/ws/tasks/")) return wsUrl;
  return `${wsUrl.replace(/\/+$/, "")}/ws/tasks/${encodeURIComponent(taskId)}`;
}

/** Browsers cannot set headers on a WebSocket: the key goes in `?token=`, which the notifier reads. */
export function withToken(url: string, apiKey: string | null): string {
  if (!apiKey) return url;
  const target = new URL(url);
  target.searchParams.set("token", apiKey);
  return target.toString();
}

export function parseView(text: string): JobView | null {
  try {
    const data: unknown = JSON.parse(text);
    return isRecord(data) && typeof data["task_id"] === "string" ? (data as JobView) : null;
  } catch {
    return null; // not a view: nothing to show, and not worth dropping the stream for
  }
}

/** Views only move forward: after a reconnect the snapshot may repeat what was seen. */
export class SeqFilter {
  lastSeq = -1;

  fresh(view: JobView): boolean {
    const seq = typeof view.seq === "number" ? view.seq : -1;
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    return true;
  }
}

/** Reconnect delays, 0.2 s doubling to 5 s, for at most `budgetS` of one outage. */
export class Backoff {
  private delay = RECONNECT_START_S;
  private downSince: number | null = null;

  constructor(private readonly budgetS: number) {}

  /** The link works again: the next outage starts afresh. */
  reset(): void {
    this.delay = RECONNECT_START_S;
    this.downSince = null;
  }

  /** Seconds to wait before the next try, or null when the outage outlasted the budget. */
  nextDelay(): number | null {
    const now = performance.now() / 1000;
    this.downSince ??= now;
    const left = this.budgetS - (now - this.downSince);
    if (left <= 0) return null;
    const delay = Math.min(this.delay, left);
    this.delay = Math.min(this.delay * 2, RECONNECT_MAX_S);
    return delay;
  }
}

/** The end of a `wait` (or none), joined with the caller's AbortSignal: `signal` fires at
 * whichever comes first, and `check()` throws WaitTimeout or the caller's reason. */
export class Deadline {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly timer: ReturnType<typeof setTimeout> | undefined;
  private expired = false;

  constructor(
    private readonly timeoutS: number | undefined,
    private readonly taskId: string,
    private readonly outer: AbortSignal | undefined,
  ) {
    this.signal = this.controller.signal;
    if (timeoutS !== undefined) {
      this.timer = setTimeout(() => {
        this.expired = true;
        this.controller.abort(this.timeoutError());
      }, timeoutS * 1000);
    }
    if (outer?.aborted) this.controller.abort(outer.reason);
    outer?.addEventListener("abort", this.onOuterAbort, { once: true });
  }

  private readonly onOuterAbort = (): void => this.controller.abort(this.outer?.reason);

  /** Throws when the time is up or the caller aborted. */
  check(): void {
    if (this.signal.aborted) throw this.reason();
  }

  reason(): unknown {
    return this.expired ? this.timeoutError() : this.signal.reason;
  }

  timeoutError(): WaitTimeout {
    return new WaitTimeout(`task ${this.taskId} did not end within ${this.timeoutS ?? 0} s`, this.taskId);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.outer?.removeEventListener("abort", this.onOuterAbort);
  }
}

/** Waits `seconds`, or throws as soon as `deadline` says stop. */
export function sleep(seconds: number, deadline: Deadline): Promise<void> {
  return new Promise((resolve, reject) => {
    if (deadline.signal.aborted) return reject(deadline.reason());
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(deadline.reason());
    };
    const timer = setTimeout(() => {
      deadline.signal.removeEventListener("abort", onAbort);
      resolve();
    }, seconds * 1000);
    deadline.signal.addEventListener("abort", onAbort, { once: true });
  });
}

export function nextPollDelay(delay: number): number {
  return Math.min(delay * 2, POLL_MAX_S);
}

type Item = { view: JobView } | { end: unknown };

/** One WebSocket connection's views until it closes. Ends quietly after a close with 1000;
 * throws NotFoundError / AuthenticationError for 4404 / 4401, NotOpened when it did not open
 * within `openTimeoutS`, Dropped for any other close. */
export async function* socketViews(
  Ctor: WebSocketConstructor,
  url: string,
  taskId: string,
  deadline: Deadline,
  openTimeoutS: number,
): AsyncGenerator<JobView> {
  const socket = new Ctor(url);
  const items: Item[] = [];
  let wake: (() => void) | null = null;
  let opened = false;
  const push = (item: Item): void => {
    items.push(item);
    wake?.();
  };
  // Node 20's experimental WebSocket never reports a handshake whose connection is refused or
  // cut (it stays CONNECTING): a socket not open in time has failed, whatever it says.
  const openTimer = setTimeout(() => push({ end: new NotOpened(`the WebSocket did not open within ${openTimeoutS} s`) }), openTimeoutS * 1000);
  socket.onopen = () => {
    opened = true;
    clearTimeout(openTimer);
  };
  socket.onmessage = (message: MessageEvent) => {
    if (typeof message.data !== "string") return;
    const view = parseView(message.data);
    if (view !== null) push({ view });
  };
  socket.onclose = (event: CloseEvent) => push({ end: closeOutcome(event, opened, taskId) });
  // An error is always followed by a close, which says what happened.
  socket.onerror = () => undefined;
  const onAbort = (): void => wake?.();
  deadline.signal.addEventListener("abort", onAbort);
  try {
    while (true) {
      const item = items.shift();
      if (item === undefined) {
        deadline.check();
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = null;
        continue;
      }
      if ("view" in item) {
        yield item.view;
        continue;
      }
      if (item.end === null) return;
      throw item.end;
    }
  } finally {
    clearTimeout(openTimer);
    deadline.signal.removeEventListener("abort", onAbort);
    if (socket.readyState === socket.CONNECTING || socket.readyState === socket.OPEN) socket.close(1000);
  }
}

function closeOutcome(event: CloseEvent, opened: boolean, taskId: string): unknown {
  if (event.code === CLOSE_NOT_FOUND) return new NotFoundError(404, "not_found", event.reason || `task ${taskId} not found`);
  if (event.code === CLOSE_UNAUTHORIZED) return new AuthenticationError(401, "unauthorized", event.reason || "API key required");
  if (!opened) return new NotOpened(`the WebSocket did not open (close ${event.code})`);
  return event.code === 1000 ? null : new Dropped(`the WebSocket closed with ${event.code}`);
}

/** One server-sent events connection's views until the stream ends. Ends quietly when the
 * server ends it; throws the typed error of a refused request (404, 401), NotOpened when the
 * server could not be reached, Dropped when the stream broke. */
export async function* eventStreamViews(
  fetcher: typeof fetch,
  url: string,
  headers: Record<string, string>,
  deadline: Deadline,
): AsyncGenerator<JobView> {
  let response: Response;
  try {
    response = await fetcher(url, { headers: { Accept: "text/event-stream", ...headers }, signal: deadline.signal, cache: "no-store" });
  } catch (error) {
    deadline.check();
    throw new NotOpened(`cannot open ${url}: ${String(error)}`);
  }
  if (!response.ok) {
    const error = await errorFromResponse(response);
    // A gateway or notifier that is away for a moment: worth another try.
    if (response.status === 503 || response.status === 502 || response.status === 504) throw new NotOpened(error.message);
    throw error;
  }
  if (response.body === null) throw new NotOpened("the event stream has no body");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "message";
  let data: string[] = [];
  try {
    while (true) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (error) {
        deadline.check();
        throw new Dropped(`the event stream broke: ${String(error)}`);
      }
      if (chunk.done) {
        // The server ends the stream after the final view; a stream cut short is a drop, and the
        // caller's loop knows which from the last view.
        return;
      }
      buffer += decoder.decode(chunk.value, { stream: true });
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          // A blank line dispatches the event gathered so far.
          const text = data.join("\n");
          const kind = event;
          event = "message";
          data = [];
          if (text === "") continue;
          if (kind === "error") throw streamError(text, url);
          const view = parseView(text);
          if (view !== null) yield view;
          continue;
        }
        if (line.startsWith(":")) continue; // a keep-alive comment
        const colon = line.indexOf(":");
        const name = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "event") event = value;
        else if (name === "data") data.push(value);
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

function streamError(text: string, url: string): FluxgateError {
  const body = parseJson(text);
  const error = isRecord(body) && isRecord(body["error"]) ? body["error"] : {};
  const code = String(error["code"] ?? "stream_error");
  const message = String(error["message"] ?? `the event stream at ${url} failed`);
  if (code === "not_found") return new NotFoundError(404, code, message, null, body);
  return new FluxgateError(`${code}: ${message}`);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
