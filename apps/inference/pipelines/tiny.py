"""A tiny randomly initialised FLUX pipeline, built offline with the real diffusers classes.

It is the default model: `make up`, the tests and CI run the real loading and generation code on it
without a GPU or a hub download. Images are noise, but a seed always gives the same noise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from apps.common.service.build_once import build_once

# Bump when the recipe below changes, so an old cached copy is rebuilt instead of reused.
TINY_FLUX_VERSION = "1"
_SEED = 0
_CORPUS = (
    "a red fox in the snow, a photo of a cat, a castle on a hill at sunset, portrait of a man, "
    "a bowl of fruit on a wooden table, neon city street at night in the rain, watercolor boats, "
    "mountains and a lake, studio lighting, highly detailed, cinematic, oil painting, 35mm film"
)


def tiny_flux_dir(cache_dir: Path) -> Path:
    """Where the tiny pipeline lives inside `cache_dir`."""
    return cache_dir / f"tiny-flux-v{TINY_FLUX_VERSION}"


def ensure_tiny_flux(cache_dir: Path) -> Path:
    """Build and save the tiny pipeline once; return its directory (safe across processes)."""
    return build_once(tiny_flux_dir(cache_dir), "model_index.json", _build)


def _build(out: Path) -> None:
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(_SEED)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )
    # Four levels give the scale factor 8 of real FLUX: latents stay small and 256x256 stays fast.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
        sample_size=64,
    )
    clip_tokenizer = _clip_tokenizer(out / "_clip_tok")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            pad_token_id=1,
            vocab_size=len(clip_tokenizer),
            hidden_act="gelu",
            projection_dim=32,
        )
    )
    t5_tokenizer = _t5_tokenizer(out / "_t5_tok")
    text_encoder_2 = T5EncoderModel(
        T5Config(  # type: ignore[call-arg]
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="relu",
            vocab_size=len(t5_tokenizer),
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )
    pipe.save_pretrained(out)  # type: ignore[attr-defined]
    shutil.rmtree(out / "_clip_tok")
    shutil.rmtree(out / "_t5_tok")


def _clip_tokenizer(workdir: Path):  # type: ignore[no-untyped-def]
    """A byte-level BPE CLIP tokenizer from a vocabulary and merges written here."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    workdir.mkdir(parents=True)
    alphabet = sorted(ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|padding|>", "<|endoftext|>"]:
        vocab[token] = len(vocab)
    for symbol in alphabet:
        vocab.setdefault(symbol, len(vocab))
    for symbol in alphabet:
        vocab.setdefault(symbol + "</w>", len(vocab))
    merges = ["t h", "th e</w>", "o n</w>", "i n", "e r", "a n</w>"]
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    (workdir / "vocab.json").write_text(json.dumps(vocab))
    (workdir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer.from_pretrained(
        workdir,
        model_max_length=77,
        pad_token="<|endoftext|>",  # noqa: S106
    )


def _t5_tokenizer(workdir: Path):  # type: ignore[no-untyped-def]
    """A T5 tokenizer from a sentencepiece unigram model trained here on a small corpus."""
    import sentencepiece as spm
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]

    workdir.mkdir(parents=True)
    corpus = workdir / "corpus.txt"
    corpus.write_text("\n".join(_CORPUS.split(", ")) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(workdir / "spiece"),
        vocab_size=64,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        minloglevel=2,
    )
    return T5TokenizerFast(vocab_file=str(workdir / "spiece.model"), extra_ids=0)
