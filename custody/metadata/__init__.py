"""Metadata adapters: MIME type, EXIF and container metadata of stored files, normalised for search.

MetadataReader runs python-magic, exifread and ExifTool in one supervised worker process and
returns one JSON-safe dict per file; bad media never raise. docs/METADATA.md describes the fields.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .record import compose

if TYPE_CHECKING:
    from .worker import Extract

__all__ = ["MetadataReader", "close_all"]


class MetadataReader:
    """Reads metadata from files, one at a time, in a worker bounded in time and memory.

    `timeout` is the time one file may take (the worker is killed and restarted when it is
    exceeded); `memory_limit` is the worker's address-space limit in bytes (None for none);
    `exiftool` names the ExifTool executable; `c2pa_trust` ({"pem": PEM text, "sha256": [the
    certificates' SHA-256]}) the C2PA trust anchors, none by default. Use it as a context
    manager, or call close().
    """

    def __init__(
        self,
        timeout: float = 20.0,
        memory_limit: int | None = 1 << 30,
        *,
        exiftool: str = "exiftool",
        c2pa_trust: dict[str, Any] | None = None,
        _extract: Extract | None = None,
    ) -> None:
        # The worker module (exifread, ExifTool, c2pa's X.509) is imported here, not with the
        # package: every command imports custody.metadata.clocks, few read metadata.
        from .worker import Worker, extract

        self._worker = Worker(timeout, memory_limit, exiftool, _extract or extract, c2pa_trust)
        self._lock = threading.Lock()
        self._closed = False  # start() after close() starts nothing (read() still would)

    @property
    def timeout(self) -> float:
        return self._worker.timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._worker.timeout = seconds

    def read(self, path: str | os.PathLike[str] | os.PathLike[bytes] | bytes,
             *, fast: bool = False) -> dict[str, Any]:
        """The metadata record of one file. Problems with the file are in record["errors"].

        `fast`: a JPEG that exifread and the marker walk read completely is not given to ExifTool;
        its record then says `"deferred": ["exiftool"]` (docs/METADATA.md, "The fast path")."""
        name = os.path.abspath(os.fsdecode(path))
        with self._lock:
            parts, errors = self._worker.read(name, "fast" if fast else "full")
        return compose(parts, errors)

    def read_exiftool(self, path: str | os.PathLike[str] | os.PathLike[bytes] | bytes
                      ) -> dict[str, Any]:
        """ExifTool's report on one file alone, for a record the fast path completed without it:
        `{"version", "raw", "fields", "errors"}` (errors one line each, never raised)."""
        name = os.path.abspath(os.fsdecode(path))
        with self._lock:
            parts, errors = self._worker.read(name, "exiftool")
        part = parts.get("exiftool") or {"version": None, "raw": None, "fields": None,
                                         "errors": []}
        own = [e.removeprefix("exiftool: ") for e in errors]  # a time-out, a crash
        return {"version": part.get("version"), "raw": part.get("raw"),
                "fields": part.get("fields"), "errors": [*part.get("errors", []), *own]}

    def start(self) -> None:
        """Start the worker now (ingest does so before the first object is stored), so that its
        start-up overlaps the hashing of the first file instead of following it. Once the
        reader is closed it starts nothing: a start racing a close (an ingest stopped by a bad
        key while its first worker was being started) leaves no worker behind."""
        with self._lock:
            if not self._closed:
                self._worker.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._worker.close()

    def ask_to_stop(self) -> None:
        """Tell the worker to stop, without waiting (close() then waits and reaps it)."""
        with self._lock:
            self._worker.ask_to_stop()

    def __enter__(self) -> MetadataReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def close_all(readers: list[MetadataReader]) -> None:
    """Stop every worker at once (each stops its ExifTool), then wait for and reap each: the
    waits overlap instead of adding up, and no exited worker is left unreaped (a zombie)."""
    for reader in readers:
        reader.ask_to_stop()
    for reader in readers:
        reader.close()
