"""HMAC signatures: service-to-service calls signed with `FLUXGATE_INTERNAL_SECRET`."""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "x-fluxgate-timestamp"
SIGNATURE_HEADER = "x-fluxgate-signature"
# A signed call older (or newer) than this is refused: a captured request cannot be replayed.
TOLERANCE_S = 300


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def sign_internal(body: bytes, secret: str, *, now: float | None = None) -> dict[str, str]:
    """Headers that authenticate `body` as coming from a Fluxgate service."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: _digest(secret, timestamp, body)}


def verify_internal(
    body: bytes,
    secret: str,
    *,
    timestamp: str | None,
    signature: str | None,
    now: float | None = None,
) -> bool:
    """True when the headers are a fresh, valid signature of `body`."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > TOLERANCE_S:
        return False
    return hmac.compare_digest(_digest(secret, timestamp, body), signature)
