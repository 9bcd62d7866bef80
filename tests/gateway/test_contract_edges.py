"""Edges of the API contract a schema fuzzer found: each answers the documented 4xx naming the
field, and the OpenAPI document says what the routes do (real gateway of the session stack)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx

from tests.conftest import Stack
from tests.tasktypes.conftest import noise_png


def test_nan_and_infinity_are_refused_as_such(stack: Stack) -> None:
    for bad in ("NaN", "Infinity", "-Infinity"):
        body = '{"prompt": "a fox", "guidance_scale": ' + bad + "}"
        answer = httpx.post(
            f"{stack.gateway}/flux", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, (bad, answer.text)
        error = answer.json()["error"]
        assert error["field"] == "guidance_scale"
        assert "finite" in error["message"], error["message"]


def test_a_multipart_part_sent_twice_is_refused(stack: Stack) -> None:
    png = noise_png(64)
    files = [("image", ("a.png", png, "image/png")), ("image", ("b.png", png, "image/png"))]
    answer = httpx.post(
        f"{stack.gateway}/tasks",
        data={"type": "face_detect", "input": json.dumps({})},
        files=files,
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "input.image"
    twice = httpx.post(
        f"{stack.gateway}/tasks",
        data={"type": ["face_detect", "stylize"]},
        files=[("image", ("a.png", png, "image/png"))],
    )
    assert twice.status_code == 422
    assert twice.json()["error"]["field"] == "type"


def test_the_openapi_document_resolves_and_declares_dates(stack: Stack) -> None:
    document = httpx.get(f"{stack.gateway}/openapi.json").json()
    text = json.dumps(document)
    assert "#/$defs/" not in text, "references must resolve from the document's root"
    params = {p["name"]: p for p in document["paths"]["/usage"]["get"]["parameters"]}
    assert params["since"]["schema"]["anyOf"][0].get("format") == "date" or (
        params["since"]["schema"].get("format") == "date"
    )
    bad_day = httpx.get(f"{stack.gateway}/usage", params={"since": "0000-00-00"})
    assert bad_day.status_code == 422
    assert bad_day.json()["error"]["field"] == "since"


def test_every_405_names_the_allowed_methods(stack: Stack) -> None:
    refused = []
    for path in ("/flux", "/tasks", "/", "/files/x", "/metrics/"):
        answer = httpx.request("PATCH", f"{stack.gateway}{path}")
        if answer.status_code == 405:
            refused.append(path)
            assert answer.headers.get("allow", "").strip(), path
    assert "/flux" in refused and "/tasks" in refused


def test_a_chunked_body_over_the_limit_is_413(stack: Stack) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(20):  # 1.3 MB, over the 1 MiB limit of POST /flux
            yield b"x" * 65536
        yield b'"}'

    answer = httpx.post(
        f"{stack.gateway}/flux", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "body_too_large"


def test_a_boolean_is_not_a_number(stack: Stack) -> None:
    answer = httpx.post(f"{stack.gateway}/flux", json={"prompt": "a fox", "width": True})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["field"] == "width"
    assert error["message"] == "width: must be a number, not a boolean"
