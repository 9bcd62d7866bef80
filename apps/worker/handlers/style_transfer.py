"""`style_transfer`: FLUX image-to-image on an inference server, batched with its own kind."""

from __future__ import annotations

import base64
import io

from PIL import Image

from apps.common.task_types.style_transfer import StyleTransferInput, output_size
from apps.common.wire.contracts import FluxInput
from apps.common.wire.inference import InferenceRequest
from apps.worker.handlers import HandlerContext, Prepared, model_used

TASK_TYPE = "style_transfer"


def prepare(task_input: StyleTransferInput, ctx: HandlerContext) -> Prepared:
    image = ctx.image("image").convert("RGB")
    width, height = output_size(image.width, image.height, task_input.max_side)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    spec = FluxInput(
        prompt=task_input.prompt,
        width=width,
        height=height,
        num_inference_steps=task_input.num_inference_steps,
        guidance_scale=task_input.guidance_scale,
        seed=task_input.seed,
        num_images=task_input.num_images,
        output_format=task_input.output_format,
        model=task_input.model,
        loras=task_input.loras,
    )
    request = InferenceRequest(
        task_id=ctx.task_id,
        input=spec,
        image_b64=base64.b64encode(buffer.getvalue()).decode(),
        strength=task_input.strength,
    )
    default_model = ctx.settings.model_registry().default
    extra = {"strength": task_input.strength, **model_used(spec, default_model)}
    return Prepared("style_transfer", request, extra)
