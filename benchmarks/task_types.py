"""CPU time of each task type's own work on a 512x512 input (skimage's astronaut photograph).

Runs each type's work in-process, the way the worker's handler (or, for `flux` and
`style_transfer`, the inference engine with the tiny FLUX) runs it, repeated and reported as the
median; the platform's overhead around a job is measured by `overhead.py`. The first call of each
type is a warm-up (Real-ESRGAN's device probe, model loads) and is reported apart.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, write_result

SIDE = 512


def _astronaut() -> Any:
    from PIL import Image
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((SIDE, SIDE))


def _work(models: Path) -> dict[str, Callable[[], object]]:
    from PIL import ImageOps

    from apps.common.wire.contracts import FluxInput
    from apps.common.wire.inference import InferenceRequest
    from apps.inference.engine import BatchItem
    from apps.inference.pipelines.flux import FluxEngine
    from apps.inference.settings import InferenceSettings
    from apps.worker.imaging.background import remove_background
    from apps.worker.imaging.face_swap import swap_face
    from apps.worker.imaging.faces import annotate, detect_faces
    from apps.worker.imaging.stylize import stylize
    from apps.worker.imaging.upscale import upscale
    from apps.worker.text.prompt_refine import refine_rules
    from apps.worker.text.tiny_translator import ensure_tiny_translator
    from apps.worker.text.translate import get_translator

    photo = _astronaut()
    target = ImageOps.mirror(photo)
    engine = FluxEngine.load(InferenceSettings(model_cache_dir=models, inference_device="cpu"))
    translator = get_translator(str(ensure_tiny_translator(models)))
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    photo_b64 = base64.b64encode(buffer.getvalue()).decode()
    spec = FluxInput(prompt="an astronaut", width=SIDE, height=SIDE, num_inference_steps=4, seed=1)
    sentence = " ".join(["The quick brown fox jumps over the lazy dog."] * 5)  # ~50 words

    def flux(image_b64: str | None = None) -> object:
        request = InferenceRequest(
            task_id="bench", input=spec, image_b64=image_b64, strength=0.6 if image_b64 else None
        )
        return engine.run_batch([BatchItem(request, lambda _s, _t: True)])

    return {
        "flux (tiny, 4 steps)": flux,
        "style_transfer (tiny, 4 steps, strength 0.6)": lambda: flux(photo_b64),
        "upscale x2 realesrgan": lambda: upscale(photo, 2, method="realesrgan"),
        "upscale x4 realesrgan": lambda: upscale(photo, 4, method="realesrgan"),
        "upscale x2 lanczos": lambda: upscale(photo, 2, method="lanczos"),
        "face_detect (+annotate)": lambda: annotate(photo, detect_faces(photo)),
        "face_swap": lambda: swap_face(photo, target),
        "background_removal (5 iterations)": lambda: remove_background(photo),
        "stylize stylization": lambda: stylize(photo, "stylization"),
        "stylize pencil_sketch": lambda: stylize(photo, "pencil_sketch"),
        "stylize cartoon": lambda: stylize(photo, "cartoon"),
        "translate (tiny model, 50 words, 64 tokens)": lambda: translator.translate(
            [sentence], max_new_tokens=64
        ),
        "prompt_refine (rules)": lambda: refine_rules("a red fox in snow", style="cinematic"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per type after warm-up")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # what one worker process gets (see handlers/translate.py)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = _work(Path(tmp))
        for name, run in work.items():
            started = time.process_time()
            run()
            first_ms = (time.process_time() - started) * 1000
            cpu, wall = [], []
            for _ in range(args.repeat):
                c0, w0 = time.process_time(), time.perf_counter()
                run()
                cpu.append((time.process_time() - c0) * 1000)
                wall.append((time.perf_counter() - w0) * 1000)
            rows[name] = {
                "cpu_ms": round(statistics.median(cpu), 1),
                "wall_ms": round(statistics.median(wall), 1),
                "first_call_cpu_ms": round(first_ms, 1),
            }
            print(
                f"{name:48s} cpu {rows[name]['cpu_ms']:9.1f} ms   wall "
                f"{rows[name]['wall_ms']:9.1f} ms   first {first_ms:9.1f} ms",
                flush=True,
            )
    result = {
        "types": rows,
        **{
            f"{name.split(' ')[0]}_cpu_ms": row["cpu_ms"]
            for name, row in rows.items()
            if name.split(" ")[0] not in ("upscale", "stylize")
        },
        "upscale_x2_realesrgan_cpu_ms": rows["upscale x2 realesrgan"]["cpu_ms"],
        "machine": machine(),
        "params": {"side": SIDE, "repeat": args.repeat, "torch_threads": 1},
    }
    print(f"wrote {write_result('task_types', result)}")


if __name__ == "__main__":
    main()
