"""The FLUX denoising loop over a batch whose requests may leave between steps.

It follows diffusers' `FluxPipeline.__call__` (same helpers, same maths) but owns the loop, so the
rows of a request that left are dropped from every batched tensor at the next step while the
other requests carry on; the stock pipeline can only interrupt the whole batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
from diffusers.pipelines.flux.pipeline_flux_img2img import retrieve_latents
from diffusers.utils.torch_utils import randn_tensor

# A negative prompt only works with true CFG, which runs the transformer twice per step.
TRUE_CFG_SCALE = 4.0


@dataclass
class Rows:
    """The rows (images) of one request inside the batch, and whether it is still wanted."""

    prompt: str
    negative_prompt: str | None
    seeds: list[int]
    on_step: Callable[[int, int], bool]
    # Image-to-image: the picture to start from (PIL, already at the batch's size).
    init_image: Any = None
    active: bool = True
    images: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Shape:
    width: int
    height: int
    steps: int
    guidance_scale: float
    true_cfg: bool
    max_sequence_length: int
    # Image-to-image: how much of the schedule runs (1.0 redraws from pure noise). None: text only.
    strength: float | None = None


def _select(tensor: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
    return None if tensor is None else tensor.index_select(0, keep)


def denoise_batch(
    pipe: Any,
    shape: Shape,
    requests: list[Rows],
    *,
    device: torch.device,
    step_delay_s: float = 0.0,
) -> None:
    """Generate every active request's images into `Rows.images` (PIL), in one batch.

    `pipe` is a loaded diffusers `FluxPipeline` (typed loosely: diffusers' lazy modules defeat
    static types)."""
    prompts = [r.prompt for r in requests for _ in r.seeds]
    owner = torch.tensor([i for i, r in enumerate(requests) for _ in r.seeds], device=device)
    generators = [torch.Generator(device="cpu").manual_seed(s) for r in requests for s in r.seeds]

    prompt_embeds, pooled, text_ids = pipe.encode_prompt(
        prompt=prompts,
        prompt_2=None,
        device=device,
        num_images_per_prompt=1,
        max_sequence_length=shape.max_sequence_length,
    )
    neg_embeds = neg_pooled = neg_text_ids = None
    if shape.true_cfg:
        negatives = [r.negative_prompt or "" for r in requests for _ in r.seeds]
        neg_embeds, neg_pooled, neg_text_ids = pipe.encode_prompt(
            prompt=negatives,
            prompt_2=None,
            device=device,
            num_images_per_prompt=1,
            max_sequence_length=shape.max_sequence_length,
        )
    scheduler = pipe.scheduler
    sigmas = np.linspace(1.0, 1 / shape.steps, shape.steps).tolist()
    latent_h = 2 * (shape.height // (pipe.vae_scale_factor * 2))
    latent_w = 2 * (shape.width // (pipe.vae_scale_factor * 2))
    mu = calculate_shift(
        (latent_h // 2) * (latent_w // 2),
        scheduler.config.get("base_image_seq_len", 256),
        scheduler.config.get("max_image_seq_len", 4096),
        scheduler.config.get("base_shift", 0.5),
        scheduler.config.get("max_shift", 1.15),
    )
    timesteps, _ = retrieve_timesteps(scheduler, shape.steps, device, sigmas=sigmas, mu=mu)
    channels = pipe.transformer.config.in_channels // 4
    if shape.strength is None:
        # CPU generators, one per image: a seed gives the same noise alone, in a batch, anywhere.
        latents, image_ids = pipe.prepare_latents(
            len(prompts),
            channels,
            shape.height,
            shape.width,
            prompt_embeds.dtype,
            device,
            generators,
        )
        scheduler.set_begin_index(0)
    else:
        # As FluxImg2ImgPipeline: skip the first (1 - strength) of the schedule and start from
        # the image's latents noised to that point.
        start = int(max(shape.steps - min(shape.steps * shape.strength, shape.steps), 0))
        timesteps = timesteps[start:]
        scheduler.set_begin_index(start)
        pixels = torch.cat(
            [
                pipe.image_processor.preprocess(
                    r.init_image, height=shape.height, width=shape.width
                )
                for r in requests
                for _ in r.seeds
            ]
        ).to(device=device, dtype=pipe.vae.dtype)
        encoded = torch.cat(
            [
                retrieve_latents(pipe.vae.encode(pixels[i : i + 1]), generator=generators[i])
                for i in range(len(prompts))
            ]
        )
        encoded = (encoded - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
        shape_4d = (len(prompts), channels, latent_h, latent_w)
        noise = randn_tensor(
            shape_4d, generator=generators, device=device, dtype=prompt_embeds.dtype
        )
        noised = scheduler.scale_noise(
            encoded.to(prompt_embeds.dtype), timesteps[:1].repeat(len(prompts)), noise
        )
        latents = pipe._pack_latents(noised, len(prompts), channels, latent_h, latent_w)
        image_ids = pipe._prepare_latent_image_ids(
            len(prompts), latent_h // 2, latent_w // 2, device, prompt_embeds.dtype
        )
    guidance = None
    if pipe.transformer.config.guidance_embeds:
        guidance = torch.full(
            [len(prompts)], shape.guidance_scale, device=device, dtype=torch.float32
        )

    def predict(timestep: torch.Tensor, pooled_: Any, embeds: Any, ids: Any) -> torch.Tensor:
        """One transformer pass over the rows still in the batch (the current `latents`,
        `guidance`) with the given prompt encoding."""
        return pipe.transformer(
            hidden_states=latents,
            timestep=timestep / 1000,
            guidance=guidance,
            pooled_projections=pooled_,
            encoder_hidden_states=embeds,
            txt_ids=ids,
            img_ids=image_ids,
            return_dict=False,
        )[0]

    for step, t in enumerate(timesteps):
        timestep = t.expand(latents.shape[0]).to(latents.dtype)
        noise = predict(timestep, pooled, prompt_embeds, text_ids)
        if shape.true_cfg:
            neg_noise = predict(timestep, neg_pooled, neg_embeds, neg_text_ids)
            noise = neg_noise + TRUE_CFG_SCALE * (noise - neg_noise)
        latents = scheduler.step(noise, t, latents, return_dict=False)[0]

        if step_delay_s:
            time.sleep(step_delay_s)
        for rows in requests:
            if rows.active and not rows.on_step(step + 1, len(timesteps)):
                rows.active = False
        wanted = torch.tensor([requests[int(i)].active for i in owner.tolist()], device=device)
        if not bool(wanted.all()):
            if not bool(wanted.any()):
                return
            keep = wanted.nonzero().squeeze(1)
            latents, owner = latents.index_select(0, keep), owner.index_select(0, keep)
            prompt_embeds = prompt_embeds.index_select(0, keep)
            pooled, guidance = _select(pooled, keep), _select(guidance, keep)
            neg_embeds, neg_pooled = _select(neg_embeds, keep), _select(neg_pooled, keep)

    latents = pipe._unpack_latents(latents, shape.height, shape.width, pipe.vae_scale_factor)
    latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
    decoded = pipe.vae.decode(latents.to(pipe.vae.dtype), return_dict=False)[0]
    for image, index in zip(
        pipe.image_processor.postprocess(decoded, output_type="pil"), owner.tolist(), strict=True
    ):
        requests[int(index)].images.append(image)
