"""Auth and size limits at the front door: nginx in front of a gateway and notifier with auth on
and no worker (jobs stay queued until their `Cancel-After` deadline expires them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from apps.common.service.settings import DEV_INTERNAL_SECRET
from tests.big_bodies import (
    UPLOAD_LIMIT,
    assert_refused_for_its_size,
    post_oversized_image,
    zeros,
)
from tests.gateway.auth_stack import FLUX, AuthStack, bearer, start_auth_stack
from tests.nginx.front import start_front_door


@dataclass
class Door:
    url: str
    stack: AuthStack


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    stacks = start_auth_stack(tmp_path_factory.mktemp("auth-nginx"))
    stack = next(stacks)
    try:
        nginx, url = start_front_door(
            tmp_path_factory.mktemp("nginx-auth"),
            gateway=stack.gateway,
            notifier=stack.notifier_ws.replace("ws://", "http://"),
            # The auth stack keeps the dev secret, which its notifier checks reads against.
            internal_secret=DEV_INTERNAL_SECRET,
        )
        try:
            yield Door(url, stack)
        finally:
            nginx.stop()
    finally:
        stacks.close()


def test_the_sync_route_takes_the_key_as_token_query(door: Door) -> None:
    token = door.stack.new_key("sync-token")
    refused = httpx.post(f"{door.url}/sync/flux", json=FLUX, timeout=30)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "unauthorized"
    wrong = httpx.post(f"{door.url}/sync/flux", params={"token": "fg_nope"}, json=FLUX)
    assert wrong.status_code == 401, wrong.text

    # No Prefer header: the facade's default wait outlasts a job that expires after 1 s.
    answer = httpx.post(
        f"{door.url}/sync/flux",
        params={"token": token},
        json=FLUX,
        headers={"Cancel-After": "1"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    finished = answer.json()
    assert finished["status"] == "expired", finished
    # The task is the key's own: it sees it, and nobody else does.
    mine = httpx.get(f"{door.url}/tasks/{finished['task_id']}", headers=bearer(token))
    assert mine.status_code == 200, mine.text
    other = door.stack.new_key("sync-other")
    theirs = httpx.get(f"{door.url}/tasks/{finished['task_id']}", headers=bearer(other))
    assert theirs.status_code == 404


def test_an_upload_over_64_mib_is_refused_at_the_door(door: Door) -> None:
    token = door.stack.new_key("door-upload")
    total = UPLOAD_LIMIT + 1
    answer = httpx.post(
        f"{door.url}/tasks",
        content=zeros(total),
        headers={
            **bearer(token),
            "content-type": "application/json",
            "content-length": str(total),
        },
        timeout=60,
    )
    assert answer.status_code == 413, answer.text
    # nginx's own answer (the gateway's names no field): refused before it reached the gateway.
    assert answer.json()["error"] == {
        "code": "body_too_large",
        "message": "request body too large",
        "field": "body",
    }


def test_an_image_over_20_mib_passes_the_door_and_is_a_422_naming_it(
    door: Door, tmp_path: Path
) -> None:
    token = door.stack.new_key("door-image")
    assert_refused_for_its_size(post_oversized_image(door.url, bearer(token), tmp_path))
