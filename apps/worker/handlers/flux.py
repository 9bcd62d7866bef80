"""`flux`: text to image on an inference server; the prompt refined first when asked."""

from __future__ import annotations

from apps.common.wire.contracts import FluxInput
from apps.common.wire.inference import InferenceRequest
from apps.worker.handlers import HandlerContext, Prepared, model_used
from apps.worker.handlers.prompt_refine import refine

TASK_TYPE = "flux"
# FLUX's T5 reads up to 512 tokens; refined prompts stay well inside that.
REFINED_MAX_LENGTH = 600


def prepare(task_input: FluxInput, ctx: HandlerContext) -> Prepared:
    extra: dict[str, object] = {}
    if task_input.refine_prompt:
        refined = refine(
            task_input.prompt,
            ctx.settings,
            method="auto",
            style=None,
            max_length=REFINED_MAX_LENGTH,
        )
        task_input = task_input.model_copy(update={"prompt": refined.prompt})
        extra["prompt_refinement"] = refined.method
    extra["prompt"] = task_input.prompt
    extra.update(model_used(task_input, ctx.settings.model_registry().default))
    return Prepared("flux", InferenceRequest(task_id=ctx.task_id, input=task_input), extra)
