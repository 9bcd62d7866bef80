"""The per-row state of a FLUX step group: what rows must share, their tensors, their schedules,
their encoded prompts, and how a request's rows start (noise or a noised picture, and the
schedule from the step it starts at)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.pipelines.flux.pipeline_flux import retrieve_timesteps

from apps.common.wire.inference import InferenceRequest
from apps.inference.pipelines.flux_denoise import (
    encode_prompts,
    flux_sigmas,
    img2img_start,
    latent_size,
    noised_image_latents,
    shift_mu,
)

# Every row's schedule sits in one table row: at most 100 steps, plus the final sigma 0.
TABLE = 101


@dataclass(frozen=True)
class GroupShape:
    """What rows must share to run in one transformer call."""

    width: int
    height: int
    true_cfg: bool
    max_sequence_length: int


@dataclass
class RowTensors:
    """The per-row state, row i of each tensor belonging to the same image."""

    latents: torch.Tensor
    embeds: torch.Tensor
    pooled: torch.Tensor
    neg_embeds: torch.Tensor | None
    neg_pooled: torch.Tensor | None
    guidance: torch.Tensor | None
    sigmas: torch.Tensor  # (rows, TABLE) float32: the row's sigmas from its first step on
    timesteps: torch.Tensor  # (rows, TABLE) float32
    position: torch.Tensor  # (rows,) long: the row's index into its schedule

    def select(self, keep: torch.Tensor) -> RowTensors:
        def pick(tensor: torch.Tensor | None) -> Any:
            return None if tensor is None else tensor.index_select(0, keep)

        return RowTensors(*(pick(getattr(self, f)) for f in _FIELDS))

    @staticmethod
    def cat(parts: list[RowTensors]) -> RowTensors:
        def join(name: str) -> Any:
            tensors = [getattr(p, name) for p in parts]
            return None if tensors[0] is None else torch.cat(tensors)

        return RowTensors(*(join(f) for f in _FIELDS))


_FIELDS = list(RowTensors.__dataclass_fields__)


@dataclass
class Schedules:
    """Each step count's shifted sigmas and timesteps for one image size, on the device (made
    once: the FLUX shift depends on the image size only)."""

    pipe: Any
    device: torch.device
    mu: float
    made: dict[int, tuple[Any, torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @classmethod
    def for_size(cls, pipe: Any, device: torch.device, width: int, height: int) -> Schedules:
        return cls(pipe, device, shift_mu(pipe, *latent_size(pipe, width, height)))

    def of(self, steps: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """(a scheduler set to this schedule, timesteps (steps,), sigmas (steps + 1,))."""
        if steps not in self.made:
            # A private scheduler: the pipeline's own one is the window batcher's.
            scheduler = copy.deepcopy(self.pipe.scheduler)
            timesteps, _ = retrieve_timesteps(
                scheduler, steps, self.device, sigmas=flux_sigmas(steps), mu=self.mu
            )
            self.made[steps] = (scheduler, timesteps, scheduler.sigmas.to(self.device))
        return self.made[steps]


def steps_to_run(request: InferenceRequest) -> int:
    """The denoising steps a request runs: all of them, or image-to-image's last ones."""
    steps = request.input.num_inference_steps
    if request.strength is None:
        return steps
    return steps - img2img_start(steps, request.strength)


def start_rows(
    pipe: Any,
    shape: GroupShape,
    schedules: Schedules,
    request: InferenceRequest,
    seeds: list[int],
    init: Any,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A request's first latents, one row per seed, and its rows of the schedule tables
    (sigmas, timesteps) from the step it starts at. `init`: image-to-image's start picture."""
    steps = request.input.num_inference_steps
    scheduler, timesteps, sigmas = schedules.of(steps)
    # CPU generators, one per image: a seed gives the same noise alone, in a batch, anywhere.
    generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    start = steps - steps_to_run(request)
    if request.strength is None:
        channels = pipe.transformer.config.in_channels // 4
        latents, _ = pipe.prepare_latents(
            len(seeds), channels, shape.height, shape.width, dtype, device, generators
        )
    else:
        scheduler.set_begin_index(start)
        latents = noised_image_latents(
            pipe,
            scheduler,
            [init] * len(seeds),
            generators,
            timesteps[start],
            (shape.width, shape.height),
            dtype,
            device,
        )
    sigma_table = torch.zeros(len(seeds), TABLE, dtype=torch.float32, device=device)
    sigma_table[:, : steps + 1 - start] = sigmas[start:]
    time_table = torch.zeros(len(seeds), TABLE, dtype=torch.float32, device=device)
    time_table[:, : steps - start] = timesteps[start:]
    return latents, sigma_table, time_table


@dataclass(frozen=True)
class EncodedPrompt:
    """One request's prompt, and negative prompt with true CFG, through the text encoders."""

    embeds: torch.Tensor  # (1, text length, dim)
    pooled: torch.Tensor  # (1, pooled dim)
    neg_embeds: torch.Tensor | None
    neg_pooled: torch.Tensor | None
    text_ids: torch.Tensor


def encode_requests(
    pipe: Any, requests: list[InferenceRequest], max_sequence_length: int, device: torch.device
) -> list[EncodedPrompt]:
    """The prompts of `requests` in one encoder call, their negative prompts in another."""
    embeds, pooled, text_ids = encode_prompts(
        pipe, [r.input.prompt for r in requests], max_sequence_length, device
    )
    with_negative = [i for i, r in enumerate(requests) if r.input.negative_prompt is not None]
    negatives: list[tuple[torch.Tensor | None, torch.Tensor | None]] = [(None, None)] * len(
        requests
    )
    if with_negative:
        neg_embeds, neg_pooled, _ = encode_prompts(
            pipe,
            [requests[i].input.negative_prompt or "" for i in with_negative],
            max_sequence_length,
            device,
        )
        for j, i in enumerate(with_negative):
            negatives[i] = (neg_embeds[j : j + 1], neg_pooled[j : j + 1])
    return [
        EncodedPrompt(embeds[i : i + 1], pooled[i : i + 1], neg[0], neg[1], text_ids)
        for i, neg in enumerate(negatives)
    ]
