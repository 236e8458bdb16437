"""A track sent over HTTP (the API's request body, the crossref page's upload) saved for the track
reader under the name its sender gave it: every message then names the user's file, never the
server's temporary one, and a suffix such as .geojsonl tells its format as on the command line.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from custody.errors import UsageError

UNNAMED = "uploaded-track"  # what messages call a track sent without a name
MAX_NAME_BYTES = 200  # a file name's bytes (most file systems take 255)


def safe_name(uploaded: str | None) -> str:
    """The last part of the name the sender gave, without path separators or control
    characters, at most 120 characters and MAX_NAME_BYTES in UTF-8 (its end kept: the suffix
    tells the format); UNNAMED when nothing is left."""
    name = (uploaded or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable())[-120:]
    while len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        name = name[1:]
    return name.lstrip(".") or UNNAMED


@contextlib.contextmanager
def spooled(name: str | None, chunks: Iterable[bytes], limit: int | None = None
            ) -> Iterator[Path]:
    """The track's bytes in a private temporary folder (removed after) under `safe_name(name)`;
    UsageError beyond `limit` bytes (None: no limit here, the caller capped the body)."""
    folder = Path(tempfile.mkdtemp(prefix="custody-track-"))
    path = folder / safe_name(name)
    try:
        with path.open("xb") as out:
            written = 0
            for chunk in chunks:
                written += len(chunk)
                if limit is not None and written > limit:
                    raise UsageError(f"the track is larger than {limit:,} bytes")
                out.write(chunk)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
