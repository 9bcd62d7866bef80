"""Tiny LoRA adapters for the tiny FLUX model, with random weights in the real file format
(diffusers/PEFT `transformer.<module>.lora_A.weight` / `.lora_B.weight` safetensors): for the
tests and `make bench-adapters`, which have no real adapter to download."""

from __future__ import annotations

from pathlib import Path

# The transformer's linear layers a FLUX LoRA usually adapts (attention and feed-forward).
TARGETS = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "proj_mlp", "proj_out", "ff.net")


def write_lora(path: Path, model_dir: Path, *, seed: int, rank: int = 4, std: float = 0.1) -> Path:
    """Write a LoRA for the transformer of the pipeline in `model_dir` to `path`; the same seed
    writes the same adapter."""
    import torch
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import save_file

    transformer = FluxTransformer2DModel.from_pretrained(model_dir / "transformer")
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in transformer.named_modules():
        if not isinstance(module, torch.nn.Linear) or not any(t in name for t in TARGETS):
            continue
        down = torch.randn(rank, module.in_features, generator=generator) * std
        up = torch.randn(module.out_features, rank, generator=generator) * std
        tensors[f"transformer.{name}.lora_A.weight"] = down
        tensors[f"transformer.{name}.lora_B.weight"] = up
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def write_loras(lora_dir: Path, model_dir: Path, names: list[str]) -> list[Path]:
    """One adapter per name in `lora_dir` (`<name>.safetensors`), seeded by its place."""
    return [
        write_lora(lora_dir / f"{name}.safetensors", model_dir, seed=1000 + index)
        for index, name in enumerate(names)
    ]
