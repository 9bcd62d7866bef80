"""HMAC signatures: service-to-service calls (`FLUXGATE_INTERNAL_SECRET`) and webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

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


def _epoch_seconds(value: str | None) -> bool:
    # str.isdigit() is also true of "²" and other digits int() refuses: ASCII digits only.
    return value is not None and value.isascii() and value.isdigit() and len(value) <= 12


def verify_internal(
    body: bytes,
    secret: str,
    *,
    timestamp: str | None,
    signature: str | None,
    now: float | None = None,
) -> bool:
    """True when the headers are a fresh, valid signature of `body`; False for any malformed
    header (never an exception: they come from a peer)."""
    if timestamp is None or not _epoch_seconds(timestamp):
        return False
    if not signature or not signature.isascii():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > TOLERANCE_S:
        return False
    return hmac.compare_digest(_digest(secret, timestamp, body), signature)


# Lets a peer read the notifier's internal routes (/internal/wait, /internal/stream): a fixed
# HMAC of the internal secret, so the secret itself never travels, and nginx's Lua
# (`charts/fluxgate/files/lua/internal.lua`, with `ngx.hmac_sha1`) derives the same value.
INTERNAL_READ_HEADER = "x-fluxgate-internal"
_INTERNAL_READ_MESSAGE = b"fluxgate-internal-read"


def internal_read_token(secret: str) -> str:
    digest = hmac.new(secret.encode(), _INTERNAL_READ_MESSAGE, hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_internal_read(secret: str, value: str | None) -> bool:
    if not value or not value.isascii():
        return False
    return hmac.compare_digest(value, internal_read_token(secret))


# --- Standard Webhooks (https://www.standardwebhooks.com) ---------------------------------------

WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret is its base64-decoded part, as the spec says."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def _webhook_signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign_webhook(
    msg_id: str, body: bytes, secret: str | list[str], *, now: float | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt of a message. With several
    secrets (a rotation in progress) the header carries one signature per secret."""
    timestamp = str(int(time.time() if now is None else now))
    signatures = " ".join(
        "v1," + _webhook_signature(webhook_key(each), msg_id, timestamp, body)
        for each in ([secret] if isinstance(secret, str) else secret)
    )
    return {WEBHOOK_ID: msg_id, WEBHOOK_TIMESTAMP: timestamp, WEBHOOK_SIGNATURE: signatures}


def webhook_signature_valid(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when the headers carry a fresh, valid signature of `body` (the server's own check,
    used by its tests; receivers use `fluxgate_client.verify_webhook`, same argument order, which
    also parses the body and raises on a bad signature).

    `headers` may be any case-insensitive mapping (a framework's request headers) or a plain dict
    with lower-case names.
    """
    msg_id = headers.get(WEBHOOK_ID)
    timestamp = headers.get(WEBHOOK_TIMESTAMP)
    signatures = headers.get(WEBHOOK_SIGNATURE)
    if timestamp is None or not _epoch_seconds(timestamp):
        return False
    if not msg_id or not signatures or not signatures.isascii():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    expected = _webhook_signature(webhook_key(secret), msg_id, timestamp, body)
    # The header may list several signatures (key rotation): any valid v1 one is enough.
    return any(
        hmac.compare_digest(candidate.split(",", 1)[1], expected)
        for candidate in signatures.split()
        if candidate.startswith("v1,")
    )
