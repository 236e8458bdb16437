"""Ingest: files and folders into the object store, each with a signed ingest or sighting entry.

Write order per batch: every object is stored and fsynced first, then all the batch's entries are
committed in one transaction. A crash in between leaves only unreferenced objects, never an entry
without its object.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from queue import Queue
from typing import Any

from custody import canonical
from custody.archive import Archive, Draft
from custody.chain import FIRST_RECORD
from custody.errors import NotFound, UsageError
from custody.signing import SigningKey
from store.ledger import LedgerWriter

BATCH_FILES = 64  # entries committed together; one fsync of the ledger per batch
BATCH_SECONDS = 2.0  # …or sooner, so a long ingest never holds many uncommitted files


@dataclass(frozen=True, slots=True)
class Found:
    """A file to ingest, as the filesystem claims it was."""

    path: Path
    size: int


@dataclass(slots=True)
class FileResult:
    path: str
    status: str  # "new", "present" (a sighting of content already stored) or "failed"
    sha256: str | None = None
    size: int | None = None
    mime: str | None = None
    seq: int | None = None
    error: str | None = None
    metadata_errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "sha256": self.sha256,
            "size": self.size,
            "mime": self.mime,
            "seq": self.seq,
            "error": self.error,
            "metadata_errors": self.metadata_errors,
        }


@dataclass(slots=True)
class IngestReport:
    batch: str
    files: list[FileResult] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "files": [f.to_json() for f in self.files],
            "skipped": self.skipped,
            "summary": {
                "new": self.count("new"),
                "present": self.count("present"),
                "failed": self.count("failed"),
                "skipped": len(self.skipped),
                "bytes": sum(f.size or 0 for f in self.files if f.status != "failed"),
            },
        }


def find_files(paths: list[Path], skipped: list[dict[str, str]]) -> list[Found]:
    """Every regular file under `paths`, sorted; symlinked folders and special files are skipped
    (and said so), so a walk can neither loop nor block on a FIFO."""
    missing = [str(p) for p in paths if not os.path.lexists(p)]
    if missing:
        raise NotFound(f"no such file or folder: {missing[0]}")
    found: list[Found] = []
    for top in paths:
        found.extend(_walk(Path(top), skipped))
    return found


def _walk(top: Path, skipped: list[dict[str, str]]) -> Iterator[Found]:
    try:
        st = top.stat()
    except FileNotFoundError:  # a dangling symbolic link (or gone since the folder was read)
        skipped.append({"path": str(top), "reason": "no such file (a dangling link?)"})
        return
    except OSError as exc:  # could not be read: not a choice, so ingest exits non-zero
        skipped.append({"path": str(top), "reason": exc.strerror or str(exc), "unreadable": "yes"})
        return
    if stat.S_ISREG(st.st_mode):
        yield Found(top, st.st_size)
    elif stat.S_ISDIR(st.st_mode):
        if top.is_symlink():
            skipped.append({"path": str(top), "reason": "symbolic link to a folder"})
            return
        try:
            children = sorted(top.iterdir())
        except OSError as exc:
            skipped.append({"path": str(top), "reason": exc.strerror or str(exc),
                            "unreadable": "yes"})
            return
        for child in children:
            yield from _walk(child, skipped)
    else:
        skipped.append({"path": str(top), "reason": "not a regular file"})


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class _Pending:
    result: FileResult
    draft: Draft
    metadata: Future[dict[str, Any]] | None = None  # being read while later files are stored

    def settle(self) -> None:
        """Fold the finished metadata document into the draft (before the batch commits)."""
        if self.metadata is None:
            return
        doc = self.metadata.result()
        self.metadata = None
        body = canonical.encode(doc)
        details = dict(self.draft.details, mime=doc.get("mime"), metadata_sha256=_sha256_hex(body))
        self.draft = Draft(self.draft.action, self.draft.item, details, metadata=body)
        self.result.mime = doc.get("mime")
        self.result.metadata_errors = list(doc.get("errors", []))


class Ingest:
    """One ingest run: call `run(paths)`; `on_file` hears each file once its entry is committed."""

    def __init__(
        self,
        archive: Archive,
        key: SigningKey,
        reader: Any,  # a MetadataReader, or a list of them to read several files at once
        *,
        case: str | None = None,
        note: str | None = None,
        on_file: Callable[[FileResult], None] | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.archive = archive
        self.key = key
        # Each reader is one worker process: with two, metadata of file n is read while file n+1
        # is hashed and stored, and two files' metadata at a time.
        self._readers: Queue[Any] = Queue()
        for one in reader if isinstance(reader, list) else [reader]:
            self._readers.put(one)
        self._pool = ThreadPoolExecutor(max_workers=self._readers.qsize(),
                                        thread_name_prefix="metadata")
        self.case = case
        self.note = note
        self.on_file = on_file or (lambda _r: None)
        self.on_bytes = on_bytes or (lambda _n: None)
        self.report = IngestReport(batch=str(uuid.uuid4()))
        self._pending: list[_Pending] = []
        self._batch_started = time.monotonic()

    def run(self, files: list[Found]) -> IngestReport:
        if self.case is not None and not self.case.strip():
            raise UsageError("--case must not be empty")
        self.archive.authorize(self.key, "ingest")
        try:
            for found in files:
                self._one(found)
                if (
                    len(self._pending) >= BATCH_FILES
                    or time.monotonic() - self._batch_started >= BATCH_SECONDS
                ):
                    self._commit()
            self._commit()
        finally:
            self._pool.shutdown()
        return self.report

    def _one(self, found: Found) -> None:
        result = FileResult(path=str(found.path), status="failed")
        try:
            with open(found.path, "rb") as stream:
                st = os.fstat(stream.fileno())
                put = self.archive.objects.put(_Counting(stream, self.on_bytes))
        except OSError as exc:
            result.error = exc.strerror or str(exc)
            self.report.files.append(result)
            self.on_file(result)
            return
        digests = put.digests
        result.sha256, result.size = digests.sha256, digests.size
        details: dict[str, Any] = {
            "digests": {k: v for k, v in digests.as_dict().items() if k != "size"},
            "size": digests.size,
            "source": {  # what the filesystem claimed at ingest: claims, not truth
                "name": found.path.name,
                "path": str(found.path.absolute()),
                "mtime": _rfc3339(st.st_mtime),
            },
            "case": self.case,
            "note": self.note,
            "batch": self.report.batch,
        }
        reading = None
        if not self._has_metadata(digests.sha256):
            reading = self._pool.submit(self._read_metadata, digests.sha256)
        draft = Draft(action="ingest", item=digests.sha256, details=details)
        self._pending.append(_Pending(result, draft, reading))

    def _has_metadata(self, sha256: str) -> bool:
        if any(p.draft.item == sha256 and (p.metadata or p.draft.metadata)
               for p in self._pending):
            return True
        return self.archive.ledger.metadata(sha256) is not None

    def _read_metadata(self, sha256: str) -> dict[str, Any]:
        """Metadata of the stored object (what is parsed is exactly what is kept)."""
        reader = self._readers.get()
        try:
            doc = reader.read(self.archive.objects.path(sha256))
        finally:
            self._readers.put(reader)
        try:
            canonical.encode(doc)
        except ValueError as exc:  # e.g. a NaN from a reader: keep the file, record why
            doc = {
                "mime": doc.get("mime"),
                "errors": [*doc.get("errors", []), f"metadata not encodable: {exc}"],
            }
        return doc

    def _commit(self) -> None:
        if not self._pending:
            self._batch_started = time.monotonic()
            return
        pending, self._pending = self._pending, []
        for p in pending:
            p.settle()
        ingested_now: set[str] = set()

        def decide(writer: LedgerWriter, draft: Draft) -> Draft:
            # Under the ledger's write lock: a second copy of content already ingested (by this
            # run or by a concurrent one) becomes a sighting and stores no second metadata doc.
            item = draft.item or ""
            if item in ingested_now or any(writer.has_action(item, a) for a in FIRST_RECORD):
                details = {
                    k: v for k, v in draft.details.items() if k not in ("mime", "metadata_sha256")
                }
                return Draft(action="sighting", item=item, details=details)
            ingested_now.add(item)
            if draft.metadata is None:  # metadata stored by a crashed or concurrent run
                stored = self.archive.ledger.metadata(item)
                details = dict(draft.details)
                if stored is not None:
                    details["metadata_sha256"] = _sha256_hex(stored)
                    details["mime"] = canonical.decode(stored).get("mime")
                    return Draft(action="ingest", item=item, details=details)
                doc = canonical.encode(self._read_metadata(item))
                details["metadata_sha256"] = _sha256_hex(doc)
                details["mime"] = canonical.decode(doc).get("mime")
                return Draft(action="ingest", item=item, details=details, metadata=doc)
            return draft

        signed = self.archive.append(
            self.key, [p.draft for p in pending], decide=decide, check_signer=False
        )
        for p, s in zip(pending, signed, strict=True):
            e = s.entry()
            p.result.status = "new" if e.action == "ingest" else "present"
            p.result.seq = e.seq
            if p.result.mime is None:
                p.result.mime = e.details.get("mime")
            self.report.files.append(p.result)
            self.on_file(p.result)
        self._batch_started = time.monotonic()


class _Counting:
    """Passes reads through and reports how many bytes went by (for the progress bar)."""

    def __init__(self, raw: Any, on_bytes: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_bytes = on_bytes

    def readinto(self, buf: Any) -> int:
        n = self._raw.readinto(buf)
        if n:
            self._on_bytes(n)
        return n


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
