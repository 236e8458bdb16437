"""Reading an item's content for a report: through access.content only, so each read is an entry.

One pass recomputes all four digests and keeps the bytes for a preview
(photos: a Pillow thumbnail; videos: a poster frame decoded by ffmpeg in a child process).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from custody.core import entry as entries
from custody.core.signing import SigningKey
from custody.ops import access, encryption
from custody.ops.archive import Archive
from custody.report import poster
from store.ports import CHUNK, ObjectCorrupt, ObjectMissing

THUMBNAIL_PX = 320  # the longer side of a preview, in pixels
MAX_PREVIEW_PIXELS = 100_000_000  # larger images are not decoded (decompression bombs)
SPOOL_IN_MEMORY = 16 << 20  # content above this is spooled to a temporary file while read


@dataclass(frozen=True, slots=True)
class ContentRead:
    """What reading an item's content for a report gave: the access entry and what was seen."""

    access_seq: int | None
    digests: dict[str, str] | None  # md5, sha1, sha256, sha512 of the bytes read; None if failed
    thumbnail_png: bytes | None
    preview_note: str  # why there is no preview, or how it was made
    error: str | None  # the object failed verification or is missing


def read(
    archive: Archive, key: SigningKey, item: str, purpose: str, mime: str | None, destination: str,
    duration_s: float | None = None,
) -> ContentRead:
    """Append a `report` access entry, then read and verify the item's bytes (a video's are
    kept in a private temporary file, for ffmpeg to take its poster frame from)."""
    hashes = {name: hashlib.new(name) for name in ("md5", "sha1", "sha256", "sha512")}
    is_video = (mime or "").startswith("video/")
    want_preview = (mime or "").startswith("image/") or is_video
    with tempfile.TemporaryDirectory(prefix="custody-report-",
                                     dir=encryption.working_folder(archive)) as private, (
        open(Path(private) / "content", "w+b") if is_video  # noqa: SIM115 - closed by `with`
        else tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
    ) as spool:
        error = None
        try:
            with access.content(archive, key, item, purpose, "report", destination) as reader:
                while chunk := reader.read(CHUNK):
                    for h in hashes.values():
                        h.update(chunk)
                    if want_preview:
                        spool.write(chunk)
        except (ObjectCorrupt, ObjectMissing) as exc:
            error = str(exc)
        seq = _access_seq(archive, key.key_id, item)
        if error is not None:
            return ContentRead(seq, None, None, "not shown: the content failed verification", error)
        digests = {name: h.hexdigest() for name, h in hashes.items()}
        if not want_preview:
            return ContentRead(seq, digests, None, _no_preview(mime), None)
        spool.seek(0)
        if is_video:
            spool.flush()
            at = poster.frame_time(duration_s)
            frame, how = poster.frame_png(Path(private) / "content", at)
            if frame is None:
                return ContentRead(seq, digests, None, how, None)
            png, note = thumbnail(io.BytesIO(frame))
            return ContentRead(seq, digests, png,
                               f"{how}, from the content read for this report" if png else note,
                               None)
        png, note = thumbnail(spool)
        return ContentRead(seq, digests, png, note, None)


def _access_seq(archive: Archive, actor: str, item: str) -> int | None:
    """The access entry just made (the item's latest access by this key)."""
    for row in reversed(archive.ledger.rows_for_item(item)):
        e = entries.parse(row.body)
        if e.action == "access" and e.actor == actor and e.details.get("kind") == "report":
            return e.seq
    return None


def _no_preview(mime: str | None) -> str:
    return f"no preview for {mime or 'this type'}"


def thumbnail(stream: IO[bytes]) -> tuple[bytes | None, str]:
    """A PNG preview, turned as the camera's EXIF orientation says; or None and the reason."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PREVIEW_PIXELS
    try:
        with Image.open(stream) as im:
            im.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))  # JPEG: decode at a lower scale
            turned = ImageOps.exif_transpose(im)
            rotated = turned is not im and im.getexif().get(0x0112, 1) not in (1, None)
            preview = turned.convert("RGB")
            preview.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            out = io.BytesIO()
            preview.save(out, format="PNG", optimize=True)
    except Image.DecompressionBombError:
        return None, f"no preview: larger than {MAX_PREVIEW_PIXELS:,} pixels"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        return None, f"no preview: the image could not be decoded ({type(exc).__name__})"
    how = "preview scaled from the content read for this report"
    return out.getvalue(), how + (", turned as its EXIF orientation says" if rotated else "")
