"""Each task type end to end on the real stack: gateway -> Celery -> worker or inference."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps

from devtools.procs import poll_until
from tests.conftest import Stack
from tests.e2e.wsclient import watch
from tests.tasktypes.conftest import (
    astronaut,
    b64,
    fetch_image,
    gradient,
    png,
    run_task,
    submit_task,
)
from tests.tasktypes.imagesrv import serving


def _succeeded(view: dict) -> dict:
    assert view["status"] == "succeeded", view
    assert view["progress"] == 100
    return view["result"]  # type: ignore[no-any-return]


def test_upscale_lanczos_from_base64(stack: Stack) -> None:
    result = _succeeded(
        run_task(
            stack, "upscale", {"image": b64(png(gradient(40, 24))), "scale": 4, "method": "lanczos"}
        )
    )
    assert result["method"] == "lanczos" and result["scale"] == 4
    [image] = result["images"]
    assert (image["width"], image["height"]) == (160, 96)
    assert fetch_image(image["url"]).size == (160, 96)
    assert result["timings"]["compute_ms"] > 0


def test_upscale_auto_uses_real_esrgan_where_vulkan_works(stack: Stack) -> None:
    small = astronaut(32)
    result = _succeeded(run_task(stack, "upscale", {"image": b64(png(small))}, timeout=120))
    upscaled = fetch_image(result["images"][0]["url"]).convert("RGB")
    assert upscaled.size == (64, 64)
    # CI and `scripts/setup.sh` install Mesa's CPU Vulkan device: Real-ESRGAN runs here.
    assert result["method"] == "realesrgan", "no Vulkan device (libvulkan1 mesa-vulkan-drivers)?"
    # ... and it is what drew the image: not a plain Lanczos resize of the input.
    lanczos = small.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
    difference = np.abs(np.asarray(upscaled, dtype=float) - np.asarray(lanczos, dtype=float))
    assert difference.mean() > 1, difference.mean()


def test_face_detect_from_a_multipart_upload(stack: Stack, face_png: bytes) -> None:
    result = _succeeded(run_task(stack, "face_detect", {}, files={"image": face_png}))
    [face] = result["faces"]
    # astronaut() at 256 px: the face sits around x 85-140, y 30-100.
    assert 60 <= face["x"] + face["width"] / 2 <= 160, face
    assert 20 <= face["y"] + face["height"] / 2 <= 110, face
    assert 0 < face["score"] <= 1
    annotated = fetch_image(result["images"][0]["url"])
    assert annotated.size == (256, 256)


def test_face_swap_puts_the_face_into_the_target(stack: Stack, face_png: bytes) -> None:
    target = ImageOps.mirror(astronaut(320))
    target_png = png(target)
    result = _succeeded(
        run_task(stack, "face_swap", {}, files={"image": face_png, "target_image": target_png})
    )
    swapped = np.asarray(fetch_image(result["images"][0]["url"]).convert("RGB"), dtype=float)
    assert swapped.shape == (320, 320, 3)
    box = result["target_face"]
    inside = swapped[box["y"] : box["y"] + box["height"], box["x"] : box["x"] + box["width"]]
    original = np.asarray(target, dtype=float)
    before = original[box["y"] : box["y"] + box["height"], box["x"] : box["x"] + box["width"]]
    assert np.abs(inside - before).mean() > 2, "the target face changed"
    # Far from the face (the bottom rows) the picture is the target's.
    assert np.abs(swapped[-20:] - original[-20:]).mean() < 2


def test_face_swap_without_a_face_in_the_target_fails_naming_it(
    stack: Stack, face_png: bytes
) -> None:
    view = run_task(
        stack, "face_swap", {}, files={"image": face_png, "target_image": png(gradient(128, 128))}
    )
    assert view["status"] == "failed"
    assert view["error"]["code"] == "invalid_input_image"
    assert "target_image" in view["error"]["message"]


def test_background_removal_gives_rgba_and_a_mask(stack: Stack) -> None:
    canvas = Image.new("RGB", (120, 100), (30, 140, 40))
    disc = Image.new("L", (120, 100), 0)
    from PIL import ImageDraw

    ImageDraw.Draw(disc).ellipse((35, 25, 85, 75), fill=255)
    canvas.paste(Image.new("RGB", (120, 100), (220, 60, 200)), mask=disc)
    result = _succeeded(run_task(stack, "background_removal", {"image": b64(png(canvas))}))
    cutout = fetch_image(result["images"][0]["url"])
    assert cutout.mode == "RGBA" and cutout.size == (120, 100)
    alpha = np.asarray(cutout)[..., 3]
    assert alpha[50, 60] > 128, "the subject is kept"
    assert alpha[5, 5] < 128, "the background is gone"
    mask = fetch_image(result["mask"]["url"])
    assert mask.size == (120, 100)


def test_stylize_from_a_url_fetched_by_the_worker(stack: Stack) -> None:
    picture = png(astronaut(96))
    files = {
        "/astro.png": (200, "image/png", picture),
        "/moved": (302, "text/plain", b"/astro.png"),
        "/text": (200, "text/plain", b"hello, not an image"),
        # 30 MB of zeros gzip to ~30 KB: refused, never inflated past the size cap.
        "/bomb.png": (200, "image/png", bytes(30 * 1024 * 1024)),
    }
    with serving(files, gzipped=frozenset({"/bomb.png"})) as base:
        result = _succeeded(
            run_task(stack, "stylize", {"image": f"{base}/moved", "preset": "pencil_sketch"})
        )
        sketch = np.asarray(fetch_image(result["images"][0]["url"]).convert("RGB"))
        assert sketch.shape == (96, 96, 3)
        assert np.array_equal(sketch[..., 0], sketch[..., 1]), "a pencil sketch is grey"

        missing = run_task(stack, "stylize", {"image": f"{base}/nothing.png"})
        assert missing["status"] == "failed"
        assert missing["error"]["code"] == "invalid_input_image"
        assert "404" in missing["error"]["message"]

        bomb = run_task(stack, "stylize", {"image": f"{base}/bomb.png"})
        assert bomb["status"] == "failed"
        assert bomb["error"]["code"] == "invalid_input_image"
        assert "compressed" in bomb["error"]["message"]

        text = run_task(stack, "stylize", {"image": f"{base}/text"})
        assert text["status"] == "failed"
        assert text["error"]["code"] == "invalid_input_image"


def test_style_transfer_runs_flux_image_to_image(stack: Stack) -> None:
    source = png(gradient(150, 100))
    submitted = submit_task(
        stack,
        "style_transfer",
        {
            "image": b64(source),
            "prompt": "as a watercolor",
            "strength": 0.75,
            "num_inference_steps": 4,
            "max_side": 96,
            "seed": 3,
        },
    )
    assert submitted.status_code == 202, submitted.text
    transcript = watch(submitted.json()["urls"]["ws"])
    assert transcript.events[-1] == "succeeded", transcript.events
    assert "progress" in transcript.events
    result = transcript.messages[-1]["result"]
    [image] = result["images"]
    # 150x100 scaled to a long side of 96, both sides multiples of 16: 96x64.
    assert (image["width"], image["height"]) == (96, 64)
    assert image["seed"] == 3 and result["strength"] == 0.75
    assert fetch_image(image["url"]).size == (96, 64)


def test_translate_with_the_configured_model(stack: Stack) -> None:
    texts = ["Hello world.", "A red fox."]

    def translated(target_lang: str) -> dict:
        task = {"text": texts, "target_lang": target_lang, "max_new_tokens": 16}
        return _succeeded(run_task(stack, "translate", task))

    german, french = translated("de"), translated("fr")
    assert len(german["translations"]) == 2
    assert all(isinstance(t, str) and t for t in german["translations"])
    assert german["images"] == []
    # The target language reaches the model (the tiny one knows >>de<< and >>fr<<): the same
    # texts come out differently, and a language it lacks fails the job, naming the field.
    assert german["translations"] != french["translations"], "target_lang made no difference"
    spanish = run_task(stack, "translate", {"text": "Hello world.", "target_lang": "es"})
    assert spanish["status"] == "failed", spanish
    assert spanish["error"]["code"] == "invalid_input", spanish["error"]
    assert "target_lang 'es'" in spanish["error"]["message"], spanish["error"]


def test_prompt_refine_with_rules(stack: Stack) -> None:
    result = _succeeded(
        run_task(stack, "prompt_refine", {"prompt": "a red fox in snow", "style": "cinematic"})
    )
    assert result["method"] == "rules"
    assert result["prompt"].startswith("a red fox in snow")
    assert len(result["prompt"]) > len("a red fox in snow")
    assert result["negative_prompt"]
    bad = submit_task(stack, "prompt_refine", {"prompt": "x", "style": "baroque"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "input.style"


def test_flux_can_refine_its_prompt_first(stack: Stack) -> None:
    task_id = stack.submit(prompt="a lighthouse", refine_prompt=True)["task_id"]
    result = _succeeded(stack.wait_status(str(task_id), "succeeded", "failed", timeout=60))
    assert result["prompt"].startswith("a lighthouse")
    assert result["prompt"] != "a lighthouse"
    assert result["prompt_refinement"] == "rules"


def test_a_running_worker_job_can_be_canceled(stack: Stack) -> None:
    from apps.worker.imaging.upscale import realesrgan_available

    if not realesrgan_available():
        pytest.skip("needs a Vulkan device (Debian: libvulkan1 mesa-vulkan-drivers)")
    # Real-ESRGAN x4 on 512 px works tile by tile for seconds: cancel it in the middle.
    response = submit_task(
        stack, "upscale", {"image": b64(png(astronaut(512))), "scale": 4, "method": "realesrgan"}
    )
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    poll_until(
        lambda: stack.view(task_id)["progress"] > 0,
        timeout=90,
        what="the upscale to make progress",
    )
    cancel = httpx.post(f"{stack.gateway}/tasks/{task_id}/cancel", timeout=10)
    assert cancel.status_code == 202, cancel.text
    view = stack.wait_status(task_id, "canceled", "succeeded", "failed", timeout=60)
    assert view["status"] == "canceled", view


def test_work_past_the_pixel_budget_fails_before_it_is_allocated(stack: Stack) -> None:
    # 2100x2000 x4 is 67.2 million output pixels, over the default 64 million.
    flat = png(Image.new("RGB", (2100, 2000), (90, 120, 200)))
    view = run_task(stack, "upscale", {"image": b64(flat), "scale": 4, "method": "lanczos"})
    assert view["status"] == "failed"
    assert view["error"]["code"] == "image_too_large"
    assert "input.image" in view["error"]["message"]
