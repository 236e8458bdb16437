"""Previews for the web's item page, made in the supervised metadata worker (never in the server's
process): a photo scaled down, or a video's poster frame decoded with PyAV; both as a small PNG.

`Previews.make(path)` hands one verified copy of an item's content to a worker child (the same
supervisor as metadata reading: exec'd interpreter, allow-listed environment, own process group,
address-space limit, a deadline) whose `run` is `previews` below.
"""

from __future__ import annotations

import base64
import io
import os
import stat
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .record import one_line

if TYPE_CHECKING:
    from .worker import Message, Tools

PIXELS = 480  # the longer side of a preview
MAX_PIXELS = 100_000_000  # larger images are not decoded (decompression bombs)
FRAME_AT = 1.0  # seconds into a video (a phone video's first frame is often black)
TIMEOUT = 30.0
MEMORY_LIMIT = 1 << 30


def _scaled_png(image: Any) -> bytes:
    from PIL import ImageOps

    turned = ImageOps.exif_transpose(image).convert("RGB")
    turned.thumbnail((PIXELS, PIXELS))
    out = io.BytesIO()
    turned.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _photo(path: str) -> tuple[bytes, str]:
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with Image.open(path) as im:
        im.draft("RGB", (PIXELS * 2, PIXELS * 2))  # JPEG: decode at a lower scale
        return _scaled_png(im), "a scaled copy of the photo"


def _poster(path: str) -> tuple[bytes, str]:
    import av

    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        duration = float(container.duration) / 1_000_000 if container.duration else 0.0
        at = min(FRAME_AT, duration / 2) if duration > 0 else 0.0
        if at > 0:
            container.seek(int(at * 1_000_000), any_frame=False, backward=True)
        for frame in container.decode(stream):
            if frame.time is None or frame.time >= at - 0.001:
                picture = frame.to_image()  # type: ignore[no-untyped-call]
                return _scaled_png(picture), f"the poster frame at {frame.time or 0:.2f} s"
    raise ValueError("no frame could be decoded")


def previews(path: str, tools: Tools) -> Iterator[Message]:
    """The worker's `run` for previews: one `preview` part, {png (base64) or null, note}."""
    import magic

    yield {"type": "begin", "stage": "preview"}
    if not stat.S_ISREG(os.stat(path).st_mode):
        yield {"type": "error", "text": "not a regular file"}
        return
    mime = magic.from_file(path, mime=True) or ""
    png, note = None, f"no preview for {mime or 'this type'}"
    try:
        if mime.startswith("image/"):
            png, note = _photo(path)
        elif mime.startswith("video/"):
            png, note = _poster(path)
    except Exception as error:  # a decoder's failure on hostile content: said, never raised
        png, note = None, f"no preview: {one_line(error)}"
    yield {"type": "part", "stage": "preview", "payload": {
        "png": base64.b64encode(png).decode("ascii") if png else None, "note": note,
        "mime": mime}}


class Previews:
    """One supervised worker child making previews, one at a time."""

    def __init__(self, timeout: float = TIMEOUT, memory_limit: int | None = MEMORY_LIMIT) -> None:
        from .worker import Worker

        self._worker = Worker(timeout, memory_limit, "exiftool", previews)
        self._lock = threading.Lock()

    def make(self, path: str) -> tuple[bytes | None, str]:
        """The PNG preview of the file at `path` (or None) and a line saying how or why not."""
        with self._lock:
            parts, errors = self._worker.read(os.path.abspath(path))
        part = parts.get("preview")
        if part is None:
            return None, f"no preview: {'; '.join(errors) or 'the worker gave none'}"
        png = part.get("png")
        return (base64.b64decode(png) if isinstance(png, str) else None), str(part["note"])

    def close(self) -> None:
        with self._lock:
            self._worker.close()
