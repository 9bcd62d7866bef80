"""Pydantic models for every payload that crosses a process boundary (docs/architecture.md)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from apps.common.wire.model_choice import MAX_LORAS, NAME_PATTERN, LoraChoice

MAX_SEED = 2**32 - 1


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED, TaskStatus.EXPIRED}
)


class EventKind(StrEnum):
    """What a producer reports; the store decides whether it moves the job."""

    STARTED = "started"
    PROGRESS = "progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    # A queued job is waiting for a model server or an identical job (`TaskEvent.waiting_for`
    # says which kind of wait); it stays `queued`. Pushed to subscribers, never sent as a webhook.
    WAITING = "waiting"

    @property
    def is_final(self) -> bool:
        """Whether this event would end the job (in the state of the same name)."""
        return self.value in TERMINAL_STATUSES


class WaitReason(StrEnum):
    """Why a queued job that a worker holds has not started (`waiting_for` of the view)."""

    # No model server is ready: none configured yet, all loading, all ejected, scaled to zero.
    MODEL_SERVER = "model_server"
    # Model servers are ready but every one is at capacity.
    CAPACITY = "capacity"
    # An identical job (same fingerprint, `apps/worker/dedupe.py`) is running: this one takes its
    # result when it ends, or runs itself if that job ends without one.
    IDENTICAL_JOB = "identical_job"


class WebhookEvent(StrEnum):
    STARTED = "started"
    PROGRESS = "progress"
    COMPLETED = "completed"


class OutputFormat(StrEnum):
    """An output image's encoding: the one home of its content type, file extension and PIL name
    (`apps.common.images.encode` writes every output image with it)."""

    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"

    @property
    def content_type(self) -> str:
        return f"image/{self.value}"

    @property
    def extension(self) -> str:
        return "jpg" if self is OutputFormat.JPEG else self.value

    @property
    def pil_format(self) -> str:
        return self.value.upper()

    @classmethod
    def of_content_type(cls, content_type: str) -> OutputFormat | None:
        """The format an image/* content type names, or None for anything else."""
        for fmt in cls:
            if fmt.content_type == content_type:
                return fmt
        return None


_NUMBERS = (int, float, int | None, float | None)


class StrictModel(BaseModel):
    # NaN and infinity pass range checks in surprising ways ("NaN: must be <= 20"): refuse them
    # as what they are.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: object, info: ValidationInfo) -> object:
        # pydantic reads `true` as 1: "width: true" would be refused as "must be >= 64".
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and field.annotation in _NUMBERS:
                raise ValueError("must be a number, not a boolean")
        return value


def _multiple_of_16(value: int) -> int:
    if value % 16:
        raise ValueError("must be a multiple of 16")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# A text-to-image prompt: 1..2000 characters, not only whitespace.
Prompt = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_not_blank)]


class FluxInput(StrictModel):
    """Text-to-image input of the `flux` task type."""

    prompt: Prompt
    negative_prompt: str | None = Field(default=None, max_length=2000)
    width: int = Field(default=1024, ge=64, le=2048)
    height: int = Field(default=1024, ge=64, le=2048)
    num_inference_steps: int = Field(default=28, ge=1, le=100)
    guidance_scale: float = Field(default=3.5, ge=0, le=20)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    num_images: int = Field(default=1, ge=1, le=4)
    output_format: OutputFormat = OutputFormat.PNG
    # Rewrite the prompt first (the `prompt_refine` rules, or the LLM when one is configured);
    # the result reports the prompt used.
    refine_prompt: bool = False
    # `GET /tasks/{id}` then carries each image's bytes as base64 too (as `?include=base64`).
    enable_base64_output: bool = False
    # Live previews of the image forming: progress events carry a small preview (a cheap
    # latent-to-RGB projection, not the VAE) every `preview_every_n_steps` steps (None with
    # `preview`: a few per second), stored like outputs. Off by default: it costs time.
    preview: bool = False
    preview_every_n_steps: int | None = Field(default=None, ge=1, le=100)
    # One of the deployment's models (`GET /models`; None: its default) and LoRA adapters on it.
    model: str | None = Field(default=None, pattern=NAME_PATTERN)
    loras: list[LoraChoice] = Field(default_factory=list, max_length=MAX_LORAS)

    _width_multiple = field_validator("width")(_multiple_of_16)
    _height_multiple = field_validator("height")(_multiple_of_16)


class DeliveryFields(StrictModel):
    """How the client wants to hear about a task (and whether it takes a stored result), beside
    the task's own input."""

    webhook_url: AnyHttpUrl | None = None
    webhook_events: list[WebhookEvent] = Field(default_factory=lambda: [WebhookEvent.COMPLETED])
    priority: int = Field(default=5, ge=0, le=9)
    # Take the stored result of an identical request (an explicit seed is needed) that finished
    # within the job TTL instead of running again; identical requests in flight together share
    # one run either way.
    cache: bool = False


class FluxRequest(FluxInput, DeliveryFields):
    """The flat body of `POST /flux`: FLUX input plus delivery fields."""

    def task_input(self) -> FluxInput:
        # Only the fields the client set: a model's defaults fill the others (model_registry).
        return FluxInput.model_validate(
            self.model_dump(include=set(FluxInput.model_fields), exclude_unset=True)
        )

    def delivery(self) -> DeliveryFields:
        return DeliveryFields.model_validate(
            self.model_dump(include=set(DeliveryFields.model_fields))
        )


class ErrorInfo(BaseModel):
    code: str
    message: str


class ImageOutput(BaseModel):
    url: str
    content_type: str
    width: int
    height: int
    seed: int | None = None


class JobResult(BaseModel):
    """What the model made: images plus the model's own timings (and type-specific keys)."""

    model_config = ConfigDict(extra="allow")

    images: list[ImageOutput] = Field(default_factory=list)
    timings: dict[str, float | int] = Field(default_factory=dict)


class JobPreview(StrictModel):
    """A small image of a running job's current latents, taken at `step` of `total`: stored like
    outputs (one object per preview, so a URL always shows what its event said)."""

    url: str
    content_type: str
    step: int = Field(ge=0)
    total: int = Field(ge=1)
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class TaskEvent(StrictModel):
    """A producer's report about one task; the job store assigns `seq` when it applies it."""

    task_id: str
    event: EventKind
    progress: int | None = Field(default=None, ge=0, le=100)
    result: JobResult | None = None
    error: ErrorInfo | None = None
    # With `waiting`: what the job waits for.
    waiting_for: WaitReason | None = None
    # With `progress` of a job that asked for previews: the latest one, already stored.
    preview: JobPreview | None = None
    # When the producer finished the work (its clock, epoch seconds): the job view splits the
    # time after it (delivery) from the work before it (running).
    at: float | None = None


class TaskUrls(BaseModel):
    status: str
    cancel: str
    ws: str
    # Server-sent events: the same views as `ws`, for clients that cannot open a WebSocket.
    events: str


class StageTimings(BaseModel):
    queued_ms: float | None = None
    running_ms: float | None = None
    delivery_ms: float | None = None


class WebhookAttempt(BaseModel):
    """One try at delivering one webhook message."""

    message_id: str
    attempt: int
    at: str
    status_code: int | None = None
    error: str | None = None
    next_retry_at: str | None = None


class WebhookInfo(BaseModel):
    """The owner-only `webhook` block of `GET /tasks/{id}`."""

    url: str
    events: list[WebhookEvent]
    attempts: list[WebhookAttempt] = Field(default_factory=list)


class WebhookMessage(BaseModel):
    """One webhook message: the body is fixed when the event happens, retries resend it as is."""

    message_id: str
    task_id: str
    url: str
    body: str
    attempt: int = 0
    # The API key whose webhook secrets sign it (the global secret when None or unset).
    owner: str | None = None


class JobView(BaseModel):
    """The one JSON shape of a job: status route, WebSocket messages, webhooks, sync facade."""

    task_id: str
    type: str
    status: TaskStatus
    progress: int
    seq: int
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    queue_position: int | None = None
    # While queued: what the job waits for (`model_server` during a cold start), else null.
    waiting_for: WaitReason | None = None
    result: JobResult | None = None
    # Succeeded with the result of an identical job (its images copied), no compute of its own.
    cached: bool = False
    # While running, for a job that asked for previews: the latest preview of the image forming.
    preview: JobPreview | None = None
    error: ErrorInfo | None = None
    urls: TaskUrls
    timings: StageTimings
    # What the job costs in megapixel-steps (one FLUX step of a 1-megapixel image), fixed at
    # submit; null for jobs accepted before costs were kept.
    cost: float | None = None
    webhook: WebhookInfo | None = None
    event: EventKind | Literal["snapshot"] | None = None


class SubmitAnswer(BaseModel):
    task_id: str
    status: TaskStatus
    urls: TaskUrls
