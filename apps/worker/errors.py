"""How a job's work ends early: `Stopped` (asked to stop) or `JobFailed` (the job fails with a
code the client sees). Handlers, `imaging`, `text`, input fetching and the clients they use raise
these; `run_job` alone catches them and turns each into the job's one event.

Outcomes that are not the job's end stay with their modules: `InferenceRetryable` (run it again),
`InferenceBusy` (wait for room) in `balancer_client`, `HandBack` (requeue) in `capacity`."""

from __future__ import annotations


class Stopped(Exception):
    """The job was asked to stop (canceled by the client, or past its deadline) and gave up."""


class JobFailed(Exception):
    """A failure the client caused or must see: `code` becomes the job's `error.code`, and the
    message (`str(exc)`) names `input.<field>` when one field is at fault."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"input.{field}: {message}" if field else message)
        self.code = code
        self.message = message
        self.field = field


class InvalidInput(JobFailed):
    """Input the schema let through that the work cannot use (`invalid_input`)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__("invalid_input", message, field)


class InvalidImage(JobFailed):
    """An input image that cannot be opened or worked on (`invalid_input_image`), e.g. no face
    in it, or a box outside it; the other knobs of image work fail with this code too."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__("invalid_input_image", message, field)
