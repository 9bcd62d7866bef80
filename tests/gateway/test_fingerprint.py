"""Which submits are the same request (`request_fingerprint`), and what `cache` does to the body an
Idempotency-Key binds to; the sharing itself runs in tests/e2e/test_identical_jobs.py."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from PIL import Image

from apps.common.wire.contracts import FluxRequest
from apps.gateway.fingerprint import request_fingerprint
from apps.gateway.jobs_in import build_job, flux_job
from apps.gateway.model_choice import with_model
from apps.gateway.settings import GatewaySettings
from apps.gateway.submission import NewJob

SETTINGS = GatewaySettings()
FOX = {"prompt": "a fox", "width": 64, "height": 64, "seed": 5}


def png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def flux(**body: object) -> NewJob:
    return flux_job(FluxRequest.model_validate({**FOX, **body}))


def fingerprint(job: NewJob, scope: str = "key_a") -> str | None:
    return request_fingerprint(job.type, job.input, job.images, scope)


def test_identical_requests_of_one_key_share_a_fingerprint_and_nothing_else_does() -> None:
    same = fingerprint(flux())
    assert same is not None and same == fingerprint(flux(priority=9, cache=True))
    assert same == fingerprint(build_job({"type": "flux", "input": FOX}, {}, SETTINGS))
    others = [
        fingerprint(flux(seed=6)),
        fingerprint(flux(prompt="a cat")),
        fingerprint(flux(num_images=2)),
        fingerprint(flux(output_format="jpeg")),
        # Another key never learns what this one asked for.
        fingerprint(flux(), scope="key_b"),
        fingerprint(flux(), scope="anonymous"),
    ]
    assert len({same, *others}) == len(others) + 1


def test_without_an_explicit_seed_or_a_seed_field_there_is_none() -> None:
    assert fingerprint(flux(seed=None)) is None
    # A type whose work has no seed is not one this rule knows to be deterministic.
    upscale = build_job({"type": "upscale"}, {"image": png("red")}, SETTINGS)
    assert fingerprint(upscale) is None


def test_an_image_counts_by_its_content_or_its_url() -> None:
    def style(image: bytes | str) -> str | None:
        input_ = {"prompt": "oil", "seed": 1}
        if isinstance(image, str):
            return fingerprint(
                build_job(
                    {"type": "style_transfer", "input": {**input_, "image": image}}, {}, SETTINGS
                )
            )
        return fingerprint(
            build_job({"type": "style_transfer", "input": input_}, {"image": image}, SETTINGS)
        )

    red = style(png("red"))
    assert red is not None and red == style(png("red"))
    assert red != style(png("blue"))
    assert style("https://example.com/a.png") == style("https://example.com/a.png")
    assert style("https://example.com/a.png") not in (red, style("https://example.com/b.png"))


def test_cache_true_is_another_request_for_an_idempotency_key() -> None:
    # Left out at its default: what an earlier release bound a key to still matches.
    assert "cache" not in flux().idempotency_body
    assert flux().idempotency_body == flux(cache=False).idempotency_body
    assert flux().idempotency_body != flux(cache=True).idempotency_body
    task = {"type": "flux", "input": FOX}
    assert "cache" not in build_job(task, {}, SETTINGS).idempotency_body
    assert (
        build_job(task, {}, SETTINGS).idempotency_body
        != build_job({**task, "cache": True}, {}, SETTINGS).idempotency_body
    )


def test_a_request_naming_no_model_or_adapter_binds_a_key_as_before_the_registry() -> None:
    for body in (
        flux().idempotency_body,
        build_job({"type": "flux", "input": FOX}, {}, SETTINGS).idempotency_body,
    ):
        assert '"model"' not in body and '"loras"' not in body
    assert '"model":"dev"' in flux(model="dev").idempotency_body
    assert flux().idempotency_body != flux(loras=[{"name": "ink"}]).idempotency_body


def test_the_model_and_adapters_are_part_of_it_and_the_default_counts_as_named(
    tmp_path: Path,
) -> None:
    (tmp_path / "ink.safetensors").write_bytes(b"")  # the gateway only looks for the file
    registry = GatewaySettings(
        models='[{"id": "draft"}, {"id": "final"}]', lora_dir=str(tmp_path)
    ).model_registry()

    def chosen(**body: object) -> str | None:
        job = flux(**body)
        return fingerprint(replace(job, input=with_model(job.input, "", registry)))

    plain = chosen()
    assert plain == chosen(model="draft"), "the default named or not is one request"
    others = [
        chosen(model="final"),
        chosen(loras=[{"name": "ink", "scale": 1.0}]),
        chosen(loras=[{"name": "ink", "scale": 0.5}]),
    ]
    assert len({plain, *others}) == len(others) + 1
