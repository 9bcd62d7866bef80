"""The demo page in a real browser (Debian's chromium driven by Playwright): type a prompt, watch
the progress bar move, see the image; a bad width is explained in words."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page

from devtools.procs import poll_until
from tests.conftest import Stack
from tests.demo.browser import ARTIFACTS, wait_image_loaded


def test_submit_watch_progress_and_see_the_image(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.gateway}/")
    assert page.title() == "Fluxgate"
    page.fill("#field-prompt", "a lighthouse at dusk")
    page.fill("#field-width", "128")
    page.fill("#field-height", "128")
    page.fill(
        "#field-num_inference_steps", "12"
    )  # 12 steps x 100 ms in the test stack: progress has time to show
    # Record every value the bar takes, as the user would see it move.
    page.evaluate(
        """() => {
            window.seenProgress = [];
            const bar = document.getElementById('progress');
            new MutationObserver(() => window.seenProgress.push(Number(bar.value)))
                .observe(bar, {attributes: true});
        }"""
    )
    page.click("#submit")
    page.wait_for_selector('#status[data-status="succeeded"]', timeout=60_000)
    wait_image_loaded(page, "#result-image", 128, "the image to load")
    seen = page.evaluate("window.seenProgress")
    in_between = [value for value in seen if 0 < value < 100]
    assert len(set(in_between)) >= 2, f"the bar should move through steps, saw {seen}"
    assert seen[-1] == 100
    assert page.inner_text("#status").startswith("Done in")
    # 128x128 pixels (0.016384 megapixels) x 12 steps.
    assert page.is_visible("#cost")
    assert page.inner_text("#cost") == "Cost: 0.1966 megapixel-steps"
    assert page.locator("#gallery img").count() >= 1
    # Previews were not asked for: none shows.
    assert page.is_hidden("#preview") and page.get_attribute("#preview-image", "src") is None
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)


def test_show_previews_shows_the_image_forming(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.gateway}/")
    page.fill("#field-width", "128")
    page.fill("#field-height", "128")
    page.fill(
        "#field-num_inference_steps", "12"
    )  # 12 steps x 100 ms: several previews at 4 a second at most
    page.check("#field-preview")
    # Record every preview the page loads, and what its caption said while it showed.
    page.evaluate(
        """() => {
            window.loadedPreviews = [];
            const img = document.getElementById('preview-image');
            img.addEventListener('load', () => window.loadedPreviews.push({
                src: img.currentSrc, width: img.naturalWidth,
                caption: document.getElementById('preview-caption').textContent,
            }));
        }"""
    )
    with page.expect_request("**/flux") as submitted:
        page.click("#submit")
    assert json.loads(submitted.value.post_data or "{}")["preview"] is True
    page.wait_for_selector('#status[data-status="succeeded"]', timeout=60_000)

    def two_loaded() -> list[dict[str, object]] | None:
        got: list[dict[str, object]] = page.evaluate("window.loadedPreviews")
        return got if len({p["src"] for p in got}) >= 2 else None

    loaded = poll_until(two_loaded, timeout=10, what="two previews to load")
    assert all(p["width"] > 0 for p in loaded), loaded
    assert all(re.fullmatch(r"Preview: step \d+ of 12", p["caption"]) for p in loaded), loaded
    # Once the job succeeded, the image itself takes the preview's place.
    assert page.is_hidden("#preview") and page.is_visible("#result-image")


def test_a_bad_width_is_explained_and_the_field_marked(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.gateway}/")
    page.fill("#field-width", "100")
    page.click("#submit")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=10_000)
    assert "width" in error.inner_text()
    assert "multiple of 16" in error.inner_text()
    assert page.get_attribute("#field-width", "aria-invalid") == "true"
    assert page.is_enabled("#submit")


def test_a_job_that_costs_too_much_is_explained_and_the_field_to_lower_marked(
    stack: Stack, page: Page
) -> None:
    page.goto(f"{stack.gateway}/")
    page.fill("#field-width", "2048")
    page.fill("#field-height", "2048")
    page.fill("#field-num_inference_steps", "100")
    page.click("#submit")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=10_000)
    assert "419.4304 megapixel-steps" in error.inner_text()
    assert "128" in error.inner_text()
    # Steps at their default (28) cut it most: the field to lower is marked.
    assert page.get_attribute("#field-num_inference_steps", "aria-invalid") == "true"
    assert page.is_enabled("#submit")


def test_cancel_stops_a_running_job(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.gateway}/")
    page.fill("#field-width", "64")
    page.fill("#field-height", "64")
    page.fill("#field-num_inference_steps", "60")
    page.click("#submit")
    page.wait_for_selector('#status[data-status="running"]', timeout=30_000)
    task_id = page.inner_text("#task-link")
    assert page.get_attribute("#task-link", "href") == f"{stack.gateway}/tasks/{task_id}"
    page.click("#cancel")
    page.wait_for_selector('#status[data-status="canceled"]', timeout=30_000)
    assert page.inner_text("#status") == "Canceled."
    # A canceled job stays in the gallery, saying how it ended.
    assert page.inner_text('#gallery li[data-status="canceled"] .ended') == "canceled"


def test_a_refused_key_opens_the_key_field(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.gateway}/")
    assert page.get_attribute("#key-box", "open") is None
    # The stack runs without auth: answer this one submit as an auth-on gateway would.
    page.route(
        "**/flux",
        lambda route: route.fulfill(
            status=401,
            content_type="application/json",
            body='{"error": {"code": "unauthorized", "message": "an API key is required"}}',
        ),
    )
    page.click("#submit")
    page.locator("#error").wait_for(state="visible", timeout=10_000)
    assert page.inner_text("#error") == "an API key is required"
    assert page.get_attribute("#key-box", "open") is not None
    assert page.evaluate("() => document.activeElement.id") == "api-key"
