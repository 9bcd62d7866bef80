"""The demo page covers every task type: a form made from each type's schema, an upload that
runs on the CPU (dropped onto the page), a refused upload explained in words, and a job's place
in the queue while it waits. The page talks to the API through the TypeScript client's build."""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image
from playwright.sync_api import Page

from devtools.procs import poll_until
from tests.conftest import Stack
from tests.demo.browser import wait_image_loaded

# What the page leaves to the API (see static/form.js).
HIDDEN = {"enable_base64_output"}


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(out, "PNG")
    return out.getvalue()


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        node = {**defs[node["$ref"].removeprefix("#/$defs/")], **node}
    options = [_resolve(each, defs) for each in node.get("anyOf", [])]
    real = [each for each in options if each.get("type") != "null"]
    if len(real) == 1:
        return {**real[0], **{k: v for k, v in node.items() if k != "anyOf"}, **real[0]}
    return node


def test_the_page_imports_the_typescript_clients_build(stack: Stack) -> None:
    module = httpx.get(f"{stack.gateway}/demo/client/index.js", timeout=10)
    assert module.status_code == 200
    assert "javascript" in module.headers["content-type"]
    assert "export { Fluxgate" in module.text
    app = httpx.get(f"{stack.gateway}/static/app.js", timeout=10).text
    assert 'from "/demo/client/index.js"' in app


def test_a_form_is_made_for_every_task_type_from_its_schema(stack: Stack, page: Page) -> None:
    types = httpx.get(f"{stack.gateway}/task-types", timeout=10).json()
    page.goto(f"{stack.gateway}/")
    page.wait_for_selector("#submit:enabled")
    listed = page.eval_on_selector_all("#task-type option", "options => options.map(o => o.value)")
    assert listed == [each["name"] for each in types]
    for task_type in types:
        page.select_option("#task-type", task_type["name"])
        assert page.inner_text("#type-description").startswith(task_type["description"])
        schema = task_type["input_schema"]
        defs = schema.get("$defs", {})
        for name, raw in schema["properties"].items():
            field = _resolve(raw, defs)
            if name in HIDDEN or field.get("type") == "object":
                assert page.locator(f'#fields [name="{name}"]').count() == 0, name
                continue
            where = f"{task_type['name']}.{name}"
            control = page.locator(f'#fields [name="{name}"]')
            assert control.count() == 1, f"no control for {where}"
            tag, kind = control.evaluate("e => [e.tagName.toLowerCase(), e.type]")
            if name in task_type["image_fields"]:
                assert (tag, kind) == ("input", "file"), where
                assert control.evaluate("e => e.parentElement.classList.contains('drop')"), where
            elif "enum" in field:
                assert tag == "select", where
                options = control.evaluate("e => [...e.options].map(o => o.value).filter(Boolean)")
                assert options == [str(each) for each in field["enum"]], where
            elif field.get("type") == "boolean":
                assert kind == "checkbox", where
            elif field.get("type") in ("integer", "number"):
                assert kind == "number", where
                for bound in ("minimum", "maximum"):
                    attribute = control.get_attribute(bound[:3])
                    expected = field.get(bound)
                    assert (attribute is None) == (expected is None), where
                    if expected is not None:
                        assert float(attribute or "nan") == expected, (where, bound, attribute)
            else:
                assert tag in ("input", "textarea") and kind in ("text", "textarea"), where
            required = control.evaluate("e => e.required")
            assert required == (name in schema.get("required", [])), where


def test_an_image_dropped_on_the_page_is_upscaled_on_the_cpu(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.gateway}/")
    page.wait_for_selector("#submit:enabled")
    page.select_option("#task-type", "upscale")
    page.select_option("#field-method", "lanczos")  # Real-ESRGAN takes seconds on a CPU
    # Drop a file onto the image field, as a user dragging it from their desktop.
    page.evaluate(
        """(bytes) => {
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array(bytes)], 'photo.png', {type: 'image/png'}));
            const zone = document.querySelector('.drop[data-field="image"]');
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
        }""",
        list(_png(48, 32)),
    )
    wait_image_loaded(page, ".drop img", 48, "the dropped image's preview")
    assert "photo.png" in page.inner_text('.drop[data-field="image"]')
    with page.expect_request("**/tasks") as submitted:
        page.click("#submit")
    assert "multipart/form-data" in (submitted.value.headers.get("content-type") or "")
    page.wait_for_selector('#status[data-status="succeeded"]', timeout=60_000)
    wait_image_loaded(page, "#result-image", 96, "the upscaled image to load")
    assert '"method": "lanczos"' in page.inner_text("#result-data")
    assert page.inner_text('#gallery li[data-status="succeeded"] div') == "upscale: photo.png"


def test_a_refused_upload_is_explained_in_words_and_its_field_marked(
    stack: Stack, page: Page
) -> None:
    page.goto(f"{stack.gateway}/")
    page.wait_for_selector("#submit:enabled")
    page.select_option("#task-type", "stylize")
    page.set_input_files(
        "#field-image", files=[{"name": "junk.png", "mimeType": "image/png", "buffer": b"no image"}]
    )
    page.click("#submit")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=10_000)
    assert "input.image" in error.inner_text()
    assert page.get_attribute("#field-image", "aria-invalid") == "true"
    assert page.is_enabled("#submit")


def test_a_waiting_job_shows_its_place_in_the_queue(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.gateway}/")
    page.wait_for_selector("#submit:enabled")
    page.fill("#field-width", "64")
    page.fill("#field-height", "64")
    page.fill("#field-num_inference_steps", "2")
    blockers = stack.fill_worker()
    try:
        page.click("#submit")
        page.wait_for_selector('#status[data-status="queued"]', timeout=10_000)
        status = page.locator("#status")
        poll_until(
            lambda: status.inner_text().startswith("Queued: "),
            timeout=10,
            what="the queue position in words",
        )
        assert status.inner_text() in ("Queued: next to start.",) or "job(s) ahead" in (
            status.inner_text()
        )
    finally:
        stack.release(blockers)
    page.wait_for_selector('#status[data-status="succeeded"]', timeout=60_000)
