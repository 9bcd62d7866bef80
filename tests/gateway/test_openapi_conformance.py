"""The live gateway, auth on, against its own OpenAPI document (schemathesis)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.gateway.auth_stack import AuthStack


def test_the_api_matches_its_openapi_document(auth_stack: AuthStack, tmp_path: Path) -> None:
    """schemathesis against the live gateway: no 5xx, and every answer as the schema says."""
    token = auth_stack.new_key("fuzz", rate="1000/s", max_queued=100_000)
    # Every check but positive_data_acceptance: a schema-valid webhook URL is refused (422) when
    # its host does not resolve (no DNS here) or is private; the SSRF guard goes past what a
    # schema can say, by design.
    checks = (
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_headers_conformance,response_schema_conformance,negative_data_rejection,"
        "missing_required_header,unsupported_method,allow_header_conformance,"
        "use_after_free,ensure_resource_availability,ignored_auth"
    )
    # The OpenAI routes hold a request until its job ends, on the notifier's wait: without a
    # notifier, an accepted job's answer is 503 naming it, documented, and nothing else is.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[[operations]]\n"
        'include-path-regex = "^/v1/images/"\n'
        'checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]\n'
    )
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{auth_stack.gateway}/openapi.json",
        "--checks",
        checks,
        "--max-examples",
        "12",
        # This stack has no notifier, on purpose: the stream's 503 is asserted by its own test.
        "--exclude-path",
        "/tasks/{task_id}/events",
        "--generation-deterministic",
        "--request-timeout",
        "10",
        "--header",
        f"Authorization: Bearer {token}",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
