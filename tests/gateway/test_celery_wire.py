"""The gateway's own Celery message equals what Celery's `send_task` writes (the reference)."""

from __future__ import annotations

import base64
import json
import uuid

import redis

from apps.common.wire.celery_message import task_message
from apps.common.wire.queues import QUEUE_GPU, TASK_FLUX, celery_priority, lane_name, make_producer

# Per message, by design: ids of the delivery, the reply queue and the sending process.
VARYING = {("properties", "delivery_tag"), ("properties", "reply_to"), ("headers", "origin")}


def _flatten(message: dict[str, object]) -> dict[tuple[str, str], object]:
    flat: dict[tuple[str, str], object] = {}
    for section, value in message.items():
        if isinstance(value, dict):
            for name, inner in value.items():
                flat[(section, name)] = inner
        else:
            flat[(section, "")] = value
    return flat


def test_the_direct_message_is_the_one_send_task_writes(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    queue = f"wire-test-{uuid.uuid4().hex[:8]}"
    task_id = str(uuid.uuid4())
    headers = {"fluxgate_request_id": "req-1"}
    for api_priority in (0, 5, 9):
        producer = make_producer(redis_url, visibility_timeout_s=60)
        producer.send_task(
            TASK_FLUX,
            args=[task_id],
            queue=queue,
            priority=celery_priority(api_priority),
            task_id=task_id,
            headers=headers,
        )
        producer.close()
        reference_lane = lane_name(queue, celery_priority(api_priority))
        reference = json.loads(client.rpop(reference_lane))  # type: ignore[arg-type]

        lane, raw = task_message(
            TASK_FLUX, task_id, [task_id], queue=queue, api_priority=api_priority, headers=headers
        )
        ours = json.loads(raw)
        assert lane == reference_lane
        expected, got = _flatten(reference), _flatten(ours)
        assert expected.keys() == got.keys()
        differing = {k for k in expected if expected[k] != got[k]}
        # The body is the same JSON, only spaced differently.
        assert json.loads(base64.b64decode(ours["body"])) == json.loads(
            base64.b64decode(reference["body"])
        )
        assert differing - {("body", "")} == VARYING & differing
    assert lane_name(QUEUE_GPU, 0) == "gpu"
