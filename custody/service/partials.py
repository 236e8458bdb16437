"""Partial uploads on disk: the upload folder, outside the object store (docs/SERVICE.md).

Each upload is two files: `<id>.json` (who created it, its length, its durable offset, the signed
statement, when it expires, how it ended) replaced atomically, and `<id>` (the bytes so far; no
suffix, as an object's name has none: ExifTool reads a file it cannot recognise by its name's
extension, so the metadata of the bytes is read under a name that says nothing).
The offset in `<id>.json` is written only after the bytes up to it are fsynced, so a server killed
at any instant resumes at an offset whose bytes are on disk; anything past it is cut off.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from store.durable import fsync_folder

UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
RECEIVING = "receiving"  # states; the others say how it ended: "new", "present", "refused"
REFUSALS = "refusals.jsonl"
COMPLETE = "complete"  # a package upload whose bytes are all here, waiting for its import


@dataclass(frozen=True, slots=True)
class Upload:
    """One upload's record (its `<id>.json`)."""

    id: str
    owner: str  # the key id that created it: nobody else may see or touch it
    length: int
    offset: int
    created: str
    expires: str  # RFC 3339 UTC; a receiving upload past it is swept
    statement: str  # the statement file (docs/FORMAT.md §5.8), as sent
    filename: str | None
    state: str = RECEIVING
    result: dict[str, Any] | None = None  # how it ended: status, sha256, seq or error
    kind: str = "item"  # or "package": a custody package handed in (`custody sync`)
    package_sha256: str | None = None  # a package's SHA-256, as its sender declared it

    def expired(self, now: datetime) -> bool:
        return datetime.fromisoformat(self.expires.replace("Z", "+00:00")) <= now


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class UploadFolder:
    """The folder of partial uploads; created 0700 on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _ensure(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def info_path(self, upload_id: str) -> Path:
        if not UPLOAD_ID.fullmatch(upload_id):  # never a path of the caller's choosing
            raise ValueError("not an upload id")
        return self.root / f"{upload_id}.json"

    def data_path(self, upload_id: str) -> Path:
        return self.info_path(upload_id).with_suffix("")

    def create(self, *, owner: str, length: int, statement: str, filename: str | None,
               now: datetime, expires: datetime, kind: str = "item",
               package_sha256: str | None = None) -> Upload:
        self._ensure()
        upload = Upload(id=secrets.token_hex(16), owner=owner, length=length, offset=0,
                        created=rfc3339(now), expires=rfc3339(expires), statement=statement,
                        filename=filename, kind=kind, package_sha256=package_sha256)
        fd = os.open(self.data_path(upload.id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        self.save(upload)
        return upload

    def get(self, upload_id: str) -> Upload | None:
        try:
            text = self.info_path(upload_id).read_text()
        except (FileNotFoundError, ValueError):
            return None
        return Upload(**json.loads(text))

    def save(self, upload: Upload) -> None:
        """Replace the record atomically and durably (temp file, fsync, rename, fsync folder)."""
        final = self.info_path(upload.id)
        temp = final.with_suffix(".json.tmp")
        _write_durably(temp, json.dumps(asdict(upload)).encode())
        os.replace(temp, final)
        fsync_folder(self.root)

    def open_at(self, upload: Upload) -> int:
        """The part file opened for writing at the durable offset: whatever a crash left past it
        (bytes never acknowledged) is cut off first."""
        fd = os.open(self.data_path(upload.id), os.O_WRONLY)
        os.ftruncate(fd, upload.offset)
        return fd

    def advance(self, upload: Upload, fd: int, received: int) -> Upload:
        """Make `received` more bytes durable, then record the new offset."""
        os.fsync(fd)
        moved = replace(upload, offset=upload.offset + received)
        self.save(moved)
        return moved

    def end(self, upload: Upload, state: str, result: dict[str, Any]) -> Upload:
        """Record how it ended and drop its bytes (the record stays until it expires)."""
        ended = replace(upload, state=state, result=result)
        self.save(ended)
        self.data_path(upload.id).unlink(missing_ok=True)
        return ended

    def complete(self, upload: Upload, result: dict[str, Any]) -> Upload:
        """A package's bytes all arrived and match its digest: kept until it is imported."""
        done = replace(upload, state=COMPLETE, result=result)
        self.save(done)
        return done

    def remove(self, upload_id: str) -> None:
        self.data_path(upload_id).unlink(missing_ok=True)
        self.info_path(upload_id).unlink(missing_ok=True)
        fsync_folder(self.root)

    def uploads(self) -> Iterator[Upload]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("*.json")):
            if (found := self.get(path.stem)) is not None:
                yield found

    def sweep(self, now: datetime, busy: frozenset[str] = frozenset()) -> list[str]:
        """Remove every upload past its expiry (partial bytes and record) but those `busy` (a
        request is at work on them); their ids."""
        gone = [u.id for u in self.uploads() if u.expired(now) and u.id not in busy]
        for upload_id in gone:
            self.remove(upload_id)
        # A temp record or a part without a record is left by a crash mid-write: drop it too.
        for path in self.root.iterdir() if self.root.is_dir() else ():
            if UPLOAD_ID.fullmatch(path.name) and not path.with_suffix(".json").exists():
                path.unlink(missing_ok=True)
        return gone

    def record_refusal(self, record: dict[str, Any]) -> None:
        """Append one refusal (JSON line, fsynced): what was refused, by whom, and why."""
        self._ensure()
        fd = os.open(self.root / REFUSALS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _write_all(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def refusals(self) -> list[dict[str, Any]]:
        path = self.root / REFUSALS
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_at(fd: int, offset: int, data: bytes) -> None:
    """Write all of `data` at `offset` (pwrite: short writes continued)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
