"""Logged access to evidence content: the one path through which custody hands out an item's bytes.

Every reader first appends a signed `access` entry (who, why, where to), and only then opens the
object, verifying its SHA-256 as it is read. Nothing else in custody opens an object for reading.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.core import entry as entries
from custody.core.signing import SigningKey
from custody.errors import CustodyError, NotFound, NotPermitted, StatementRefused, UsageError
from custody.ops.archive import Archive, Draft
from store.ports import CHUNK, ObjectReader

KINDS = ("get", "export", "report", "derive")


@contextmanager
def content(
    archive: Archive, key: SigningKey, item: str, purpose: str, kind: str, destination: str | None,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[ObjectReader]:
    """A verifying reader of `item`, opened only after its access entry is committed. `extra`
    adds members to the entry's details (an export's `format`, docs/FORMAT.md §5.4)."""
    if not purpose or not purpose.strip():
        raise UsageError("reading evidence content needs a stated purpose (--purpose TEXT)")
    if kind not in KINDS:
        raise ValueError(f"unknown access kind {kind!r}")
    archive.authorize(key, "access", item=item, attempted=kind, purpose=purpose)
    if not archive.ledger.rows_for_item(item):
        raise NotFound(f"no item {item} in this archive")
    archive.unlock(key)  # a sealed archive: the reader's content key, before anything is logged
    details: dict[str, Any] = {"purpose": purpose.strip(), "kind": kind, "destination": destination}
    details.update(extra or {})
    archive.append(key, [Draft("access", item, details)], attempted=kind, purpose=purpose)
    with archive.objects.open(item) as reader:
        yield reader


def contents(
    archive: Archive, key: SigningKey, items: Sequence[str], purpose: str, kind: str,
    destination: str | None,
) -> Generator[tuple[str, ObjectReader], None, None]:
    """Each of `items` with a verifying reader of it, in order, for one reading of many items
    (an export): every item's access entry is committed first, all in ONE transaction (one
    fsync, not one per item), before the first object is opened; each reader is open only while
    its item is being consumed. The entries are the ones `content` would append, item by item."""
    if not purpose or not purpose.strip():
        raise UsageError("reading evidence content needs a stated purpose (--purpose TEXT)")
    if kind not in KINDS:
        raise ValueError(f"unknown access kind {kind!r}")
    if not items:
        return
    archive.authorize(key, "access", item=items[0], attempted=kind, purpose=purpose)
    for item in items:
        if not archive.ledger.rows_for_item(item):
            raise NotFound(f"no item {item} in this archive")
    archive.unlock(key)  # a sealed archive: the reader's content key, before anything is logged
    details: dict[str, Any] = {"purpose": purpose.strip(), "kind": kind, "destination": destination}
    archive.append(key, [Draft("access", item, dict(details)) for item in items],
                   attempted=kind, purpose=purpose)
    for item in items:
        with archive.objects.open(item) as reader:
            yield item, reader


def logged_at(archive: Archive, seq: int, item: str, actor: str, kind: str, purpose: str
              ) -> bool:
    """Whether entry `seq` of the log is an access entry about `item` by `actor`, of `kind`, for
    `purpose`: one named entry, not any earlier one with the same purpose (a web export binds
    its package to the access its own step 1 appended, docs/WEB.md "Exporting a package")."""
    row = archive.ledger.row(seq)
    if row is None or row.item != item:
        return False
    e = entries.parse(row.body)
    return (e.seq == seq and e.action == "access" and e.item == item and e.actor == actor
            and e.details.get("kind") == kind and e.details.get("purpose") == purpose.strip())


def contents_logged(
    archive: Archive, items: Sequence[str], accesses: Sequence[int], actor: str, kind: str,
    purpose: str,
) -> Generator[tuple[str, ObjectReader], None, None]:
    """As `contents`, for a reading whose access entries are already in the log, appended from
    the reader's own signed statements (a web export, docs/WEB.md): `accesses[i]` is the seq of
    the entry that logged the reading of `items[i]`. Refused (NotPermitted) before any object is
    opened unless each is such an entry by `actor` (`logged_at`)."""
    if len(accesses) != len(items):
        raise NotPermitted("every item read needs its own logged access entry")
    for item, seq in zip(items, accesses, strict=True):
        if not logged_at(archive, seq, item, actor, kind, purpose):
            raise NotPermitted(f"entry {seq} is not a {kind} access to item {item[:16]} by "
                               f"{actor} for this purpose: it must be logged before any byte "
                               "is read")
    for item in items:
        with archive.objects.open(item) as reader:
            yield item, reader


@dataclass(frozen=True, slots=True)
class Copied:
    """A logged, verified copy of an item's content written to `path`."""

    item: str
    path: str
    size: int
    purpose: str

    def to_json(self) -> dict[str, Any]:
        return {"item": self.item, "path": self.path, "size": self.size, "purpose": self.purpose}


def get(archive: Archive, key: SigningKey, item: str, purpose: str, output: Path) -> Copied:
    """Copy an item's content to `output` (never over an existing file), verified as it is copied.

    The copy is written beside `output` under a temporary name and renamed into place only once
    the whole content has hashed to the item's SHA-256: a corrupt object never reaches `output`
    (ObjectCorrupt, or ObjectMissing, is said by custody/ops/backends.py like every store error).
    """
    output = Path(output)
    if output.exists() or output.is_symlink():
        raise CustodyError(f"{output} already exists; refusing to overwrite it")
    if not output.parent.is_dir():
        raise NotFound(f"no folder {output.parent} to write {output.name} into")
    partial = output.with_name(f".{output.name}.custody-partial")
    size = 0
    try:
        with (
            content(archive, key, item, purpose, "get", str(output.absolute())) as reader,
            open(partial, "xb") as out,
        ):
            while chunk := reader.read(CHUNK):
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.link(partial, output)  # fails rather than replace a file that appeared meanwhile
    except FileExistsError:
        raise CustodyError(f"{output} appeared while copying; left it alone") from None
    finally:
        partial.unlink(missing_ok=True)
    return Copied(item, str(output), size, purpose.strip())


def content_for_statement(
    archive: Archive, item: str, signed: entries.SignedStatement,
) -> ObjectReader:
    """A verifying reader of `item` for a reader away from the archive (`custody serve`): their
    signed `access` statement for this item (kind `get`, with a purpose) is appended first
    (`Archive.append_statement`: refused whole if it is not theirs, beyond their role or a
    replay), and only then is the object opened. The caller closes the reader."""
    try:
        statement = signed.statement()
    except entries.MalformedEntry as exc:
        raise StatementRefused(f"statement refused: {exc}") from None
    purpose = statement.details.get("purpose")
    if statement.action != "access" or statement.item != item:
        raise StatementRefused(f"statement refused: a read of item {item[:16]} needs an "
                               "'access' statement about that item")
    if statement.details.get("kind") != "get":
        raise StatementRefused("statement refused: the access statement of a download has kind "
                               "'get'")
    if not isinstance(purpose, str) or not purpose.strip():
        raise UsageError("reading evidence content needs a stated purpose")
    if not archive.ledger.rows_for_item(item):
        raise NotFound(f"no item {item} in this archive")
    archive.append_statement(signed)
    return archive.objects.open(item)
