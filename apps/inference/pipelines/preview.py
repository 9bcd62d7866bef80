"""Live previews: FLUX latents to a small RGB image with a linear projection, not the VAE.

The projection (latent channels -> RGB, plus a bias) is fitted once at load time by least squares
against VAE decodes of a few random latents, so it suits whatever VAE the checkpoint has (the
tiny test model or real FLUX weights) without a download. A preview keeps the latent resolution
(1/8 of the image's side) and is sent as WebP.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from apps.common.service.logging import get_logger
from apps.inference.metrics import PREVIEW_SECONDS

log = get_logger(__name__)

# Enough pixels for a stable fit of (channels + 1) x 3 numbers; small enough to decode in a blink.
_FIT_LATENTS = 2
_FIT_SIDE = 32
WEBP_QUALITY = 70


class LatentPreviewer:
    """Turns packed FLUX latents (the transformer's layout) into small WebP previews."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, vae_scale_factor: int) -> None:
        self._weight = weight  # (3, latent channels), float32, on the model's device
        self._bias = bias  # (3,)
        self._vae_scale_factor = vae_scale_factor

    @classmethod
    def fit(cls, pipe: Any, device: torch.device, *, seed: int = 0) -> LatentPreviewer:
        """Fit the projection on VAE decodes of random latents (the transformer's scaling)."""
        channels = pipe.vae.config.latent_channels
        generator = torch.Generator(device="cpu").manual_seed(seed)
        latents = torch.randn(_FIT_LATENTS, channels, _FIT_SIDE, _FIT_SIDE, generator=generator)
        scaled = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        with torch.inference_mode():
            pixels = pipe.vae.decode(scaled.to(device, pipe.vae.dtype), return_dict=False)[0]
        # Each latent pixel stands for an 8x8 block of the image: fit against the block's mean.
        target = F.avg_pool2d(pixels.float().cpu(), pipe.vae_scale_factor)
        inputs = latents.permute(0, 2, 3, 1).reshape(-1, channels).double()
        inputs = torch.cat([inputs, torch.ones(inputs.shape[0], 1, dtype=inputs.dtype)], dim=1)
        outputs = target.permute(0, 2, 3, 1).reshape(-1, 3).double()
        solution = torch.linalg.lstsq(inputs, outputs).solution  # (channels + 1, 3)
        weight = solution[:channels].T.float().to(device)
        bias = solution[channels].float().to(device)
        return cls(weight, bias, pipe.vae_scale_factor)

    def estimates(
        self,
        latents: torch.Tensor,
        sigma: torch.Tensor,
        noise: torch.Tensor,
        rows: list[int],
        width: int,
        height: int,
    ) -> list[str] | None:
        """Previews of `rows`' current estimate of their final latents (x0 = x_t - sigma * v,
        flow matching); None, logged, when they fail: a preview must not fail its step."""
        started = time.perf_counter()
        at = torch.tensor(rows, device=latents.device)
        try:
            estimate = (
                latents.index_select(0, at).float()
                - sigma.index_select(0, at)[:, None, None] * noise.index_select(0, at).float()
            )
            images = self.render(estimate, width, height)
        except Exception:
            log.warning("previews failed", rows=len(rows), exc_info=True)
            return None
        PREVIEW_SECONDS.observe(time.perf_counter() - started)
        return images

    def render(self, packed: torch.Tensor, width: int, height: int) -> list[str]:
        """One WebP (base64) per row of `packed` (rows, tokens, channels x 4)."""
        rows, _, packed_channels = packed.shape
        latent_h = 2 * (height // (self._vae_scale_factor * 2))
        latent_w = 2 * (width // (self._vae_scale_factor * 2))
        channels = packed_channels // 4
        # The inverse of FluxPipeline._pack_latents: 2x2 patches back to channel planes.
        latents = packed.float().view(rows, latent_h // 2, latent_w // 2, channels, 2, 2)
        latents = latents.permute(0, 3, 1, 4, 2, 5).reshape(rows, channels, latent_h, latent_w)
        rgb = torch.einsum("rchw,kc->rkhw", latents, self._weight)
        rgb = rgb + self._bias[None, :, None, None]
        pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        frames = pixels.permute(0, 2, 3, 1).cpu().numpy()
        previews = []
        for frame in frames:
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="WEBP", quality=WEBP_QUALITY)
            previews.append(base64.b64encode(buffer.getvalue()).decode())
        return previews
