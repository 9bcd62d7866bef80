"""Input images: decode what a client sent, and refuse what is corrupt, too big or a bomb.

Used by the gateway (uploads and base64, checked before a job is accepted) and by the worker
(images it fetched from a URL, and every image it opens)."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from apps.common.wire.contracts import OutputFormat

# Pillow format -> file extension; what we accept as an input image.
FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "TIFF": "tiff"}
_DATA_URI = re.compile(r"^data:(?P<mime>[\w/+.-]*)(;[\w=.-]+)*;base64,", re.IGNORECASE)


class ImageRejected(ValueError):
    """The bytes are not an image we will work on; the message says why in words."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    extension: str
    width: int
    height: int


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def decode_base64(value: str, *, max_bytes: int) -> bytes:
    """The bytes of a `data:image/...;base64,...` URI or of bare base64 (standard or URL-safe)."""
    match = _DATA_URI.match(value)
    payload = value[match.end() :] if match else value
    payload = "".join(payload.split())  # line-wrapped base64 is common
    # 4 base64 characters carry 3 bytes: refuse before decoding a huge string.
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageRejected(f"image is over {max_bytes} bytes")
    try:
        if "-" in payload or "_" in payload:
            return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageRejected("is neither an http(s) URL nor valid base64 image data") from exc


def _open(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageRejected("image is empty")
    if len(data) > max_bytes:
        raise ImageRejected(f"image is over {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise ImageRejected(
                    f"image format {image.format} is not accepted "
                    f"(use {', '.join(sorted(FORMATS))})"
                )
            # The header gives the size before any pixel is decoded: stop bombs here.
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"image is {width}x{height}, over the limit of {max_pixels} pixels"
                )
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard, at open, for sizes far past ours.
        raise ImageRejected(f"image has more than {max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise ImageRejected("is not a readable image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"image is corrupt or truncated ({exc})") from None
    return image


def inspect(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageInfo:
    """Decode the whole image once, so a corrupt or truncated file is refused now."""
    image = _open(data, max_bytes=max_bytes, max_pixels=max_pixels)
    fmt = str(image.format)
    return ImageInfo(fmt, FORMATS[fmt], image.width, image.height)


def load(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """The image upright (EXIF orientation applied), as RGB, or RGBA when it has transparency."""
    image = _open(data, max_bytes=max_bytes, max_pixels=max_pixels)
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)  # an animation: its first frame
    image = ImageOps.exif_transpose(image) or image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


# One quality for every lossy output, whatever the task type (Pillow's defaults are 75 for JPEG
# and 80 for WebP, visibly soft on generated images).
LOSSY_QUALITY = 92


def encode(image: Image.Image, fmt: OutputFormat | str) -> tuple[bytes, str]:
    """Encode an output image as `png`, `jpeg` or `webp`; returns the bytes and the content type."""
    fmt = OutputFormat(fmt)
    if fmt is OutputFormat.JPEG and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")  # JPEG has no alpha
    buffer = io.BytesIO()
    lossy = {} if fmt is OutputFormat.PNG else {"quality": LOSSY_QUALITY}
    image.save(buffer, format=fmt.pil_format, **lossy)
    return buffer.getvalue(), fmt.content_type
