"""Input images of a job, opened from the output store or fetched from the client's URL.

A fetched URL goes through the same SSRF guard as webhooks, checked again at each redirect and
right before connecting (DNS may have changed since submit), and is capped in bytes and pixels
while it streams in. What cannot be opened fails the job with `invalid_input_image`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin

import httpx
from PIL import Image

from apps.common import images
from apps.common.outputs import OutputStore, is_store_ref
from apps.common.url_guard import AllowList, UnsafeUrl, check_url

MAX_REDIRECTS = 3
FETCH_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class InputImageError(Exception):
    """An input image that cannot be used; `field` names it in the job's error message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"input.{field}: {message}")
        self.field = field


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
            raise InputImageError(field, str(exc)) from exc
        except FileNotFoundError as exc:
            raise InputImageError(field, "the uploaded image is gone from the store") from exc
        except UnsafeUrl as exc:
            raise InputImageError(field, f"URL {exc}") from exc
        except httpx.HTTPError as exc:
            raise InputImageError(field, f"could not fetch the image ({exc})") from exc

    def _read(self, ref: str) -> bytes:
        if is_store_ref(ref):
            return self.store.read(ref)
        if images.is_url(ref):
            return self._fetch(ref)
        raise images.ImageRejected("is neither an uploaded image nor an http(s) URL")

    def _fetch(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, self.allow)
            with self.http.stream("GET", url, follow_redirects=False) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    if not images.is_url(url):
                        raise images.ImageRejected("redirects to a URL that is not http(s)")
                    continue
                if response.status_code != 200:
                    raise images.ImageRejected(f"fetching it answered HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise images.ImageRejected(f"image is over {self.max_bytes} bytes")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise images.ImageRejected(f"image is over {self.max_bytes} bytes")
                return bytes(body)
        raise images.ImageRejected(f"more than {MAX_REDIRECTS} redirects")
