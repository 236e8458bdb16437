"""`custody derive`: a new item made from another (redacted, stripped, trimmed, transcoded, a
still), recorded with its lineage in a signed `derived` entry (docs/DERIVATIVES.md, FORMAT.md
§5.4.1).

Order: the operations are checked against the original's signed metadata (nothing is appended for
bad input); an `access` entry is committed; the original is copied out through the verifying
reader; the supervised worker derives; the result is stored and its metadata read like an ingest;
then one `derived` entry records it. A failure after the access leaves that access (the original
was read) and no item.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

from custody.core import canonical, derivation
from custody.core import entry as entries
from custody.core.chain import FIRST_RECORD
from custody.core.signing import SigningKey
from custody.errors import CustodyError, NotFound, UsageError
from custody.metadata import derive_worker
from custody.ops import access, encryption
from custody.ops.archive import Archive, Draft
from store.ports import CHUNK, LedgerTransaction

ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height when displayed


class DerivationFailed(CustodyError):
    """The tool could not make the derivative (ffmpeg failed, the worker timed out or died)."""


@dataclass(frozen=True, slots=True)
class Derived:
    """A derivative as recorded: `status` is `new`, or `present` when identical content was
    already recorded (a derivation repeated with the same tools gives the same bytes)."""

    item: str
    original: str
    status: str
    seq: int | None
    access_seq: int | None
    size: int
    mime: str | None
    operations: list[dict[str, Any]]
    tools: dict[str, str]
    commands: list[list[str]]

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.item, "original": self.original, "status": self.status,
                "seq": self.seq, "access": self.access_seq, "size": self.size, "mime": self.mime,
                "operations": self.operations, "tools": self.tools, "commands": self.commands}


class _AlreadyRecorded(Exception):
    """Under the lock: the derivative's content has a first record already (rolls back)."""


def derive(
    archive: Archive, key: SigningKey, reader: Any, original: str, purpose: str,
    operations: list[dict[str, Any]], *, case: str | None = None,
) -> Derived:
    """Make, store and record one derivative of `original` (an item's SHA-256)."""
    if not purpose or not purpose.strip():
        raise UsageError("a derivative needs a stated purpose (--purpose TEXT)")
    if case is not None and not case.strip():
        raise UsageError("--case must not be empty")
    archive.authorize(key, "derived", item=original, attempted="derive", purpose=purpose)
    if not archive.ledger.recorded(original):
        raise NotFound(f"no item {original} in this archive")
    archive.unlock(key)  # a sealed archive: the original is read opened (FORMAT.md §12.3)
    kind, container = _check_against_original(archive, original, operations)
    with tempfile.TemporaryDirectory(prefix="custody-derive-",
                                     dir=encryption.working_folder(archive)) as folder:
        work = Path(folder)
        copy = work / "original"
        with access.content(archive, key, original, purpose, "derive", None) as content, \
                open(copy, "xb") as out:
            shutil.copyfileobj(content, out, CHUNK)  # the reader verifies the SHA-256
        access_seq = _latest_access(archive, key, original)
        try:
            made = derive_worker.derive(copy, work, operations, kind, container)
        except derive_worker.Refused as refused:
            raise DerivationFailed(f"{refused}; nothing was stored (the access was recorded)",
                                   hint="") from None
        return _record(archive, key, reader, original, purpose.strip(), operations, made,
                       access_seq, case)


def _check_against_original(
    archive: Archive, original: str, ops: list[dict[str, Any]]
) -> tuple[str, str]:
    """The original's kind and container, once the operations are known to fit it (from its
    signed metadata document; the worker checks again on the bytes)."""
    raw = encryption.open_document(archive.content_key, archive.ledger.metadata(original))
    doc: dict[str, Any] = json.loads(raw) if raw else {}
    kind = str(doc.get("kind") or "")
    problem = derivation.kind_problem(ops, kind)
    if problem is not None:
        raise UsageError(problem)
    container = "mov" if doc.get("mime") == "video/quicktime" else "mp4"
    size = doc.get("dimensions")
    if kind == "image" and isinstance(size, dict):
        width, height = size.get("width"), size.get("height")
        if isinstance(width, int) and isinstance(height, int):
            if doc.get("orientation") in ROTATED:
                width, height = height, width
            problem = derivation.boxes_outside(ops, width, height)
    duration = doc.get("duration_s")
    if kind == "video" and isinstance(duration, (int, float)) and problem is None:
        problem = _outside_video(ops, Decimal(str(duration)))
    if problem is not None:
        raise UsageError(problem)
    return kind, container


def _outside_video(ops: list[dict[str, Any]], duration: Decimal) -> str | None:
    # The document's duration may be rounded (ExifTool gives whole seconds for some files): a
    # second's margin here, the exact check in the worker on the bytes.
    for op in ops:
        if op["op"] == "trim" and (Decimal(op["start"]) >= duration + 1
                                   or Decimal(op["end"]) > duration + 1):
            return f"--trim {op['start']}-{op['end']} is not inside the video ({duration} s long)"
        if op["op"] == "still" and Decimal(op["at"]) >= duration + 1:
            return f"--still {op['at']} is not inside the video ({duration} s long)"
    return None


def _name(archive: Archive, original: str, fmt: str) -> str:
    """The name custody gives a derivative: the original's first name with `.derived.<format>`
    (so exports and reports have a file name), else its SHA-256's first 16 digits."""
    for row in archive.ledger.rows_for_item(original):
        source = entries.parse(row.body).details.get("source")
        name = source.get("name") if isinstance(source, dict) else None
        if isinstance(name, str) and name:
            return f"{PurePosixPath(name).stem or original[:16]}.derived.{fmt}"
    return f"{original[:16]}.derived.{fmt}"


def _latest_access(archive: Archive, key: SigningKey, item: str) -> int:
    rows = [r for r in archive.ledger.rows_for_item(item)
            if r.action == "access" and r.actor == key.key_id]
    return rows[-1].seq


def _record(
    archive: Archive, key: SigningKey, reader: Any, original: str, purpose: str,
    ops: list[dict[str, Any]], made: derive_worker.Derivation, access_seq: int,
    case: str | None,
) -> Derived:
    with open(made.path, "rb") as stream:
        put = archive.objects.put(stream)
    digests = put.digests
    item = digests.sha256

    def result(status: str, seq: int | None, mime: str | None) -> Derived:
        return Derived(item, original, status, seq, access_seq, digests.size, mime, ops,
                       made.tools, made.commands)

    if archive.ledger.recorded(item):
        return result("present", None, None)
    with archive.objects.local_file(item) as path:
        doc: dict[str, Any] = reader.read(path)
    try:
        metadata = canonical.encode(doc)
    except ValueError as exc:  # as ingest: keep the file, record why
        doc = {"mime": doc.get("mime"), "errors": [*doc.get("errors", []),
                                                    f"metadata not encodable: {exc}"]}
        metadata = canonical.encode(doc)
    details: dict[str, Any] = {
        "digests": {k: v for k, v in digests.as_dict().items() if k != "size"},
        "size": digests.size,
        "mime": doc.get("mime"),
        "metadata_sha256": hashlib.sha256(metadata).hexdigest(),
        "original": original,
        "source": {"name": _name(archive, original, made.format)},
        "access": access_seq,
        "purpose": purpose,
        "operations": ops,
        "tools": made.tools,
        "commands": made.commands,
        "output": {"format": made.format},
        "case": case.strip() if case is not None else None,
    }
    if put.replaced is not None:
        details["replaced"] = {"kept_at": put.replaced.path, "sha256": put.replaced.sha256,
                               "size": put.replaced.size}

    def decide(writer: LedgerTransaction, draft: Draft) -> Draft:
        if any(writer.has_action(item, a) for a in FIRST_RECORD):
            raise _AlreadyRecorded
        found = writer.metadata(item)
        if found is not None and found != metadata:  # unsigned: set aside, as ingest does
            return Draft("derived", item, dict(draft.details,
                         metadata_set_aside=hashlib.sha256(found).hexdigest()), metadata)
        return draft

    try:
        signed = archive.append(key, [Draft("derived", item, details, metadata)], decide=decide,
                                attempted="derive", purpose=purpose)
    except _AlreadyRecorded:
        return result("present", None, None)
    return result("new", signed[0].entry().seq, details["mime"])
