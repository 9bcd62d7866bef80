"""The models and LoRA adapters one deployment serves: the one home of which names a request may
use and what they default to. Read by the gateway (checks, `GET /models`), the worker (what goes
on the wire) and the inference server (what it loads); the balancer learns from each server's
`/load` which of them it serves and holds.

`FLUXGATE_MODELS` is JSON (a list of models, or `{"default": id, "models": [...]}`) or the path of
a JSON or YAML file holding it; empty means one model, `default`, the tiny offline one (or
`FLUXGATE_FLUX_MODEL` on an inference server). Adapters are the `*.safetensors` files of
`FLUXGATE_LORA_DIR`, named by their file name without the extension.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from apps.common.wire.model_choice import MAX_LORA_SCALE, MAX_LORAS, NAME_PATTERN, LoraChoice

DEFAULT_MODEL_ID = "default"
ADAPTER_SUFFIX = ".safetensors"


class ModelSpec(BaseModel):
    """One served model: where its weights are and what its requests default to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=NAME_PATTERN)
    # A local directory or a hub id; empty: the tiny offline pipeline.
    source: str = ""
    # Applied to the fields a request leaves out (FluxInput's own defaults otherwise).
    default_steps: int = Field(default=28, ge=1, le=100)
    default_guidance: float = Field(default=3.5, ge=0, le=20)
    # Guidance-distilled like FLUX.1-dev (True) or not like schnell (False: guidance is ignored).
    uses_guidance: bool = True
    # The longest side a request may ask for.
    max_side: int = Field(default=2048, ge=64, le=2048)

    def listing(self) -> dict[str, Any]:
        # The source stays inside the deployment: a local path says nothing a client needs.
        return self.model_dump(exclude={"source"})


class _ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str | None = None
    models: list[ModelSpec] = Field(min_length=1)


class ChoiceRefused(ValueError):
    """A request named a model or adapter this deployment does not serve (`field` says which)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ModelRegistry:
    models: dict[str, ModelSpec]
    default: str
    lora_dir: Path | None = None
    max_loras: int = 4
    max_scale: float = 2.0

    def resolve(self, model: str | None) -> ModelSpec:
        """The spec of `model` (None: the default); KeyError when it is not served."""
        return self.models[model or self.default]

    def adapters(self) -> list[str]:
        """The adapters available now (the directory is read each time: adapters come and go
        without a restart)."""
        if self.lora_dir is None or not self.lora_dir.is_dir():
            return []
        return sorted(
            p.name[: -len(ADAPTER_SUFFIX)] for p in self.lora_dir.glob(f"*{ADAPTER_SUFFIX}")
        )

    def adapter_path(self, name: str) -> Path | None:
        """The file of adapter `name`, or None when there is none."""
        if self.lora_dir is None:
            return None
        path = self.lora_dir / f"{name}{ADAPTER_SUFFIX}"
        return path if path.is_file() else None

    def check(
        self, model: str | None, loras: list[LoraChoice], prefix: str = "input."
    ) -> ModelSpec:
        """The model a request runs on, once its choice is known to be served; raises
        `ChoiceRefused` naming the first wrong field (`input.model`, `input.loras[0].name`;
        `prefix` is where the request carries the input's fields)."""
        try:
            spec = self.resolve(model)
        except KeyError:
            raise ChoiceRefused(
                f"model '{model}' is not served here; one of: {', '.join(sorted(self.models))}",
                f"{prefix}model",
            ) from None
        if len(loras) > self.max_loras:
            raise ChoiceRefused(
                f"at most {self.max_loras} LoRA adapters per request", f"{prefix}loras"
            )
        seen: set[str] = set()
        for index, lora in enumerate(loras):
            where = f"{prefix}loras[{index}]"
            if lora.name in seen:
                raise ChoiceRefused(f"adapter '{lora.name}' is named twice", f"{where}.name")
            seen.add(lora.name)
            if self.adapter_path(lora.name) is None:
                raise ChoiceRefused(f"adapter '{lora.name}' is not available", f"{where}.name")
            if abs(lora.scale) > self.max_scale:
                raise ChoiceRefused(
                    f"scale must be within [-{self.max_scale:g}, {self.max_scale:g}]",
                    f"{where}.scale",
                )
        return spec

    def listing(self) -> dict[str, Any]:
        """`GET /models`: the models and adapters requests may name, and the limits."""
        return {
            "default": self.default,
            "models": [spec.listing() for spec in self.models.values()],
            "adapters": self.adapters(),
            "max_loras": self.max_loras,
            "max_lora_scale": self.max_scale,
        }


def parse_models(setting: str, default_source: str = "") -> tuple[list[ModelSpec], str]:
    """The models of a `FLUXGATE_MODELS` value (JSON, or a JSON/YAML file's path) and the default
    id; ValueError saying what is wrong."""
    text = setting.strip()
    if not text:
        return [ModelSpec(id=DEFAULT_MODEL_ID, source=default_source)], DEFAULT_MODEL_ID
    if text[0] not in "[{":
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"FLUXGATE_MODELS: no such file {text}")
        text = path.read_text()
    try:
        raw = yaml.safe_load(text)  # JSON is YAML too
        parsed = _ModelsFile.model_validate({"models": raw} if isinstance(raw, list) else raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"FLUXGATE_MODELS: {exc}") from exc
    ids = [spec.id for spec in parsed.models]
    if len(set(ids)) != len(ids):
        raise ValueError("FLUXGATE_MODELS: a model id appears twice")
    default = parsed.default or ids[0]
    if default not in ids:
        raise ValueError(f"FLUXGATE_MODELS: the default '{default}' is not one of the models")
    return parsed.models, default


@lru_cache(maxsize=8)
def model_registry(
    models: str = "",
    lora_dir: str = "",
    *,
    max_loras: int = 4,
    max_scale: float = 2.0,
    default_source: str = "",
) -> ModelRegistry:
    """The registry of these settings (cached: each process reads its file once)."""
    specs, default = parse_models(models, default_source)
    return ModelRegistry(
        models={spec.id: spec for spec in specs},
        default=default,
        lora_dir=Path(lora_dir) if lora_dir else None,
        max_loras=min(max_loras, MAX_LORAS),
        max_scale=min(max_scale, MAX_LORA_SCALE),
    )
