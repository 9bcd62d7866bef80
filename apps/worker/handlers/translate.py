"""`translate`: a seq2seq model (FLUXGATE_TRANSLATE_MODEL), loaded once per worker process."""

from __future__ import annotations

import os
from functools import lru_cache

from apps.common.task_types.translate import TranslateInput
from apps.worker.errors import JobFailed
from apps.worker.handlers import HandlerContext, Output
from apps.worker.text.translate import get_translator

TASK_TYPE = "translate"


def run(task_input: TranslateInput, ctx: HandlerContext) -> Output:
    source = ctx.settings.translate_model
    if not source:
        # The gateway refuses these at submit; a worker configured differently says so plainly.
        raise JobFailed("model_not_configured", "FLUXGATE_TRANSLATE_MODEL is not set")
    texts = [task_input.text] if isinstance(task_input.text, str) else list(task_input.text)
    _share_cores(ctx.settings.worker_concurrency)
    translator = get_translator(source)
    ctx.progress(0.05)
    translations = translator.translate(
        texts,
        target_lang=task_input.target_lang,
        max_new_tokens=task_input.max_new_tokens,
        progress=ctx.progress,
        should_stop=ctx.should_stop,
    )
    return Output(extra={"translations": translations, "model": source})


@lru_cache(maxsize=1)
def _share_cores(concurrency: int) -> None:
    """Each pool process gets its share of the cores: torch's default (all of them, in every
    process) made generation about 100x slower under contention on a 2-core machine."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // concurrency))
