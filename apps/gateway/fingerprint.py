"""Which submits are the same request: the fingerprint under which identical jobs share one run
(the worker's `apps/worker/dedupe.py` acts on it).

Only a request that names its seed on a deterministic type (one whose input has a `seed`) gets
one: without an explicit seed each request asks for a new random image, never for another's.

The owner's scope (its key id, or anonymous) is part of it, so only requests of one key are ever
shared. Across keys, a `cached: true` answer, or a job that finished unusually fast, would tell
one tenant that another had asked for the very same thing (its prompt, its image).
"""

from __future__ import annotations

import hashlib

import orjson

from apps.common.task_types import task_type
from apps.common.wire.contracts import StrictModel

# Bumped when what goes into a fingerprint changes, so old and new ones never meet (2: the
# model, named even when it is the default, and the LoRA adapters).
VERSION = 2


def request_fingerprint(
    type_name: str, validated: StrictModel, images: dict[str, bytes | str], scope: str
) -> str | None:
    """The sha256 (hex) of a request of `scope` for a `type_name` job with the `validated` input
    and these image inputs (bytes or URL by field), or None when it is never shared."""
    if "seed" not in task_type(type_name).input_model.model_fields:
        return None
    task_input = validated.model_dump(mode="json")
    if task_input.get("seed") is None:
        return None
    # An image counts by its content when uploaded (or sent as base64), by its URL when the
    # worker fetches it.
    for field, value in images.items():
        if isinstance(value, bytes):
            task_input[field] = {"sha256": hashlib.sha256(value).hexdigest()}
        else:
            task_input[field] = {"url": value}
    canonical = orjson.dumps(
        {"v": VERSION, "scope": scope, "type": type_name, "input": task_input},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()
