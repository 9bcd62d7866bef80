from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.common.security.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign_internal,
    sign_webhook,
    verify_internal,
    webhook_signature_valid,
)

SECRET = "a-shared-secret-for-tests"
BODY = b'{"task_id":"t","event":"started"}'


def check(
    body: bytes, headers: dict[str, str], *, secret: str = SECRET, now: float | None = None
) -> bool:
    return verify_internal(
        body,
        secret,
        timestamp=headers.get(TIMESTAMP_HEADER),
        signature=headers.get(SIGNATURE_HEADER),
        now=now,
    )


def test_a_signed_body_verifies() -> None:
    assert check(BODY, sign_internal(BODY, SECRET))


def test_a_changed_body_or_other_secret_fails() -> None:
    headers = sign_internal(BODY, SECRET)
    assert not check(BODY + b" ", headers)
    assert not check(BODY, headers, secret="another-secret-entirely")


def test_missing_or_stale_signatures_fail() -> None:
    assert not check(BODY, {})
    old = sign_internal(BODY, SECRET, now=1_000_000)
    assert not check(BODY, old, now=1_000_000 + 301)
    assert check(BODY, old, now=1_000_000 + 299)


def test_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    headers = sign_webhook("msg_p5jXN8AQM9LWM0D4loKWxJek", body, secret, now=1614265330)
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert webhook_signature_valid(headers, body, secret, now=1614265330)


def test_webhook_verification_refuses_tampering_and_age() -> None:
    secret = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="
    body = b'{"type":"task.succeeded"}'
    headers = sign_webhook("msg_1", body, secret, now=1_000_000)
    assert webhook_signature_valid(headers, body, secret, now=1_000_010)
    assert not webhook_signature_valid(headers, body + b" ", secret, now=1_000_010)
    assert not webhook_signature_valid(
        {**headers, "webhook-id": "msg_2"}, body, secret, now=1_000_010
    )
    assert not webhook_signature_valid(headers, body, secret, now=1_000_000 + 301)
    rotated = {**headers, "webhook-signature": "v1,bm9wZQ== " + headers["webhook-signature"]}
    assert webhook_signature_valid(rotated, body, secret, now=1_000_010)


@settings(max_examples=300, deadline=None)
@given(timestamp=st.text(max_size=20), signature=st.text(max_size=60), msg_id=st.text(max_size=20))
def test_any_header_text_verifies_false_never_raises(
    timestamp: str, signature: str, msg_id: str
) -> None:
    body = b'{"x": 1}'
    assert verify_internal(body, "s" * 32, timestamp=timestamp, signature=signature) in (
        True,
        False,
    )
    headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    assert webhook_signature_valid(headers, body, "whsec_" + "A" * 32) in (True, False)


def test_a_superscript_timestamp_is_refused() -> None:
    assert not verify_internal(b"{}", "s" * 32, timestamp="²", signature="x")
