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


def latent_size(pipe: Any, width: int, height: int) -> tuple[int, int]:
    """The latents' (height, width): 1/8 of the image, even, as FluxPipeline.prepare_latents."""
    factor = pipe.vae_scale_factor * 2
    return 2 * (height // factor), 2 * (width // factor)


def shift_mu(pipe: Any, latent_h: int, latent_w: int) -> float:
    """FLUX's resolution-dependent shift of the schedule (depends on the image size only)."""
    config = pipe.scheduler.config
    return float(
        calculate_shift(
            (latent_h // 2) * (latent_w // 2),
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
    )


def flux_sigmas(steps: int) -> list[float]:
    """The sigmas FluxPipeline passes to its scheduler before the shift."""
    return [float(s) for s in np.linspace(1.0, 1 / steps, steps)]


def img2img_start(steps: int, strength: float) -> int:
    """How many of the schedule's first steps image-to-image skips (FluxImg2ImgPipeline)."""
    return int(max(steps - min(steps * strength, steps), 0))


def encode_prompts(
    pipe: Any, prompts: list[str], max_sequence_length: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row T5 embeddings, pooled CLIP embeddings, and the text position ids."""
    embeds, pooled, text_ids = pipe.encode_prompt(
        prompt=prompts,
        prompt_2=None,
        device=device,
        num_images_per_prompt=1,
        max_sequence_length=max_sequence_length,
    )
    return embeds, pooled, text_ids


def noised_image_latents(
    pipe: Any,
    scheduler: Any,
    images: list[Any],
    generators: list[torch.Generator],
    first_timestep: torch.Tensor,
    size: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Image-to-image start: each image's latents noised to `first_timestep` (packed), drawing
    from each row's generator in FluxImg2ImgPipeline's order (encode, then noise). `scheduler`
    has its begin index set to the skipped steps; `size` is the images' (width, height)."""
    width, height = size
    latent_h, latent_w = latent_size(pipe, width, height)
    channels = pipe.transformer.config.in_channels // 4
    pixels = torch.cat(
        [pipe.image_processor.preprocess(image, height=height, width=width) for image in images]
    ).to(device=device, dtype=pipe.vae.dtype)
    encoded = torch.cat(
        [
            retrieve_latents(pipe.vae.encode(pixels[i : i + 1]), generator=generators[i])
            for i in range(len(images))
        ]
    )
    encoded = (encoded - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
    shape_4d = (len(images), channels, latent_h, latent_w)
    noise = randn_tensor(shape_4d, generator=generators, device=device, dtype=dtype)
    noised = scheduler.scale_noise(
        encoded.to(dtype), first_timestep.reshape(1).repeat(len(images)), noise
    )
    packed: torch.Tensor = pipe._pack_latents(noised, len(images), channels, latent_h, latent_w)
    return packed


def decode_images(pipe: Any, latents: torch.Tensor, width: int, height: int) -> list[Any]:
    """Packed latents to PIL images through the VAE."""
    latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
    decoded = pipe.vae.decode(latents.to(pipe.vae.dtype), return_dict=False)[0]
    return list(pipe.image_processor.postprocess(decoded, output_type="pil"))


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

    prompt_embeds, pooled, text_ids = encode_prompts(
        pipe, prompts, shape.max_sequence_length, device
    )
    neg_embeds: torch.Tensor | None = None
    neg_pooled: torch.Tensor | None = None
    neg_text_ids: torch.Tensor | None = None
    if shape.true_cfg:
        negatives = [r.negative_prompt or "" for r in requests for _ in r.seeds]
        neg_embeds, neg_pooled, neg_text_ids = encode_prompts(
            pipe, negatives, shape.max_sequence_length, device
        )
    scheduler = pipe.scheduler
    latent_h, latent_w = latent_size(pipe, shape.width, shape.height)
    mu = shift_mu(pipe, latent_h, latent_w)
    timesteps, _ = retrieve_timesteps(
        scheduler, shape.steps, device, sigmas=flux_sigmas(shape.steps), mu=mu
    )
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
        start = img2img_start(shape.steps, shape.strength)
        timesteps = timesteps[start:]
        scheduler.set_begin_index(start)
        latents = noised_image_latents(
            pipe,
            scheduler,
            [r.init_image for r in requests for _ in r.seeds],
            generators,
            timesteps[0],
            (shape.width, shape.height),
            prompt_embeds.dtype,
            device,
        )
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
            pooled, guidance = pooled.index_select(0, keep), _select(guidance, keep)
            neg_embeds, neg_pooled = _select(neg_embeds, keep), _select(neg_pooled, keep)

    images = decode_images(pipe, latents, shape.width, shape.height)
    for image, index in zip(images, owner.tolist(), strict=True):
        requests[int(index)].images.append(image)
