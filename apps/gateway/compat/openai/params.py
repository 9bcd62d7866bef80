"""OpenAI's image parameters and how each becomes the native job: `POST /v1/images/generations`
is a `flux` job, `POST /v1/images/edits` a `style_transfer` one (FLUX image-to-image). The table
in docs/openai.md says which parameters are supported, mapped, ignored or refused, and why."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError

from apps.common.service.errors import FluxgateError, InvalidInput
from apps.common.service.http import validation_error_body
from apps.common.wire.contracts import FluxRequest, StrictModel
from apps.gateway.jobs_in import build_job, flux_job
from apps.gateway.settings import GatewaySettings
from apps.gateway.submission import NewJob

_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
# A native field an error names -> the OpenAI parameter the client sent it as.
_PARAM_OF = {
    "width": "size",
    "height": "size",
    "num_images": "n",
    "input.max_side": "size",
    "input.num_images": "n",
    "input.image": "image",
}


class ImageParams(StrictModel):
    """What generations and edits share. `quality`, `style`, `moderation`, `output_compression`
    and `user` are accepted and ignored; `background: transparent`, `stream` and
    `partial_images` are refused (FLUX makes opaque images, and we answer once)."""

    prompt: str
    model: str | None = None
    n: int | None = None
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    seed: int | None = None
    quality: Literal["auto", "standard", "hd", "low", "medium", "high"] | None = None
    background: Literal["auto", "opaque", "transparent"] | None = None
    moderation: Literal["auto", "low"] | None = None
    output_compression: int | None = Field(default=None, ge=0, le=100)
    stream: bool | None = None
    partial_images: int | None = Field(default=None, ge=0, le=3)
    user: str | None = Field(default=None, max_length=256)

    def wants_b64(self) -> bool:
        return self.response_format == "b64_json"

    def registry_model(self, settings: GatewaySettings) -> str | None:
        """The registry model `model` names: a model of the deployment's registry by its id, or
        None (the registry's default) for none or an alias from `FLUXGATE_OPENAI_MODELS`."""
        if self.model is None or self.model in settings.openai_models:
            return None
        if self.model in settings.model_registry().models:
            return self.model
        raise InvalidInput(
            f"model '{self.model}' is not served here; one of: "
            f"{', '.join(openai_model_ids(settings))} (GET /v1/models)",
            field="model",
        )

    def refuse_what_we_cannot_do(self, settings: GatewaySettings) -> None:
        if self.background == "transparent":
            raise InvalidInput(
                "background: transparent images are not made here", field="background"
            )
        if self.stream:
            raise InvalidInput("stream: the images come in one answer here", field="stream")
        if self.partial_images:
            raise InvalidInput(
                "partial_images: needs stream, which is not served", field="partial_images"
            )

    def common_input(self, settings: GatewaySettings) -> dict[str, Any]:
        """The native fields these parameters set (the rest keep the task type's defaults)."""
        self.refuse_what_we_cannot_do(settings)
        values: dict[str, Any] = {"prompt": self.prompt}
        if (model := self.registry_model(settings)) is not None:
            values["model"] = model
        if self.n is not None:
            values["num_images"] = self.n
        if self.seed is not None:
            values["seed"] = self.seed
        if self.output_format is not None:
            values["output_format"] = self.output_format
        if settings.openai_steps is not None:
            values["num_inference_steps"] = settings.openai_steps
        return values

    def size_of(self) -> tuple[int, int] | None:
        """`WxH` as (width, height); None for `auto` or no size (the type's default)."""
        if self.size is None or self.size == "auto":
            return None
        match = _SIZE.match(self.size)
        if match is None:
            raise InvalidInput("size must be WIDTHxHEIGHT, like 1024x1024, or auto", field="size")
        return int(match[1]), int(match[2])


class GenerationParams(ImageParams):
    style: Literal["vivid", "natural"] | None = None


class EditParams(ImageParams):
    # gpt-image-1's: how closely to keep the input's features; FLUX img2img has `strength`.
    input_fidelity: Literal["low", "high"] | None = None


def openai_model_ids(settings: GatewaySettings) -> list[str]:
    """What `model` may name under /v1: the registry's models (`GET /models`), then the aliases
    of its default model that `FLUXGATE_OPENAI_MODELS` adds for clients that cannot choose."""
    ids = list(settings.model_registry().models)
    return ids + [alias for alias in settings.openai_models if alias not in ids]


def param_of(field: str) -> str:
    return _PARAM_OF.get(field, field.removeprefix("input."))


@contextmanager
def named_as_openai() -> Iterator[None]:
    """Errors raised inside name the OpenAI parameter (`size`), not the native field (`width`)."""
    try:
        yield
    except (RequestValidationError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            exc = RequestValidationError(exc.errors())
        error = validation_error_body(exc)["error"]
        assert isinstance(error, dict)
        raise InvalidInput(str(error["message"]), field=param_of(str(error["field"]))) from exc
    except FluxgateError as exc:
        if exc.field is not None:
            exc.field = param_of(exc.field)
        raise


def generation_job(params: GenerationParams, settings: GatewaySettings) -> NewJob:
    """A `flux` job, as `POST /flux` takes it."""
    values = params.common_input(settings)
    size = params.size_of()
    if size is not None:
        values["width"], values["height"] = size
    return flux_job(FluxRequest.model_validate(values))


def edit_job(params: EditParams, image: bytes, settings: GatewaySettings) -> NewJob:
    """A `style_transfer` job (FLUX image-to-image at its default strength), as `POST /tasks`
    takes it: the output keeps the image's aspect ratio, `size` bounds its long side."""
    values = params.common_input(settings)
    size = params.size_of()
    if size is not None:
        values["max_side"] = max(size)
    return build_job({"type": "style_transfer", "input": values}, {"image": image}, settings)
