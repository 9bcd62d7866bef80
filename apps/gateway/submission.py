"""What a submit carries through the gateway: the validated job (`NewJob`), the headers' options,
what its checks found, and what it answers (`Submitted`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apps.common.images import ImageInfo
from apps.common.jobs.record import JobRecord
from apps.common.wire.contracts import DeliveryFields, StrictModel


@dataclass(frozen=True)
class Submitted:
    record: JobRecord
    replayed: bool


@dataclass(frozen=True)
class NewJob:
    """A validated submit: the type, its input, delivery fields and the images to store."""

    type: str
    input: StrictModel
    delivery: DeliveryFields
    # Image field -> uploaded bytes (multipart, base64) or an http(s) URL for the worker to fetch.
    images: dict[str, bytes | str]
    # What an Idempotency-Key binds to: the same key with another body is a conflict.
    idempotency_body: str
    # Where the request carries the input's fields, for naming one in an error: under `input.`
    # (`POST /tasks`) or at the top (`POST /flux`).
    input_path: str = "input."


@dataclass(frozen=True)
class Checked:
    """What the checks of a submit found: the record's webhook settings, what each upload is,
    and what the job costs."""

    webhook: dict[str, Any] | None
    uploads: dict[str, ImageInfo]
    cost: float


@dataclass(frozen=True)
class SubmitOptions:
    """What the headers add to a submit."""

    idempotency_key: str | None = None
    cancel_after_s: float | None = None
