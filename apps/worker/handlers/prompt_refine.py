"""`prompt_refine`: rules by default, an OpenAI-compatible LLM when FLUXGATE_LLM_URL is set."""

from __future__ import annotations

from apps.common.task_types.prompt_refine import PromptRefineInput
from apps.worker.errors import JobFailed
from apps.worker.handlers import HandlerContext, Output
from apps.worker.settings import WorkerSettings
from apps.worker.text.prompt_refine import Refinement, refine_rules, refine_with_llm

TASK_TYPE = "prompt_refine"


def refine(
    prompt: str, settings: WorkerSettings, *, method: str, style: str | None, max_length: int
) -> Refinement:
    """Shared with `flux`'s `refine_prompt`: the LLM when asked or configured, else rules."""
    use_llm = method == "llm" or (method == "auto" and bool(settings.llm_url))
    if not use_llm:
        return refine_rules(prompt, style=style, max_length=max_length)
    if not settings.llm_url:
        raise JobFailed("model_not_configured", "method llm needs FLUXGATE_LLM_URL")
    return refine_with_llm(
        prompt,
        url=settings.llm_url,
        model=settings.llm_model,
        api_key=settings.llm_api_key or None,
        style=style,
        max_length=max_length,
        timeout_s=settings.llm_timeout_s,
    )


def run(task_input: PromptRefineInput, ctx: HandlerContext) -> Output:
    refined = refine(
        task_input.prompt,
        ctx.settings,
        method=task_input.method,
        style=task_input.style,
        max_length=task_input.max_length,
    )
    return Output(
        extra={
            "prompt": refined.prompt,
            "negative_prompt": refined.negative_prompt,
            "method": refined.method,
            "added": list(refined.added),
        }
    )
