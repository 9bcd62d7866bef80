"""Translation with a transformers seq2seq model (MarianMT style), from a local directory or hub id.

torch and transformers are imported when a model is loaded, never at import time: the worker
starts without them and only a process that translates pays for them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apps.worker.errors import InvalidInput, Stopped

if TYPE_CHECKING:
    from transformers import PreTrainedModel

BATCH_SIZE = 8
NUM_BEAMS = 2
TRANSLATOR_CACHE_SIZE = 2


def language_token(target_lang: str) -> str:
    """The Marian target-language token for `de` or `>>de<<`: `>>de<<`."""
    code = target_lang.strip()
    return code if code.startswith(">>") and code.endswith("<<") else f">>{code}<<"


class Translator:
    """A loaded seq2seq model and its tokenizer; `translate` is deterministic (beam search)."""

    def __init__(self, tokenizer: Any, model: PreTrainedModel, *, source: str, device: str) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.source = source
        self.device = device
        # Multilingual Marian models (opus-mt-en-ROMANCE, ...) pick the output language from a
        # `>>xx<<` token at the start of the input; single-pair models have none.
        self.language_tokens: tuple[str, ...] = tuple(
            sorted(t for t in tokenizer.get_vocab() if t.startswith(">>") and t.endswith("<<"))
        )
        self.max_input_tokens = _max_input_tokens(tokenizer, model)

    @classmethod
    def load(cls, source: str, *, device: str = "cpu") -> Translator:
        """Load `source` (a local directory or a hub id) with `from_pretrained`, in eval mode.

        A missing model raises `OSError`: `FileNotFoundError` for a local path with no model
        (no `config.json`), transformers' own `OSError` for a hub id it cannot find (offline
        and not cached). A model that is not seq2seq raises `ValueError`.
        """
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        location = source
        if _looks_local(source):
            directory = Path(source).expanduser()
            # Checked here: transformers 5 reports a directory without a model as a tokenizer
            # backend ValueError, which says nothing about the path.
            if not (directory / "config.json").is_file():
                raise FileNotFoundError(f"no translation model (config.json) in {directory}")
            location = str(directory)
        with warnings.catch_warnings():
            # MarianTokenizer warns on every load without sacremoses, which only normalises
            # punctuation; the tokens are the same without it.
            warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
            tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForSeq2SeqLM.from_pretrained(location)
        model.to(device)
        model.eval()
        return cls(tokenizer, model, source=source, device=device)

    def translate(
        self,
        texts: list[str],
        *,
        target_lang: str | None = None,
        max_new_tokens: int = 256,
        batch_size: int = BATCH_SIZE,
        progress: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[str]:
        """Translate `texts`, in order, `batch_size` at a time.

        `target_lang` (`de` or `>>de<<`) is put before each text for a multilingual model, and a
        code the model lacks raises `InvalidInput(field="target_lang")`; a single-pair model
        has one output language, so there `target_lang` is ignored. A text longer than the model
        takes raises `InvalidInput(field="text")`. `progress` gets the fraction done after each
        batch (the last call is 1.0); `should_stop` is asked before each batch and True raises
        `Stopped`. Blank texts come back as "".
        """
        import torch

        prefix = self._prefix(target_lang)
        todo = [i for i, text in enumerate(texts) if text.strip()]
        inputs = [prefix + texts[i] for i in todo]
        lengths = [len(ids) for ids in self.tokenizer(inputs)["input_ids"]] if inputs else []
        for i, length in zip(todo, lengths, strict=True):
            if length > self.max_input_tokens:
                raise InvalidInput(
                    f"text[{i}] is {length} tokens long; the model takes at most "
                    f"{self.max_input_tokens}",
                    field="text",
                )
        # Texts of like length share a batch, so little of each batch is padding.
        order = sorted(range(len(inputs)), key=lambda k: lengths[k])
        results = [""] * len(texts)
        for start in range(0, len(order), batch_size):
            if should_stop is not None and should_stop():
                raise Stopped(f"stopped after {start} of {len(order)} texts")
            chunk = order[start : start + batch_size]
            batch = self.tokenizer(
                [inputs[k] for k in chunk], return_tensors="pt", padding=True
            ).to(self.device)
            with torch.inference_mode():
                generated = self.model.generate(  # type: ignore[operator]
                    **batch, max_new_tokens=max_new_tokens, num_beams=NUM_BEAMS, do_sample=False
                )
            decoded = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
            for k, text in zip(chunk, decoded, strict=True):
                results[todo[k]] = text.strip()
            if progress is not None:
                progress(min(start + batch_size, len(order)) / len(order))
        if progress is not None and not order:
            progress(1.0)
        return results

    def _prefix(self, target_lang: str | None) -> str:
        if target_lang is None or not self.language_tokens:
            return ""
        token = language_token(target_lang)
        if token not in self.language_tokens:
            valid = ", ".join(self.language_tokens)
            raise InvalidInput(
                f"unknown target_lang {target_lang!r} for this model; valid: {valid}",
                field="target_lang",
            )
        return token + " "


@lru_cache(maxsize=TRANSLATOR_CACHE_SIZE)
def get_translator(source: str, *, device: str = "cpu") -> Translator:
    """This process's `Translator` for `source`, loaded on first use; the last few are kept."""
    return Translator.load(source, device=device)


def _looks_local(source: str) -> bool:
    # A hub id is "name" or "org/name"; anything else, or anything that exists here, is a path.
    if source.startswith((".", "~", "/")) or source.count("/") > 1:
        return True
    return Path(source).exists()


def _max_input_tokens(tokenizer: Any, model: PreTrainedModel) -> int:
    limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    return min((limit for limit in limits if isinstance(limit, int) and limit > 0), default=10**9)
