"""A tiny randomly initialised MarianMT model and tokenizer, built offline with the real classes.

Tests and local runs load it through `Translator.load`, i.e. the real `from_pretrained` path,
without a hub download. Its translations are gibberish, but the same input gives the same output.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

from apps.common.service.build_once import build_once

_SEED = 0
# Multilingual, like opus-mt-en-ROMANCE: the output language is chosen by a token in the input.
LANGUAGE_TOKENS = (">>de<<", ">>fr<<")
_CORPUS = (
    "a red fox in the snow",
    "the cat sits on the mat",
    "a castle on a hill at sunset",
    "hello world, how are you today?",
    "please translate this sentence into another language",
    "der Hund läuft im Park",
    "die Katze schläft auf dem Sofa",
    "le chat dort sur le lit",
    "une maison près de la mer",
)


def tiny_translator_dir(cache_dir: Path) -> Path:
    """Where the tiny model lives inside `cache_dir`."""
    return cache_dir / "tiny-marian"


def ensure_tiny_translator(cache_dir: Path) -> Path:
    """Build and save the tiny model once; return its directory (safe across processes)."""
    return build_once(tiny_translator_dir(cache_dir), "config.json", _build)


def _build(out: Path) -> None:
    import torch
    from transformers import MarianConfig, MarianMTModel

    tokenizer = _marian_tokenizer(out / "_tok")
    vocab = tokenizer.get_vocab()
    torch.manual_seed(_SEED)
    config = MarianConfig(
        vocab_size=len(vocab),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=512,
        dropout=0.0,
        # Wider than the default 0.02, so that different inputs give different outputs.
        init_std=0.5,
        pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["</s>"],
        forced_eos_token_id=vocab["</s>"],
        decoder_start_token_id=vocab["<pad>"],
    )
    MarianMTModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(out / "_tok")


def _marian_tokenizer(workdir: Path):  # type: ignore[no-untyped-def]
    """A MarianTokenizer from a sentencepiece model trained here and a vocab.json written here.

    Marian keeps its own id table (vocab.json) beside the sentencepiece models: `</s>` 0, `<unk>`
    1, the language tokens, every sentencepiece piece, and `<pad>` last, as in opus-mt models.
    One sentencepiece model serves as both `source.spm` and `target.spm`.
    """
    import sentencepiece as spm
    from transformers import MarianTokenizer

    workdir.mkdir(parents=True)
    corpus = workdir / "corpus.txt"
    corpus.write_text("\n".join(_CORPUS) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(workdir / "spiece"),
        vocab_size=96,
        hard_vocab_limit=False,
        model_type="unigram",
        character_coverage=1.0,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_file=str(workdir / "spiece.model"))
    vocab = {"</s>": 0, "<unk>": 1}
    for token in LANGUAGE_TOKENS:
        vocab[token] = len(vocab)
    for piece_id in range(processor.get_piece_size()):
        if not (processor.is_control(piece_id) or processor.is_unknown(piece_id)):
            vocab.setdefault(processor.id_to_piece(piece_id), len(vocab))
    vocab["<pad>"] = len(vocab)
    (workdir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    for name in ("source.spm", "target.spm"):
        shutil.copyfile(workdir / "spiece.model", workdir / name)
    with warnings.catch_warnings():
        # Without sacremoses MarianTokenizer warns; it only normalises punctuation.
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        return MarianTokenizer(
            source_spm=str(workdir / "source.spm"),
            target_spm=str(workdir / "target.spm"),
            vocab=str(workdir / "vocab.json"),
        )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m apps.worker.text.tiny_translator",
        description="Build the tiny offline translation model (random weights: its output is "
        "gibberish, but `translate` runs end to end) and print its directory, for "
        "FLUXGATE_TRANSLATE_MODEL.",
    )
    parser.add_argument("cache_dir", nargs="?", default=".data/models", type=Path)
    print(ensure_tiny_translator(parser.parse_args().cache_dir))


if __name__ == "__main__":
    main()
