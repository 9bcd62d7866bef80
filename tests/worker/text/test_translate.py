"""Translation on the tiny offline MarianMT model, loaded through the real from_pretrained path."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from apps.worker.errors import InvalidInput, Stopped
from apps.worker.text.tiny_translator import LANGUAGE_TOKENS, ensure_tiny_translator
from apps.worker.text.translate import Translator, get_translator
from devtools.procs import ROOT

TEXTS = ["the cat sits on the mat", "a red fox in the snow", "hello world"]
FEW_TOKENS = 24


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    # The model is too small to gain from threads, and on a busy CI box their spin-waits make
    # each generate call ~100x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_translator(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def translator(model_dir: Path) -> Translator:
    return Translator.load(str(model_dir))


def test_tiny_model_is_built_once(model_dir: Path) -> None:
    stamp = (model_dir / "config.json").stat().st_mtime_ns
    assert ensure_tiny_translator(model_dir.parent) == model_dir
    assert (model_dir / "config.json").stat().st_mtime_ns == stamp
    assert {"source.spm", "target.spm", "vocab.json", "model.safetensors"} <= {
        p.name for p in model_dir.iterdir()
    }
    assert [p.name for p in model_dir.parent.iterdir()] == [model_dir.name]  # no staging left


def test_load_goes_through_from_pretrained(translator: Translator) -> None:
    assert type(translator.tokenizer).__name__ == "MarianTokenizer"
    assert type(translator.model).__name__ == "MarianMTModel"
    assert not translator.model.training
    assert translator.language_tokens == tuple(sorted(LANGUAGE_TOKENS))


def test_translates_each_text_deterministically(translator: Translator) -> None:
    first = translator.translate(TEXTS, max_new_tokens=FEW_TOKENS)
    assert len(first) == 3
    assert all(isinstance(text, str) and text for text in first)
    assert translator.translate(TEXTS, max_new_tokens=FEW_TOKENS) == first


def test_batching_keeps_the_order_of_texts(translator: Translator) -> None:
    texts = [*TEXTS, "die Katze schläft", "une maison près de la mer a castle on a hill"]
    alone = [translator.translate([t], max_new_tokens=FEW_TOKENS)[0] for t in texts]
    assert len(set(alone)) > 1  # else a mix-up could not show
    batched = translator.translate(texts, max_new_tokens=FEW_TOKENS, batch_size=2)
    assert batched == alone


def test_progress_after_each_batch_ends_at_one(translator: Translator) -> None:
    seen: list[float] = []
    translator.translate(
        [*TEXTS, "a castle", "the dog"], max_new_tokens=4, batch_size=2, progress=seen.append
    )
    assert seen == [0.4, 0.8, 1.0]


def test_should_stop_between_batches_raises_stopped(translator: Translator) -> None:
    seen: list[float] = []
    with pytest.raises(Stopped):
        translator.translate(
            TEXTS,
            max_new_tokens=4,
            batch_size=1,
            progress=seen.append,
            should_stop=lambda: bool(seen),
        )
    assert seen == [pytest.approx(1 / 3)]


def test_should_stop_before_the_first_batch(translator: Translator) -> None:
    seen: list[float] = []
    with pytest.raises(Stopped):
        translator.translate(TEXTS, progress=seen.append, should_stop=lambda: True)
    assert seen == []


def test_target_language_token_reaches_the_model(translator: Translator) -> None:
    plain = translator.translate(TEXTS, max_new_tokens=FEW_TOKENS)
    german = translator.translate(TEXTS, target_lang=">>de<<", max_new_tokens=FEW_TOKENS)
    assert german != plain
    assert translator.translate(TEXTS, target_lang="de", max_new_tokens=FEW_TOKENS) == german
    french = translator.translate(TEXTS, target_lang=">>fr<<", max_new_tokens=FEW_TOKENS)
    assert french != german


def test_unknown_target_language_is_an_input_error(translator: Translator) -> None:
    with pytest.raises(InvalidInput) as caught:
        translator.translate(TEXTS, target_lang="xx")
    assert caught.value.field == "target_lang"
    assert ">>de<<" in caught.value.message


def test_single_pair_model_ignores_target_language(translator: Translator) -> None:
    single = copy.copy(translator)
    single.language_tokens = ()
    plain = single.translate(TEXTS, max_new_tokens=FEW_TOKENS)
    assert single.translate(TEXTS, target_lang="xx", max_new_tokens=FEW_TOKENS) == plain


def test_blank_texts_come_back_blank(translator: Translator) -> None:
    seen: list[float] = []
    assert translator.translate(["", "  "], progress=seen.append) == ["", ""]
    assert seen == [1.0]
    out = translator.translate(["", "hello world", " "], max_new_tokens=FEW_TOKENS)
    assert out[0] == out[2] == ""
    assert out[1] == translator.translate(["hello world"], max_new_tokens=FEW_TOKENS)[0]


def test_text_longer_than_the_model_takes_is_an_input_error(translator: Translator) -> None:
    with pytest.raises(InvalidInput) as caught:
        translator.translate(["hello", "the cat sits on the mat " * 200])
    assert caught.value.field == "text"
    assert "text[1]" in caught.value.message


def test_missing_model_directory_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no translation model"):
        Translator.load(str(tmp_path / "nope"))
    with pytest.raises(OSError, match="no translation model"):
        Translator.load(str(tmp_path))  # exists, but holds no model


def test_get_translator_loads_once_per_source(model_dir: Path) -> None:
    get_translator.cache_clear()
    try:
        first = get_translator(str(model_dir))
        assert get_translator(str(model_dir)) is first
    finally:
        get_translator.cache_clear()


def test_importing_the_text_modules_does_not_import_torch() -> None:
    code = (
        "import sys, apps.worker.text.translate, apps.worker.text.prompt_refine,"
        " apps.worker.text.tiny_translator;"
        "heavy = sorted({'torch', 'transformers'} & set(sys.modules)); print(heavy);"
        "sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
