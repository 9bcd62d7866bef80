// Following a task: one connection's views over a WebSocket or server-sent events, the order of
// views across reconnects, backoff and deadlines. The client's loop in client.ts joins them up.
import { AuthenticationError, FluxgateError, NotFoundError, WaitTimeout, isRecord } from "./errors.js";
import { errorFromResponse } from "./http.js";
export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_NOT_FOUND = 4404;
export const RECONNECT_START_S = 0.2;
export const RECONNECT_MAX_S = 5;
// A first connection that fails (the notifier restarting, a rolling update) is retried for this
// long before the caller falls back to the next transport: about five tries.
export const FIRST_CONNECT_BUDGET_S = 5;
export const POLL_START_S = 0.2;
export const POLL_MAX_S = 2;
/** The connection ended before the task did: worth reconnecting; the next snapshot fills in. */
export class Dropped extends Error {
}
/** The connection never opened. */
export class NotOpened extends Error {
}
export function wsBaseFromHttp(baseUrl) {
    return baseUrl.replace(/^http(s?):\/\//, "ws$1://");
}
/** The task's socket from a WebSocket base (`ws://host:8300`), or `wsUrl` itself when it already
 * is one task's socket (a submit's `urls.ws`). */
export function taskWsUrl(wsUrl, taskId) {
    if (wsUrl.includes("/ws/tasks/"))
        return wsUrl;
    return `${wsUrl.replace(/\/+$/, "")}/ws/tasks/${encodeURIComponent(taskId)}`;
}
/** Browsers cannot set headers on a WebSocket: the key goes in `?token=`, which the notifier reads. */
export function withToken(url, apiKey) {
    if (!apiKey)
        return url;
    const target = new URL(url);
    target.searchParams.set("token", apiKey);
    return target.toString();
}
export function parseView(text) {
    try {
        const data = JSON.parse(text);
        return isRecord(data) && typeof data["task_id"] === "string" ? data : null;
    }
    catch {
        return null; // not a view: nothing to show, and not worth dropping the stream for
    }
}
/** Views only move forward: after a reconnect the snapshot may repeat what was seen. */
export class SeqFilter {
    lastSeq = -1;
    fresh(view) {
        const seq = typeof view.seq === "number" ? view.seq : -1;
        if (seq <= this.lastSeq)
            return false;
        this.lastSeq = seq;
        return true;
    }
}
/** Reconnect delays, 0.2 s doubling to 5 s, for at most `budgetS` of one outage. */
export class Backoff {
    budgetS;
    delay = RECONNECT_START_S;
    downSince = null;
    constructor(budgetS) {
        this.budgetS = budgetS;
    }
    /** The link works again: the next outage starts afresh. */
    reset() {
        this.delay = RECONNECT_START_S;
        this.downSince = null;
    }
    /** Seconds to wait before the next try, or null when the outage outlasted the budget. */
    nextDelay() {
        const now = performance.now() / 1000;
        this.downSince ??= now;
        const left = this.budgetS - (now - this.downSince);
        if (left <= 0)
            return null;
        const delay = Math.min(this.delay, left);
        this.delay = Math.min(this.delay * 2, RECONNECT_MAX_S);
        return delay;
    }
}
/** The end of a `wait` (or none), joined with the caller's AbortSignal: `signal` fires at
 * whichever comes first, and `check()` throws WaitTimeout or the caller's reason. */
export class Deadline {
    timeoutS;
    taskId;
    outer;
    signal;
    controller = new AbortController();
    timer;
    expired = false;
    constructor(timeoutS, taskId, outer) {
        this.timeoutS = timeoutS;
        this.taskId = taskId;
        this.outer = outer;
        this.signal = this.controller.signal;
        if (timeoutS !== undefined) {
            this.timer = setTimeout(() => {
                this.expired = true;
                this.controller.abort(this.timeoutError());
            }, timeoutS * 1000);
        }
        if (outer?.aborted)
            this.controller.abort(outer.reason);
        outer?.addEventListener("abort", this.onOuterAbort, { once: true });
    }
    onOuterAbort = () => this.controller.abort(this.outer?.reason);
    /** Throws when the time is up or the caller aborted. */
    check() {
        if (this.signal.aborted)
            throw this.reason();
    }
    reason() {
        return this.expired ? this.timeoutError() : this.signal.reason;
    }
    timeoutError() {
        return new WaitTimeout(`task ${this.taskId} did not end within ${this.timeoutS ?? 0} s`, this.taskId);
    }
    dispose() {
        clearTimeout(this.timer);
        this.outer?.removeEventListener("abort", this.onOuterAbort);
    }
}
/** Waits `seconds`, or throws as soon as `deadline` says stop. */
export function sleep(seconds, deadline) {
    return new Promise((resolve, reject) => {
        if (deadline.signal.aborted)
            return reject(deadline.reason());
        const onAbort = () => {
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
export function nextPollDelay(delay) {
    return Math.min(delay * 2, POLL_MAX_S);
}
/** One WebSocket connection's views until it closes. Ends quietly after a close with 1000;
 * throws NotFoundError / AuthenticationError for 4404 / 4401, NotOpened when it did not open
 * within `openTimeoutS`, Dropped for any other close. */
export async function* socketViews(Ctor, url, taskId, deadline, openTimeoutS) {
    const socket = new Ctor(url);
    const items = [];
    let wake = null;
    let opened = false;
    const push = (item) => {
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
    socket.onmessage = (message) => {
        if (typeof message.data !== "string")
            return;
        const view = parseView(message.data);
        if (view !== null)
            push({ view });
    };
    socket.onclose = (event) => push({ end: closeOutcome(event, opened, taskId) });
    // An error is always followed by a close, which says what happened.
    socket.onerror = () => undefined;
    const onAbort = () => wake?.();
    deadline.signal.addEventListener("abort", onAbort);
    try {
        while (true) {
            const item = items.shift();
            if (item === undefined) {
                deadline.check();
                await new Promise((resolve) => {
                    wake = resolve;
                });
                wake = null;
                continue;
            }
            if ("view" in item) {
                yield item.view;
                continue;
            }
            if (item.end === null)
                return;
            throw item.end;
        }
    }
    finally {
        clearTimeout(openTimer);
        deadline.signal.removeEventListener("abort", onAbort);
        if (socket.readyState === socket.CONNECTING || socket.readyState === socket.OPEN)
            socket.close(1000);
    }
}
function closeOutcome(event, opened, taskId) {
    if (event.code === CLOSE_NOT_FOUND)
        return new NotFoundError(404, "not_found", event.reason || `task ${taskId} not found`);
    if (event.code === CLOSE_UNAUTHORIZED)
        return new AuthenticationError(401, "unauthorized", event.reason || "API key required");
    if (!opened)
        return new NotOpened(`the WebSocket did not open (close ${event.code})`);
    return event.code === 1000 ? null : new Dropped(`the WebSocket closed with ${event.code}`);
}
/** One server-sent events connection's views until the stream ends. Ends quietly when the
 * server ends it; throws the typed error of a refused request (404, 401), NotOpened when the
 * server could not be reached, Dropped when the stream broke. */
export async function* eventStreamViews(fetcher, url, headers, deadline) {
    let response;
    try {
        response = await fetcher(url, { headers: { Accept: "text/event-stream", ...headers }, signal: deadline.signal, cache: "no-store" });
    }
    catch (error) {
        deadline.check();
        throw new NotOpened(`cannot open ${url}: ${String(error)}`);
    }
    if (!response.ok) {
        const error = await errorFromResponse(response);
        // A gateway or notifier that is away for a moment: worth another try.
        if (response.status === 503 || response.status === 502 || response.status === 504)
            throw new NotOpened(error.message);
        throw error;
    }
    if (response.body === null)
        throw new NotOpened("the event stream has no body");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let event = "message";
    let data = [];
    try {
        while (true) {
            let chunk;
            try {
                chunk = await reader.read();
            }
            catch (error) {
                deadline.check();
                throw new Dropped(`the event stream broke: ${String(error)}`);
            }
            if (chunk.done) {
                // The server ends the stream after the final view; a stream cut short is a drop, and the
                // caller's loop knows which from the last view.
                return;
            }
            buffer += decoder.decode(chunk.value, { stream: true });
            let newline;
            while ((newline = buffer.search(/\r\n|\r|\n/)) !== -1) {
                const line = buffer.slice(0, newline);
                buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
                if (line === "") {
                    // A blank line dispatches the event gathered so far.
                    const text = data.join("\n");
                    const kind = event;
                    event = "message";
                    data = [];
                    if (text === "")
                        continue;
                    if (kind === "error")
                        throw streamError(text, url);
                    const view = parseView(text);
                    if (view !== null)
                        yield view;
                    continue;
                }
                if (line.startsWith(":"))
                    continue; // a keep-alive comment
                const colon = line.indexOf(":");
                const name = colon === -1 ? line : line.slice(0, colon);
                const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
                if (name === "event")
                    event = value;
                else if (name === "data")
                    data.push(value);
            }
        }
    }
    finally {
        await reader.cancel().catch(() => undefined);
    }
}
function streamError(text, url) {
    const body = parseJson(text);
    const error = isRecord(body) && isRecord(body["error"]) ? body["error"] : {};
    const code = String(error["code"] ?? "stream_error");
    const message = String(error["message"] ?? `the event stream at ${url} failed`);
    if (code === "not_found")
        return new NotFoundError(404, code, message, null, body);
    return new FluxgateError(`${code}: ${message}`);
}
function parseJson(text) {
    try {
        return JSON.parse(text);
    }
    catch {
        return text;
    }
}
