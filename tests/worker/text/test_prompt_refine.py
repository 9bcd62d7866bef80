"""Prompt refinement: the deterministic rules, and the LLM path against a real OpenAI-style server
on loopback (uvicorn in a thread) that checks each request and plays back scripted replies."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from apps.worker.errors import InvalidInput
from apps.worker.text.prompt_refine import (
    QUALITY_MODIFIERS,
    STYLES,
    LlmUnavailable,
    refine_rules,
    refine_with_llm,
)
from devtools.procs import free_port, poll_until

QUALITY = [modifier.phrase for modifier in QUALITY_MODIFIERS]


def phrases(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"(?<!\d),|,(?!\d)", text)]


# --- rules -------------------------------------------------------------------------------------


def test_rules_are_deterministic() -> None:
    prompt = "  a red fox ,in the snow,, a RED fox  "
    first = refine_rules(prompt, style="cinematic", max_length=200)
    assert first == refine_rules(prompt, style="cinematic", max_length=200)
    assert first.method == "rules"


def test_rules_add_quality_modifiers_after_the_users_words() -> None:
    result = refine_rules("a cat sitting on a mat.")
    assert result.prompt == "a cat sitting on a mat, " + ", ".join(QUALITY)
    assert result.added == QUALITY
    assert "watermark" in phrases(result.negative_prompt)


def test_rules_drop_duplicate_phrases_and_normalise_whitespace() -> None:
    result = refine_rules("  a red\tfox ,in the  snow,, A Red Fox , 1,000 stars .")
    assert phrases(result.prompt)[:3] == ["a red fox", "in the snow", "1,000 stars"]
    lowered = [p.lower() for p in phrases(result.prompt)]
    assert len(lowered) == len(set(lowered))


def test_rules_skip_modifiers_already_present() -> None:
    result = refine_rules("portrait of a man, Highly Detailed, studio lighting")
    assert "highly detailed" not in result.added
    assert "professional lighting" not in result.added  # "lighting" is there already
    assert result.added == ["sharp focus"]
    assert result.prompt.lower().count("highly detailed") == 1


@pytest.mark.parametrize("style", sorted(STYLES))
def test_each_style_adds_its_modifiers_and_negatives(style: str) -> None:
    result = refine_rules("a lighthouse on a cliff", style=style, max_length=1000)
    prompt = phrases(result.prompt)
    for modifier in STYLES[style].modifiers:
        assert modifier.phrase in prompt
    negative = phrases(result.negative_prompt)
    assert set(STYLES[style].negative) <= set(negative)
    assert len(negative) == len(set(negative))


def test_style_names_are_forgiving() -> None:
    assert refine_rules("a boat", style="Oil Painting") == refine_rules(
        "a boat", style="oil_painting"
    )
    assert refine_rules("a car", style="3d-render") == refine_rules("a car", style="3d_render")


def test_unknown_style_is_an_input_error_listing_the_valid_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        refine_rules("a boat", style="vaporwave")
    assert caught.value.field == "style"
    assert caught.value.code == "invalid_input"
    assert str(caught.value).startswith("input.style: unknown style")
    for name in STYLES:
        assert name in caught.value.message


def test_empty_prompt_is_an_input_error() -> None:
    with pytest.raises(InvalidInput) as caught:
        refine_rules(" ,, . ")
    assert caught.value.field == "prompt"


def test_negative_prompt_leaves_out_what_the_user_asked_for() -> None:
    result = refine_rules("a neon sign with text, blurry background")
    negative = phrases(result.negative_prompt)
    assert "text" not in negative
    assert "blurry" not in negative
    assert "watermark" in negative


@pytest.mark.parametrize("max_length", [30, 45, 60, 80, 100, 140])
def test_max_length_trims_added_phrases_from_the_end(max_length: int) -> None:
    user = "a castle on a hill at sunset"
    full = refine_rules(user, style="watercolor", max_length=1000)
    result = refine_rules(user, style="watercolor", max_length=max_length)
    assert len(result.prompt) <= max_length
    assert result.prompt.startswith(user)
    assert result.added == full.added[: len(result.added)]
    # The first addition left out would not have fitted.
    if len(result.added) < len(full.added):
        longer = ", ".join([user, *full.added[: len(result.added) + 1]])
        assert len(longer) > max_length


def test_a_user_prompt_over_max_length_is_cut_at_a_word_boundary() -> None:
    user = "an extraordinarily detailed panorama of a sprawling medieval marketplace at dawn"
    result = refine_rules(user, max_length=40)
    assert len(result.prompt) <= 40
    assert result.added == []
    assert user.startswith(result.prompt)
    assert user[len(result.prompt)] == " "  # ends where a word ends
    assert result.prompt == "an extraordinarily detailed panorama of"


def test_max_length_below_one_is_an_input_error() -> None:
    with pytest.raises(InvalidInput) as caught:
        refine_rules("a boat", max_length=0)
    assert caught.value.field == "max_length"


# --- LLM against a real server on loopback -----------------------------------------------------


@dataclass
class FakeLlm:
    """An OpenAI-compatible `/v1/chat/completions`: records requests, replies from `script`."""

    base: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Each entry: an HTTP status (an error reply) or a string (the assistant's message content).
    script: list[int | str] = field(default_factory=list)

    async def chat(self, request: Request) -> Response:
        self.requests.append(
            {"headers": dict(request.headers), "body": json.loads(await request.body())}
        )
        step = self.script.pop(0) if self.script else 500
        if isinstance(step, int):
            return PlainTextResponse("scripted failure", status_code=step)
        completion = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "test-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": step},
                    "finish_reason": "stop",
                }
            ],
        }
        return JSONResponse(completion)

    async def health(self, _request: Request) -> Response:
        return PlainTextResponse("ok")


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeLlm]:
    port = free_port()
    fake = FakeLlm(base=f"http://127.0.0.1:{port}/v1")
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", fake.chat, methods=["POST"]),
            Route("/health", fake.health),
        ]
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    poll_until(lambda: server.started, timeout=10, what="fake LLM server")
    yield fake
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def llm(llm_server: FakeLlm) -> FakeLlm:
    llm_server.requests.clear()
    llm_server.script.clear()
    return llm_server


def call(llm: FakeLlm, prompt: str = "a red fox in the snow", **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "url": llm.base,
        "model": "test-model",
        "api_key": "sk-test",
        "style": None,
        "max_length": 400,
        "timeout_s": 5,
    }
    kwargs.update(overrides)
    return refine_with_llm(prompt, **kwargs)


def test_llm_request_shape_and_json_reply(llm: FakeLlm) -> None:
    llm.script = [
        json.dumps(
            {
                "prompt": "a red fox in fresh snow, golden hour, highly detailed",
                "negative_prompt": "blurry, watermark",
            }
        )
    ]
    result = call(llm, style="photo")
    assert result.method == "llm"
    assert result.prompt == "a red fox in fresh snow, golden hour, highly detailed"
    assert result.negative_prompt == "blurry, watermark"
    assert result.added == ["a red fox in fresh snow", "golden hour", "highly detailed"]

    [sent] = llm.requests
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    body = sent["body"]
    assert body["model"] == "test-model"
    assert body["temperature"] == 0.2
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system"
    assert '"negative_prompt"' in system["content"]
    assert "photorealistic" in system["content"]  # the style's hints
    assert user == {"role": "user", "content": "a red fox in the snow"}


def test_llm_url_with_trailing_slash_and_no_key(llm: FakeLlm) -> None:
    llm.script = ['{"prompt": "a boat at sea"}']
    result = call(llm, url=llm.base + "/", api_key=None)
    assert result.prompt == "a boat at sea"
    # No negative from the LLM: the rules' one stands in.
    assert result.negative_prompt == refine_rules("a red fox in the snow").negative_prompt
    assert "authorization" not in llm.requests[0]["headers"]


def test_llm_reply_in_a_json_fence(llm: FakeLlm) -> None:
    llm.script = [
        'Here you go:\n```json\n{"prompt": "a fox, moonlight", "negative_prompt": ["cgi", "text"]}'
        "\n```\nEnjoy!"
    ]
    result = call(llm)
    assert result.prompt == "a fox, moonlight"
    assert result.negative_prompt == "cgi, text"


def test_llm_plain_text_reply_is_the_prompt(llm: FakeLlm) -> None:
    llm.script = ['"a fox in the snow, soft morning light, 85mm lens"']
    result = call(llm)
    assert result.prompt == "a fox in the snow, soft morning light, 85mm lens"


def test_llm_reply_is_held_to_max_length(llm: FakeLlm) -> None:
    llm.script = [json.dumps({"prompt": "a red fox in the snow " + "and more words " * 20})]
    result = call(llm, max_length=50)
    assert len(result.prompt) <= 50
    assert result.prompt.startswith("a red fox in the snow and more")
    assert not result.prompt.endswith(" ")


def test_llm_retries_a_503(llm: FakeLlm) -> None:
    llm.script = [503, '{"prompt": "a fox, after a retry"}']
    result = call(llm)
    assert result.prompt == "a fox, after a retry"
    assert len(llm.requests) == 2


def test_llm_always_500_is_unavailable_after_three_attempts(llm: FakeLlm) -> None:
    llm.script = [500, 500, 500, '{"prompt": "never reached"}']
    with pytest.raises(LlmUnavailable) as caught:
        call(llm)
    assert len(llm.requests) == 3
    assert "500" in caught.value.message
    assert "127.0.0.1" not in caught.value.message  # the client sees it; no internal address


def test_llm_client_error_is_not_retried(llm: FakeLlm) -> None:
    llm.script = [401, '{"prompt": "never reached"}']
    with pytest.raises(LlmUnavailable) as caught:
        call(llm)
    assert len(llm.requests) == 1
    assert "401" in caught.value.message


def test_llm_empty_reply_is_unavailable(llm: FakeLlm) -> None:
    llm.script = ['{"prompt": " , "}']
    with pytest.raises(LlmUnavailable):
        call(llm)


def test_llm_unreachable_is_unavailable() -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LlmUnavailable) as caught:
        refine_with_llm(
            "a boat", url=closed, model="m", api_key=None, style=None, max_length=100, timeout_s=2
        )
    assert "ConnectError" in caught.value.message


def test_llm_bad_style_fails_before_any_request(llm: FakeLlm) -> None:
    with pytest.raises(InvalidInput) as caught:
        call(llm, style="vaporwave")
    assert caught.value.field == "style"
    assert llm.requests == []
