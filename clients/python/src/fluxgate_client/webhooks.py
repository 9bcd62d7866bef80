"""Verifying Fluxgate's webhooks, signed the Standard Webhooks way (standardwebhooks.com)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fluxgate_client.errors import WebhookVerificationError

DEFAULT_TOLERANCE_S = 300


def _key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret is its base64-decoded part, as the spec says."""
    try:
        # Lenient like the server's own decoding, so any secret it signs with verifies here.
        return base64.b64decode(secret.removeprefix("whsec_"))
    except binascii.Error as exc:
        raise ValueError("a webhook secret looks like whsec_<base64>") from exc


def _sign(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str | Sequence[str],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The parsed message (`{"type", "timestamp", "data"}`) of a genuine, fresh webhook.

    `body` must be the raw bytes received (not re-serialised JSON). `secret` may be a list while
    a key's secret is being rotated: any one of them may have signed. Raises
    WebhookVerificationError for anything that is not a valid, fresh signature of `body`.
    """
    # Plain dicts and framework header objects alike; names are case-insensitive in HTTP.
    found = {name.lower(): value for name, value in headers.items()}
    msg_id = found.get("webhook-id")
    timestamp = found.get("webhook-timestamp")
    signatures = found.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise WebhookVerificationError(
            "missing webhook-id, webhook-timestamp or webhook-signature header"
        )
    if not timestamp.isdigit():
        raise WebhookVerificationError(f"webhook-timestamp is not a Unix time: {timestamp!r}")
    # A captured message replayed later must fail, however valid its signature.
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp is {abs(age):.0f} s {'old' if age > 0 else 'in the future'} "
            f"(tolerance {tolerance_s:g} s)"
        )
    raw = body.encode() if isinstance(body, str) else bytes(body)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("no webhook secret given")
    expected = [_sign(_key(each), msg_id, timestamp, raw) for each in secrets]
    candidates = [
        signature.encode()
        for version, _, signature in (part.partition(",") for part in signatures.split())
        if version == "v1"
    ]
    # Compare every pair in constant time: no early exit that would time which one matched.
    matched = False
    for candidate in candidates:
        for each in expected:
            matched |= hmac.compare_digest(candidate, each)
    if not matched:
        raise WebhookVerificationError("no webhook-signature matches the body")
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise WebhookVerificationError("the webhook body is not JSON") from exc
    if not isinstance(message, dict):
        raise WebhookVerificationError("the webhook body is not a JSON object")
    return message
