from __future__ import annotations

from apps.common.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_internal, verify_internal

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
