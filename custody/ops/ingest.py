"""Ingest: files and folders into the object store, each with a signed ingest or sighting entry.

Write order per batch: every object is stored and fsynced first, then all the batch's entries are
committed in one transaction. A crash in between leaves only unreferenced objects, never an entry
without its object.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from queue import Queue
from typing import Any, BinaryIO, cast

from custody.core import canonical
from custody.core.chain import FIRST_RECORD
from custody.core.signing import SigningKey
from custody.errors import ArchiveError, CustodyError, DiskFull, NotFound, UsageError
from custody.ops import dryrun, resume
from custody.ops.archive import Archive, Draft
from custody.ops.sidecars import Linker
from custody.search.similar import LookAlikes
from store.ports import LedgerTransaction, ObjectWriteError, SetAside, StoreFull

BATCH_FILES = 64  # entries committed together; one fsync of the ledger per batch
BATCH_SECONDS = 2.0  # …or sooner, so a long ingest never holds many uncommitted files


@dataclass(frozen=True, slots=True)
class Found:
    """A file to ingest, as the filesystem claims it was."""

    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class Claims:
    """What the file system, an uploader or a dump's header says of a file, recorded in its
    entry's `source` as claims, not truth: its original name, the path it was read from, its
    modification time (RFC 3339), and a capture time the uploader claims. A dump's member also
    names the dump's SHA-256 (`container`), its path inside it (`member`) and a zip's DOS time
    (`mtime_local`, offset unknown); `container_shown` is how the dump's path is shown. Only what
    is given is recorded."""

    name: str
    path: str | None = None
    mtime: str | None = None
    captured_at: str | None = None
    container: str | None = None
    member: str | None = None
    mtime_local: str | None = None
    container_shown: str = ""

    def check(self) -> None:
        """Refuse claims a sender got wrong (the file system's are recorded as they come)."""
        if not self.name:
            raise UsageError("a stream to ingest needs the name it was sent under")
        for what, value in (("mtime", self.mtime), ("captured_at", self.captured_at)):
            if value is not None and not _is_rfc3339(value):
                raise UsageError(f"claimed {what} {value[:40]!r} is not an RFC 3339 time")

    def to_json(self) -> dict[str, str]:
        out = claimed_name(self.name, "name")
        if self.container is not None and self.member is not None:
            out.update(container=self.container, member=self.member)
        if self.path is not None:
            out.update(claimed_name(self.path, "path"))
        for key in ("mtime", "mtime_local", "captured_at"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        return out

    def shown(self) -> str:
        if self.member is not None:
            return f"{self.container_shown}!{self.member}"
        return shown(self.path if self.path is not None else self.name)


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
    replaced: str | None = None  # where a damaged file found at the object's name was kept
    member: dict[str, str] | None = None  # {"container", "member"}: unpacked from a dump
    looks_like: list[dict[str, Any]] | None = None  # near-duplicates held (docs/SIMILAR.md)
    sidecar: dict[str, Any] | None = None  # a proof file beside another: its link and checks

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
            "replaced": self.replaced,
            "member": self.member,
            "looks_like": self.looks_like,
            "sidecar": self.sidecar,
        }


@dataclass(slots=True)
class IngestReport:
    batch: str
    files: list[FileResult] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)  # dump members not unpacked
    dry_run: bool = False
    deferred: list[str] = field(default_factory=list)  # first ingests left for enrichment
    enriched: int = 0  # of those, how many this run enriched (ingest --enrich)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "files": [f.to_json() for f in self.files],
            "skipped": self.skipped,
            "refused": self.refused,
            "dry_run": self.dry_run,
            # ExifTool's full reading left for `custody enrich` (docs/METADATA.md "The fast path")
            "enrichment": {"deferred": len(self.deferred), "enriched": self.enriched},
            "summary": {
                "new": self.count("new"),
                "present": self.count("present"),
                "failed": self.count("failed"),
                "skipped": len(self.skipped),
                "bytes": sum(f.size or 0 for f in self.files if f.status != "failed"),
                # docs/CLI.md: "unchanged" was recorded before from the same source, nothing added
                "unchanged": self.count("unchanged"),
                "junk": sum(s.get("selected") == "junk" for s in self.skipped),
                "excluded": sum(s.get("selected") == "excluded" for s in self.skipped),
                "refused": len(self.refused),
            },
        }


def find_files(paths: list[Path], skipped: list[dict[str, str]]) -> list[Found]:
    """Every regular file under `paths`, sorted; symlinked folders and special files are skipped
    (and said so), so a walk can neither loop nor block on a FIFO."""
    missing = [shown(p) for p in paths if not os.path.lexists(p)]
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
        skipped.append({"path": shown(top), "reason": "no such file (a dangling link?)"})
        return
    except OSError as exc:  # could not be read: not a choice, so ingest exits non-zero
        skipped.append(
            {"path": shown(top), "reason": exc.strerror or str(exc), "unreadable": "yes"}
        )
        return
    if stat.S_ISREG(st.st_mode):
        yield Found(top, st.st_size)
    elif stat.S_ISDIR(st.st_mode):
        if top.is_symlink():
            skipped.append({"path": shown(top), "reason": "symbolic link to a folder"})
            return
        try:
            children = sorted(top.iterdir())
        except OSError as exc:
            skipped.append({"path": shown(top), "reason": exc.strerror or str(exc),
                            "unreadable": "yes"})
            return
        for child in children:
            yield from _walk(child, skipped)
    else:
        skipped.append({"path": shown(top), "reason": f"not a regular file ({_kind(st.st_mode)})"})


def shown(path: str | os.PathLike[str]) -> str:
    """A path as text that can be printed and signed: undecodable bytes become `\\xNN`."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def claimed_name(path: str | os.PathLike[str], key: str) -> dict[str, str]:
    """`{key: text}` for a name or path the file system gave; a name that is not UTF-8 is kept
    losslessly: shown with `\\xNN` escapes, and its exact bytes in `<key>_b64` (docs/FORMAT.md)."""
    raw = os.fsencode(path)
    try:
        return {key: raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {key: shown(path), f"{key}_b64": base64.b64encode(raw).decode("ascii")}


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "a special file"


def _open_regular(path: Path) -> tuple[Any, os.stat_result] | str:
    """The file opened for reading with its fstat, or why it is not a regular file. O_NONBLOCK: a
    FIFO put in its place after the walk must not block the ingest in open()."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a device with nothing behind it)
            return "not a regular file when opened (a socket or an absent device)"
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return f"not a regular file when opened ({_kind(st.st_mode)})"
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), st


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


def _is_rfc3339(text: str) -> bool:
    """An RFC 3339 date-time (a claim may keep the offset its sender gave)."""
    if not _RFC3339.fullmatch(text):
        return False
    try:  # the fields in range (no month 13); fractions beyond microseconds are not Python's
        datetime.fromisoformat(re.sub(r"\.(\d{1,6})\d*", r".\1", text).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_Reading = tuple[dict[str, Any], bytes]  # a metadata document and its RFC 8785 bytes


@dataclass(slots=True)
class _Pending:
    result: FileResult
    draft: Draft
    metadata: Future[_Reading] | None = None  # being read while later files are stored
    document: dict[str, Any] | None = None  # the metadata read, kept for the look-alike check

    def settle(self) -> None:
        """Fold the finished metadata document into the draft (before the batch commits)."""
        if self.metadata is None:
            return
        reading = self.metadata.result()
        self.metadata = None
        self.fold(reading)

    def fold(self, reading: _Reading) -> None:
        doc, body = reading
        details = dict(self.draft.details, mime=doc.get("mime"), metadata_sha256=_sha256_hex(body))
        if doc.get("deferred"):  # the fast path: signed here, so enrich finds it from the log
            details["metadata_deferred"] = list(doc["deferred"])
        self.draft = Draft(self.draft.action, self.draft.item, details, metadata=body)
        self.result.mime = doc.get("mime")
        self.result.metadata_errors = list(doc.get("errors", []))
        self.document = doc


class _NeedsMetadata(Exception):
    """Raised under the write lock for a first ingest whose metadata was not read: the batch
    rolls back, the document is read with the lock released, and the batch is tried again."""

    def __init__(self, draft: Draft) -> None:
        super().__init__(draft.item)
        self.draft = draft


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
        on_skip: Callable[[dict[str, str]], None] | None = None,
        expand: Callable[[Ingest, FileResult, Found], None] | None = None,
        dry_run: bool = False,
        fast: bool = False,
    ) -> None:
        self.archive = archive
        # The metadata fast path (ExifTool read later, in an `enriched` entry); not in a sealed
        # archive, whose entries seal what they carry (docs/METADATA.md "The fast path").
        self.fast = fast and archive.sealer is None
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
        self.on_skip = on_skip or (lambda _s: None)
        self.report = IngestReport(batch=str(uuid.uuid4()), dry_run=dry_run)
        self.expand = expand  # after a file is added: e.g. a dump's members (package/dumps.py)
        self.dry_run = dry_run  # hash and classify only: no object, entry or metadata row
        self._pending: list[_Pending] = []
        self._batch_started = time.monotonic()
        self.look_alikes = LookAlikes(archive)
        self._sidecars: Linker | None = None  # proof files beside others (ops/sidecars.py)

    def run(self, files: list[Found]) -> IngestReport:
        """Ingest files found by a walk: each is opened and given to `add` with what the file
        system claims of it (name, path, mtime)."""
        self._begin()
        # Sidecars after the files they are about, so that those digests are known by then.
        linker = self._sidecars = Linker([f.path.absolute() for f in files])
        files = sorted(files, key=lambda f: linker.depth(f.path.absolute()))
        try:
            for i, found in enumerate(files):
                left = i  # the first file not recorded if this one stops the run
                try:
                    added = self._one(found)
                    if added is not None and self.expand is not None:
                        left = i + 1  # the file itself is pending or recorded already
                        self.expand(self, added, found)
                except ObjectWriteError as exc:
                    # What is already stored is whole: record it, if the ledger still has room.
                    with suppress(ArchiveError):
                        self._commit()
                    full = isinstance(exc, StoreFull)
                    why = "the disk holding the archive is full" if full else str(exc)
                    raise self._stopped(why, files[left:], full) from None
                self.commit_if_due(files[i + 1 :])
            self._commit_or_stop([])
        finally:
            self._pool.shutdown()
            self._end_batch()
        return self.report

    def _end_batch(self) -> None:
        if hasattr(self.archive.objects, "end_batch"):
            self.archive.objects.end_batch()

    def run_stream(self, stream: BinaryIO, claims: Claims) -> FileResult:
        """Ingest one stream (an upload): stored, its metadata read, its entry committed."""
        claims.check()
        self._begin()
        try:
            try:
                result = self.add(stream, claims)
            except ObjectWriteError as exc:
                full = isinstance(exc, StoreFull)
                why = "the disk holding the archive is full" if full else str(exc)
                raise self._stopped(why, [], full, claims.shown()) from None
            except OSError as exc:  # the stream itself failed (a dropped upload): nothing kept
                raise CustodyError(f"{claims.shown()} could not be read: "
                                   f"{exc.strerror or exc}; nothing was recorded") from None
            self._commit_or_stop([])
        finally:
            self._pool.shutdown()
            self._end_batch()
        return result

    def commit_if_due(self, rest: list[Found] | None = None) -> None:
        """Commit the batch once it holds BATCH_FILES files or is BATCH_SECONDS old."""
        if (
            len(self._pending) >= BATCH_FILES
            or time.monotonic() - self._batch_started >= BATCH_SECONDS
        ):
            self._commit_or_stop(rest or [])

    def _begin(self) -> None:
        if self.case is not None and not self.case.strip():
            raise UsageError("--case must not be empty")
        if self.dry_run:  # an early answer only; it would record a refusal
            return
        self.archive.authorize(self.key, "ingest")  # early: the lock decides again per batch
        # The local store fsyncs and links a batch's objects together, just before its entries
        # commit (store/local_objects.py `flush`); other stores keep their own write order.
        if hasattr(self.archive.objects, "begin_batch"):
            self.archive.objects.begin_batch()
        # The first worker starts while the first file is stored; the next one only when two
        # files wait to be read (one file never pays for two start-ups on a 2-core machine).
        first = self._readers.queue[0] if self._readers.queue else None
        if first is not None and hasattr(first, "start"):
            self._pool.submit(first.start)

    def _commit_or_stop(self, rest: list[Found]) -> None:
        try:
            self._commit()
        except DiskFull:
            raise self._stopped("the disk holding the archive is full", rest, True) from None
        except ObjectWriteError as exc:  # the batch's objects could not be flushed
            full = isinstance(exc, StoreFull)
            why = "the disk holding the archive is full" if full else str(exc)
            raise self._stopped(why, rest, full) from None
        except ArchiveError as exc:
            raise self._stopped(exc.message, rest, False) from None

    def _stopped(
        self, why: str, rest: list[Found], full: bool, stream: str | None = None
    ) -> CustodyError:
        """One line saying what was not recorded: the uncommitted batch and every file after it.
        Their objects may stay stored (whole, never partial); a later ingest records them."""
        left = [p.result.path for p in self._pending] + [shown(f.path) for f in rest]
        left += [stream] if stream is not None else []
        recorded = self.report.count("new") + self.report.count("present")
        what = left[0] + (f" and {len(left) - 1} file(s) after it" if len(left) > 1 else "")
        message = (
            f"{why}: nothing was recorded for {what if left else 'the last files'}; "
            f"{recorded} file(s) before were stored and recorded"
        )
        hint = "free space, then ingest the same paths again" if full else ""
        return (DiskFull if full else ArchiveError)(message, hint=hint)

    def _one(self, found: Found) -> FileResult | None:
        result = FileResult(path=shown(found.path), status="failed")
        try:
            opened = _open_regular(found.path)
            if isinstance(opened, str):  # not a regular file any more: not evidence of anything
                skip = {"path": result.path, "reason": opened}
                self.report.skipped.append(skip)
                self.on_skip(skip)
                return None
            stream, st = opened
            claims = Claims(name=found.path.name, path=str(found.path.absolute()),
                            mtime=_rfc3339(st.st_mtime))
            with stream:
                return self.add(stream, claims, shown_as=result.path)
        except OSError as exc:  # the source could not be read (writes raise ObjectWriteError)
            result.error = exc.strerror or str(exc)
            self.report.files.append(result)
            self.on_file(result)
        return None

    def add(
        self, stream: BinaryIO, claims: Claims, *, shown_as: str | None = None,
        linked_as: tuple[Linker, PurePath] | None = None,
    ) -> FileResult:
        """Store one stream and queue its entry for the next batch (its metadata is read while
        later files are stored). The result is filled in once the batch commits. `linked_as`: the
        sidecar pairing a stream without a `path` belongs to and its key there (a dump's member:
        package/dumps.py); a file of the walk is paired by its path in the run's own."""
        result = FileResult(path=shown_as or claims.shown(), status="failed")
        # put only calls readinto, which _Counting passes through
        counted = cast(BinaryIO, _Counting(stream, self.on_bytes))
        put = dryrun.hashed(counted) if self.dry_run else self.archive.objects.put(counted)
        digests = put.digests
        result.sha256, result.size = digests.sha256, digests.size
        details: dict[str, Any] = {
            "digests": {k: v for k, v in digests.as_dict().items() if k != "size"},
            "size": digests.size,
            "source": claims.to_json(),  # what the filesystem or uploader claimed: not truth
            "case": self.case,
            "note": self.note,
            "batch": self.report.batch,
        }
        if put.replaced is not None:
            details["replaced"] = replaced_details(put.replaced)
            result.replaced = details["replaced"]["kept_at"]
        if linked_as is None and self._sidecars is not None and claims.path is not None:
            linked_as = (self._sidecars, Path(claims.path))
        if linked_as is not None:
            linker, key = linked_as
            linker.stored(key, dict(details["digests"]))
            if not self.dry_run:  # its checks read the stored sidecar
                result.sidecar = linker.link(key, self.archive.objects)
            if result.sidecar is not None:
                details["sidecar"] = result.sidecar
        if put.replaced is None and (earlier := resume.recorded_before(
                self.archive.ledger, self.key.key_id, digests.sha256, details)) is not None:
            result.status, result.seq = "unchanged", earlier  # nothing new to sign
            self.report.files.append(result)
            self.on_file(result)
            return result
        reading = None
        if not self.dry_run and not self._recorded_or_being_read(digests.sha256):
            reading = self._pool.submit(self._read_metadata, digests.sha256)
        draft = Draft(action="ingest", item=digests.sha256, details=details)
        self._pending.append(_Pending(result, draft, reading))
        return result

    def _recorded_or_being_read(self, sha256: str) -> bool:
        """True if this content needs no metadata reading: it is recorded already (this file will
        be a sighting) or an earlier file of this run is being read for it. A metadata row alone
        never counts: nothing signed vouches for it."""
        if any(p.draft.item == sha256 and (p.metadata or p.draft.metadata)
               for p in self._pending):
            return True
        return self.archive.ledger.recorded(sha256)

    def _read_metadata(self, sha256: str) -> _Reading:
        """Metadata of the stored object (what is parsed is exactly what is kept), and its
        canonical bytes (encoded here, on the reading thread, once)."""
        reader = self._readers.get()
        try:
            with self.archive.objects.local_file(sha256) as path:
                doc: dict[str, Any] = reader.read(path, fast=True) if self.fast else reader.read(
                    path)
        finally:
            self._readers.put(reader)
        try:
            return doc, canonical.encode(doc)
        except ValueError as exc:  # e.g. a NaN from a reader: keep the file, record why
            doc = {
                "mime": doc.get("mime"),
                "errors": [*doc.get("errors", []), f"metadata not encodable: {exc}"],
            }
            return doc, canonical.encode(doc)

    def _commit(self) -> None:
        if not self._pending:
            self._batch_started = time.monotonic()
            return
        pending = self._pending
        if self.dry_run:
            self._pending = []
            new_so_far = {f.sha256 for f in self.report.files if f.status == "new"}
            dryrun.classify(self.archive.ledger, [p.result for p in pending], new_so_far)
            for p in pending:
                self.report.files.append(p.result)
                self.on_file(p.result)
            self._batch_started = time.monotonic()
            return
        for p in pending:
            p.settle()  # every reading finishes before the write lock is taken
        if hasattr(self.archive.objects, "flush"):
            self.archive.objects.flush()  # the batch's objects durable and in place: then entries
        while True:
            try:
                signed = self.archive.append(
                    self.key, [p.draft for p in pending], decide=self._decider(),
                    attempted="ingest",
                )
                break
            except _NeedsMetadata as need:
                # No child process ever runs under the write lock (the reader may take its
                # whole time limit): read it now, unlocked, and try the batch again.
                late = next(p for p in pending if p.draft is need.draft)
                late.fold(self._read_metadata(need.draft.item or ""))
        self._pending = []  # committed: only now is each file reported as stored
        for p, s in zip(pending, signed, strict=True):
            e = s.entry()
            p.result.status = "new" if e.action == "ingest" else "present"
            p.result.seq = e.seq
            if p.result.mime is None:
                p.result.mime = e.details.get("mime")
            if e.action == "ingest" and e.details.get("metadata_deferred"):
                self.report.deferred.append(e.item or "")
            if e.action == "ingest":
                p.result.looks_like = self.look_alikes.check(e.item or "", p.document,
                                                             p.result.mime)
            self.report.files.append(p.result)
            self.on_file(p.result)
        self._batch_started = time.monotonic()

    def _decider(self) -> Callable[[LedgerTransaction, Draft], Draft]:
        """What runs under the write lock for each draft: it only reads the transaction and
        decides, a first ingest or a sighting; it never reads a file or starts a process."""
        ingested_now: set[str] = set()

        def decide(writer: LedgerTransaction, draft: Draft) -> Draft:
            # A second copy of content already ingested (by this run or by a concurrent one)
            # becomes a sighting and stores no second metadata doc.
            item = draft.item or ""
            if item in ingested_now or any(writer.has_action(item, a) for a in FIRST_RECORD):
                details = {k: v for k, v in draft.details.items()
                           if k not in ("mime", "metadata_sha256", "metadata_deferred")}
                return Draft(action="sighting", item=item, details=details)
            if draft.metadata is None:  # its reading was skipped as recorded elsewhere
                raise _NeedsMetadata(draft)
            ingested_now.add(item)
            found = writer.metadata(item)
            if found is not None and found != draft.metadata:
                # A row no entry signed (planted: rows are written only with their entry). It is
                # never signed as extracted: set aside (kept) by put_metadata, named here.
                details = dict(draft.details, metadata_set_aside=_sha256_hex(found))
                draft = Draft("ingest", item, details, metadata=draft.metadata)
            return draft

        return decide


def ingest_stream(
    archive: Archive,
    key: SigningKey,
    reader: Any,
    stream: BinaryIO,
    claims: Claims,
    *,
    case: str | None = None,
    note: str | None = None,
) -> FileResult:
    """Ingest one binary stream (what an upload service receives) with what its sender claims
    of it: the same store, metadata reading, decisions and entry as a file given by path."""
    return Ingest(archive, key, reader, case=case, note=note).run_stream(stream, claims)


class _Counting:
    """Passes reads through and reports how many bytes went by (for the progress bar)."""

    def __init__(self, raw: Any, on_bytes: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_bytes = on_bytes

    def readinto(self, buf: Any) -> int:
        n: int | None
        if hasattr(self._raw, "readinto"):
            n = self._raw.readinto(buf)
        else:  # a stream offering only read() (some upload wrappers)
            chunk = self._raw.read(len(buf))
            n = len(chunk)
            buf[:n] = chunk
        if n is None:  # a non-blocking stream with nothing yet: never mistaken for its end
            raise OSError(errno.EAGAIN, "the stream has no data ready (it must be blocking)")
        if n:
            self._on_bytes(n)
        return n


def replaced_details(aside: SetAside) -> dict[str, Any]:
    """What was at the object's name and where it is kept (docs/FORMAT.md, `replaced`)."""
    return {"kept_at": aside.path, "sha256": aside.sha256, "size": aside.size}


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
