"""Input pieces shared by several task types."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

# Before the gateway accepts a job it becomes a `store://inputs/...` reference (uploads, base64)
# or stays an http(s) URL (fetched by the worker, behind the same SSRF guard as webhooks).
ImageField = Annotated[
    str,
    Field(
        min_length=1,
        description="an http(s) URL, base64 image data (or a data: URI), or with multipart "
        "a file part of this name",
        json_schema_extra={"format": "image"},
    ),
]
