"""Images around a job, for the gateway: checking and storing a submit's image inputs (kept
out of the job record, which holds only their references), removing them when the submit is
refused, and reading outputs back as base64."""

from __future__ import annotations

import base64
import functools
from typing import Any

import anyio
import anyio.to_thread
from starlette.concurrency import run_in_threadpool

from apps.common import images
from apps.common.jobs.record import JobRecord
from apps.common.security.url_guard import AllowList, UnsafeUrl, check_url
from apps.common.service.errors import InvalidInput
from apps.common.service.logging import get_logger
from apps.common.storage.names import OutputStore
from apps.gateway.settings import GatewaySettings

log = get_logger(__name__)

# Image bytes one view may carry as base64 (`?include=base64`); larger images keep only `url`.
MAX_BASE64_BYTES = 32 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Image field -> uploaded bytes, or an http(s) URL the worker fetches.
ImageValues = dict[str, bytes | str]


class JobImages:
    def __init__(self, outputs: OutputStore, settings: GatewaySettings, allow: AllowList) -> None:
        self._outputs = outputs
        self._settings = settings
        self._allow = allow
        self._decodes = anyio.CapacityLimiter(settings.gateway_decode_concurrency)

    async def with_base64(self, view: dict[str, Any]) -> dict[str, Any]:
        """A dumped view whose result images (and image-valued result keys) carry `base64`."""
        result = view.get("result") or {}
        outputs = [*result.get("images", [])]
        outputs += [v for v in result.values() if isinstance(v, dict) and "url" in v]
        budget = MAX_BASE64_BYTES
        for image in outputs:
            try:
                data = await run_in_threadpool(self._outputs.read_output, image["url"])
            except FileNotFoundError:
                image["base64"] = None  # cleaned up already
                continue
            budget -= len(data)
            if budget < 0:
                # Past what one answer should carry: fetch it from `url` instead.
                image["base64"] = None
                continue
            image["base64"] = await run_in_threadpool(_b64, data)
        return view

    async def check(self, values: ImageValues) -> dict[str, images.ImageInfo]:
        """Decode each uploaded image once (refusing corrupt, oversized and bomb files), and
        check image URLs as webhook URLs are checked; the worker fetches them later. Returns
        what each upload is (its file extension and size)."""
        uploads: dict[str, images.ImageInfo] = {}
        for field, value in values.items():
            name = f"input.{field}"
            if isinstance(value, str):
                try:
                    await run_in_threadpool(check_url, value, self._allow)
                except UnsafeUrl as exc:
                    raise InvalidInput(f"{name}: URL {exc}", field=name) from exc
                continue
            try:
                # A decode holds the whole bitmap (up to 160 MB at the pixel limit): a few at a
                # time, so a burst of large uploads cannot exhaust the gateway's memory.
                info = await anyio.to_thread.run_sync(
                    functools.partial(
                        images.inspect,
                        value,
                        max_bytes=self._settings.input_image_max_bytes,
                        max_pixels=self._settings.input_image_max_pixels,
                    ),
                    limiter=self._decodes,
                )
            except images.ImageRejected as exc:
                raise InvalidInput(f"{name}: {exc}", field=name) from exc
            uploads[field] = info
        return uploads

    async def store(
        self, record: JobRecord, values: ImageValues, uploads: dict[str, images.ImageInfo]
    ) -> None:
        """Uploaded bytes go to the output store; the record keeps only their references."""
        for field, value in values.items():
            if isinstance(value, bytes):
                record.input[field] = await run_in_threadpool(
                    self._outputs.put_input,
                    record.task_id,
                    field,
                    value,
                    extension=uploads[field].extension,
                )
            else:
                record.input[field] = value

    async def forget(self, record: JobRecord, values: ImageValues) -> None:
        """A refused submit leaves nothing behind: not even its uploaded inputs."""
        if any(isinstance(value, bytes) for value in values.values()):
            try:
                await run_in_threadpool(self._outputs.delete_inputs, record.task_id)
            except Exception as exc:  # the sweep removes them later anyway
                log.warning("could not delete a refused job's inputs", error=repr(exc))
