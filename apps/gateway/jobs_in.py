"""Request bodies into jobs: a `POST /tasks` envelope with its uploads, or a `POST /flux` body,
checked into the `NewJob` the task service accepts. Every surface (native and compat) builds its
jobs here, so they all validate the same way."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError

from apps.common import images
from apps.common.service.errors import InvalidInput
from apps.common.storage.names import is_store_ref
from apps.common.task_types import registry
from apps.common.wire.contracts import DeliveryFields, FluxRequest
from apps.common.wire.inference import WORKER_ONLY_FLUX_FIELDS
from apps.common.wire.model_choice import choice_at_default
from apps.gateway.settings import GatewaySettings
from apps.gateway.submission import NewJob

# Stands in for an image field's value once its bytes are set aside (the record gets a reference).
_SET_ASIDE = "pending-upload"
MAX_URL_LENGTH = 2048


class TaskRequest(DeliveryFields):
    """`{"type", "input", <delivery fields>}`; the input is checked against the type's model."""

    type: str = Field(min_length=1, max_length=64)
    input: dict[str, Any] = Field(default_factory=dict)


def _validation_error(exc: ValidationError, *prefix: str) -> RequestValidationError:
    return RequestValidationError(
        [{**error, "loc": ("body", *prefix, *error["loc"])} for error in exc.errors()]
    )


def build_job(body: object, uploads: dict[str, bytes], settings: GatewaySettings) -> NewJob:
    """A checked job from a `POST /tasks` body and its uploads (also used by the compat routes,
    so every surface validates the same way)."""
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object", field="body")
    try:
        envelope = TaskRequest.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from exc
    spec = registry().get(envelope.type)
    if spec is None:
        raise InvalidInput(
            f"type '{envelope.type}' is not a task type; one of: {', '.join(sorted(registry()))}",
            field="type",
        )
    task_input = dict(envelope.input)
    image_values: dict[str, bytes | str] = {}
    for name in uploads:
        if name not in spec.image_fields:
            raise InvalidInput(
                f"file part '{name}' is not an image field of {spec.name} "
                f"({', '.join(spec.image_fields) or 'it takes none'})",
                field=name,
            )
    for field in spec.image_fields:
        image_values_field = _image_value(field, task_input, uploads, settings)
        if image_values_field is not None:
            image_values[field] = image_values_field
            if isinstance(image_values_field, bytes):
                task_input[field] = _SET_ASIDE
    try:
        validated = spec.input_model.model_validate(task_input)
    except ValidationError as exc:
        raise _validation_error(exc, "input") from exc
    # What an Idempotency-Key is bound to: uploads count by their digest, not their bytes.
    fingerprint = {
        "type": spec.name,
        "input": {
            **validated.model_dump(mode="json", exclude=choice_at_default(dict(validated))),
            **{
                k: hashlib.sha256(v).hexdigest()
                for k, v in image_values.items()
                if isinstance(v, bytes)
            },
        },
        "delivery": envelope.model_dump(
            mode="json",
            include=set(DeliveryFields.model_fields),
            exclude=_new_fields_at_default(envelope),
        ),
    }
    return NewJob(
        type=spec.name,
        input=validated,
        delivery=DeliveryFields.model_validate(
            envelope.model_dump(include=set(DeliveryFields.model_fields))
        ),
        images=image_values,
        idempotency_body=orjson.dumps(fingerprint, option=orjson.OPT_SORT_KEYS).decode(),
    )


def _image_value(
    field: str, task_input: dict[str, Any], uploads: dict[str, bytes], settings: GatewaySettings
) -> bytes | str | None:
    """The bytes (upload, base64) or the URL given for one image field; None when absent (the
    input model then names the missing field)."""
    name = f"input.{field}"
    given = task_input.get(field)
    if field in uploads:
        if given is not None:
            raise InvalidInput(f"{name} is given both as a file part and in input", field=name)
        return uploads[field]
    if not isinstance(given, str) or not given:
        return None
    if images.is_url(given):
        if len(given) > MAX_URL_LENGTH:
            raise InvalidInput(f"{name}: URL is over {MAX_URL_LENGTH} characters", field=name)
        return given
    if is_store_ref(given) or "://" in given[:16]:
        raise InvalidInput(f"{name}: only http(s) URLs or base64 image data", field=name)
    try:
        return images.decode_base64(given, max_bytes=settings.input_image_max_bytes)
    except images.ImageRejected as exc:
        raise InvalidInput(f"{name}: {exc}", field=name) from exc


def flux_job(body: FluxRequest) -> NewJob:
    """The job of a `POST /flux` body (also WaveSpeed's shape, once flattened)."""
    return NewJob(
        type="flux",
        input=body.task_input(),
        delivery=body.delivery(),
        images={},
        input_path="",
        # The fields of earlier releases only, so a retry that meets another release during a
        # rolling update still matches its first request.
        idempotency_body=body.model_dump_json(
            exclude={k for k in WORKER_ONLY_FLUX_FIELDS if getattr(body, k) is False}
            | _new_fields_at_default(body)
            | choice_at_default(dict(body))
        ),
    )


def _new_fields_at_default(delivery: DeliveryFields) -> set[str]:
    """Delivery fields newer than the Idempotency-Key bindings of earlier releases, when at
    their defaults: left out of the body a key binds to, so a retry that meets the other
    release during a rolling update still matches. `cache: true` is another request."""
    return set() if delivery.cache else {"cache"}
