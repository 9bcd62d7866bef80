import { WaitTimeout } from "./errors.js";
import type { JobView } from "./models.js";
export declare const CLOSE_UNAUTHORIZED = 4401;
export declare const CLOSE_NOT_FOUND = 4404;
export declare const RECONNECT_START_S = 0.2;
export declare const RECONNECT_MAX_S = 5;
export declare const FIRST_CONNECT_BUDGET_S = 5;
export declare const POLL_START_S = 0.2;
export declare const POLL_MAX_S = 2;
/** The constructor of a standard WebSocket (the browser's, Node 22's, or undici's). */
export type WebSocketConstructor = new (url: string | URL, protocols?: string | string[]) => WebSocket;
/** The connection ended before the task did: worth reconnecting; the next snapshot fills in. */
export declare class Dropped extends Error {
}
/** The connection never opened. */
export declare class NotOpened extends Error {
}
export declare function wsBaseFromHttp(baseUrl: string): string;
/** The task's socket from a WebSocket base (`ws://host:8300`), or `wsUrl` itself when it already
 * is one task's socket (a submit's `urls.ws`). */
export declare function taskWsUrl(wsUrl: string, taskId: string): string;
/** Browsers cannot set headers on a WebSocket: the key goes in `?token=`, which the notifier reads. */
export declare function withToken(url: string, apiKey: string | null): string;
export declare function parseView(text: string): JobView | null;
/** Views only move forward: after a reconnect the snapshot may repeat what was seen. */
export declare class SeqFilter {
    lastSeq: number;
    fresh(view: JobView): boolean;
}
/** Reconnect delays, 0.2 s doubling to 5 s, for at most `budgetS` of one outage. */
export declare class Backoff {
    private readonly budgetS;
    private delay;
    private downSince;
    constructor(budgetS: number);
    /** The link works again: the next outage starts afresh. */
    reset(): void;
    /** Seconds to wait before the next try, or null when the outage outlasted the budget. */
    nextDelay(): number | null;
}
/** The end of a `wait` (or none), joined with the caller's AbortSignal: `signal` fires at
 * whichever comes first, and `check()` throws WaitTimeout or the caller's reason. */
export declare class Deadline {
    private readonly timeoutS;
    private readonly taskId;
    private readonly outer;
    readonly signal: AbortSignal;
    private readonly controller;
    private readonly timer;
    private expired;
    constructor(timeoutS: number | undefined, taskId: string, outer: AbortSignal | undefined);
    private readonly onOuterAbort;
    /** Throws when the time is up or the caller aborted. */
    check(): void;
    reason(): unknown;
    timeoutError(): WaitTimeout;
    dispose(): void;
}
/** Waits `seconds`, or throws as soon as `deadline` says stop. */
export declare function sleep(seconds: number, deadline: Deadline): Promise<void>;
export declare function nextPollDelay(delay: number): number;
/** One WebSocket connection's views until it closes. Ends quietly after a close with 1000;
 * throws NotFoundError / AuthenticationError for 4404 / 4401, NotOpened when it did not open
 * within `openTimeoutS`, Dropped for any other close. */
export declare function socketViews(Ctor: WebSocketConstructor, url: string, taskId: string, deadline: Deadline, openTimeoutS: number): AsyncGenerator<JobView>;
/** One server-sent events connection's views until the stream ends. Ends quietly when the
 * server ends it; throws the typed error of a refused request (404, 401), NotOpened when the
 * server could not be reached, Dropped when the stream broke. */
export declare function eventStreamViews(fetcher: typeof fetch, url: string, headers: Record<string, string>, deadline: Deadline): AsyncGenerator<JobView>;
