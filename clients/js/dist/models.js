// The job view and the submit answer: the server's JSON as it is on the wire (snake_case), so a
// view from `get`, a stream, a webhook's `data` and the docs all read the same.
/** The statuses a job never leaves. */
export const TERMINAL_STATUSES = new Set(["succeeded", "failed", "canceled", "expired"]);
export function isTerminal(view) {
    return TERMINAL_STATUSES.has(view.status);
}
