"""Input images of a job, opened from the output store or fetched from the client's URL.

A fetched URL goes through the same SSRF guard as webhooks, checked again at each redirect and
right before connecting, to the very address checked (DNS may have changed since submit,
or may answer differently on purpose), and is capped in bytes and pixels
while it streams in. What cannot be opened fails the job with `invalid_input_image`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx
from PIL import Image

from apps.common import images
from apps.common.security.url_guard import AllowList, UnsafeUrl, pin_url
from apps.common.storage.names import OutputStore, is_store_ref
from apps.worker.errors import InvalidImage

MAX_REDIRECTS = 3
FETCH_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# A slow-drip server may not hold a worker slot longer than this.
FETCH_DEADLINE_S = 60.0


@dataclass
class InputImages:
    store: OutputStore
    allow: AllowList
    max_bytes: int
    max_pixels: int
    http: httpx.Client

    def open(self, field: str, ref: str) -> Image.Image:
        try:
            data = self._read(ref)
            return images.load(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        except images.ImageRejected as exc:
            raise InvalidImage(str(exc), field=field) from exc
        except FileNotFoundError as exc:
            raise InvalidImage("the uploaded image is gone from the store", field=field) from exc
        except UnsafeUrl as exc:
            raise InvalidImage(f"URL {exc}", field=field) from exc
        except httpx.HTTPError as exc:
            raise InvalidImage(f"could not fetch the image ({exc})", field=field) from exc

    def _read(self, ref: str) -> bytes:
        if is_store_ref(ref):
            return self.store.read(ref)
        if images.is_url(ref):
            return self._fetch(ref)
        raise images.ImageRejected("is neither an uploaded image nor an http(s) URL")

    def _fetch(self, url: str) -> bytes:
        deadline = time.monotonic() + FETCH_DEADLINE_S
        for _ in range(MAX_REDIRECTS + 1):
            # Resolved and checked once, and connected to that very address (DNS rebinding).
            pinned = pin_url(url, self.allow)
            kwargs = pinned.request_kwargs()
            # Compressed bodies would be inflated before any size check: ask for none.
            kwargs["headers"] = {**kwargs.get("headers", {}), "Accept-Encoding": "identity"}
            with self.http.stream("GET", pinned.url, follow_redirects=False, **kwargs) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    if not images.is_url(url):
                        raise images.ImageRejected("redirects to a URL that is not http(s)")
                    continue
                if response.status_code != 200:
                    raise images.ImageRejected(f"fetching it answered HTTP {response.status_code}")
                encoding = response.headers.get("content-encoding", "identity").lower()
                if encoding not in ("identity", ""):
                    raise images.ImageRejected(f"the server sent it {encoding}-compressed")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise images.ImageRejected(f"image is over {self.max_bytes} bytes")
                body = bytearray()
                for chunk in response.iter_raw():
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise images.ImageRejected(f"image is over {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise images.ImageRejected(
                            f"fetching it took over {FETCH_DEADLINE_S:.0f} s"
                        )
                return bytes(body)
        raise images.ImageRejected(f"more than {MAX_REDIRECTS} redirects")
