"""The ports: what the archive needs of an object store and of a ledger, whatever holds them.

Each backend is an adapter that satisfies these Protocols (local folder: store/local_objects.py;
SQLite: store/sqlite_ledger.py) and raises only the errors defined here, so that custody maps each
of them to what a user is told in one place (custody/ops/backends.py). The logical format the
adapters hold is docs/FORMAT.md §2-§9; the local adapters' physical layout is its Appendix A.
Bytes and rows only: what an entry means, and whether its signature holds, is custody's business.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1 << 20  # 1 MiB: the read size of copies and checks (hashlib releases the GIL above 2 KiB)
DIGEST_NAMES = ("sha256", "sha512", "sha1", "md5")


# Errors ---------------------------------------------------------------------------------------


class StoreError(Exception):
    """Base class of every error an adapter raises on purpose (store/ never imports custody)."""


class ObjectError(StoreError):
    """Base class of the object store's errors."""


class ObjectMissing(ObjectError):
    """No object under this name."""


class ObjectCorrupt(ObjectError):
    """The bytes under an object's name do not hash to it (or are no object at all)."""


class ObjectUnreadable(ObjectError):
    """The object is there but cannot be read here (permissions, an I/O error): not checked."""


class ObjectWriteError(ObjectError):
    """The store could not write an object (the source may be fine): nothing was placed."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


class StoreFull(ObjectWriteError):
    """No space (or quota) left where the objects are kept."""


class StoreUnavailable(ObjectUnreadable):
    """A remote object store that cannot be used from here at all: nothing was read or written."""


class StoreUnreachable(StoreUnavailable):
    """The store's endpoint does not answer (wrong address, network down)."""


class StoreAccessDenied(StoreUnavailable):
    """The store refuses these credentials (unknown key, wrong secret, no permission)."""


class BucketMissing(StoreUnavailable):
    """The bucket named does not exist."""


class BucketWithoutLock(StoreUnavailable):
    """The bucket has no Object Lock: its objects could be deleted, so it may not hold evidence."""


class LedgerStoreError(StoreError):
    """Base class of the ledger's errors; raised as such for a write the ledger refused."""


class LedgerFull(LedgerStoreError):
    """No space left where the ledger is kept: the transaction was rolled back, nothing written."""


class LedgerDamaged(LedgerStoreError):
    """The ledger is missing, is no ledger (a foreign file, missing tables), or is damaged."""


class LedgerUnreadable(LedgerStoreError):
    """The ledger exists but cannot be read here (permissions, storage it cannot follow)."""


class LedgerReadOnly(LedgerStoreError):
    """A write to a ledger on storage this process may only read."""


class LedgerUnavailable(LedgerUnreadable):
    """A ledger on a server (PostgreSQL) that cannot be used from here at all: nothing was read or
    written."""


class LedgerUnreachable(LedgerUnavailable):
    """The ledger's database server does not answer (wrong address, server down, network)."""


class LedgerAccessDenied(LedgerUnavailable):
    """The database server refuses these credentials (unknown role, wrong password, no right to
    connect or to read the ledger's tables)."""


class NodeMissing(LedgerDamaged):
    """A Merkle tree node that must be stored (inside the tree) is not: the ledger is damaged."""


# Values ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Digests:
    """Every digest of one object, computed in the single pass that stored it."""

    sha256: str
    sha512: str
    sha1: str
    md5: str
    size: int

    def as_dict(self) -> dict[str, str | int]:
        return {
            "sha256": self.sha256,
            "sha512": self.sha512,
            "sha1": self.sha1,
            "md5": self.md5,
            "size": self.size,
        }


@dataclass(frozen=True, slots=True)
class SetAside:
    """Something found at an object's name that did not hold the object: kept, never deleted."""

    path: str  # where it is kept, as the adapter names it (local: relative to the archive folder)
    sha256: str | None  # what its content hashes to; None if it was no readable regular file
    size: int | None


@dataclass(frozen=True, slots=True)
class Retention:
    """What keeps an object from deletion in its store (S3 Object Lock): `mode` (COMPLIANCE,
    GOVERNANCE) and `retain_until` (RFC 3339 UTC); both None when the object has none."""

    mode: str | None
    retain_until: str | None


@dataclass(frozen=True, slots=True)
class PutResult:
    digests: Digests
    created: bool  # False when the object was already stored, intact (nothing was rewritten)
    replaced: SetAside | None = None  # a damaged file that was at the object's name


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One stored entry: its bytes and signature, plus columns copied out of it for queries."""

    seq: int
    body: bytes
    signature: bytes
    leaf_hash: bytes
    time: str
    actor: str
    action: str
    item: str | None


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """A signed checkpoint the archive issued, kept as issued (note text, C2SP signed-note)."""

    id: int
    size: int
    note: str
    created: str


@dataclass(frozen=True, slots=True)
class CheckpointExtra:
    """Something added to a kept checkpoint later: a witness cosignature or an RFC 3161 token."""

    checkpoint_id: int
    kind: str
    data: str
    added: str


NodeRow = tuple[int, int, bytes]
"""(level, index, hash) of one complete Merkle tree node (custody.core.merkle.NodeEntry)."""


# Object store ---------------------------------------------------------------------------------


class ReadsInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


ByteSource = BinaryIO | ReadsInto
"""What `put` reads from: any binary stream (a file, a request body, an upload) with readinto
(every binary file object has it; typeshed's BinaryIO does not say so)."""


class ObjectReader(Protocol):
    """A verified read of one object: `read` raises ObjectCorrupt at end of content if the bytes
    read do not hash to the object's name. Nothing read is trusted before that end."""

    def read(self, size: int = -1, /) -> bytes: ...
    def close(self) -> None: ...
    def __enter__(self) -> ObjectReader: ...
    def __exit__(self, *exc: object) -> None: ...


class ObjectStore(Protocol):
    """Bytes named by their SHA-256, written once, never replaced while sound.

    Every adapter writes crash-safely: an object visible under its name is always complete (local:
    temp file, fsync, link; S3: a single PUT with its checksum). Write failures raise
    ObjectWriteError (StoreFull when out of space) and leave no partial object."""

    def put(self, stream: ByteSource) -> PutResult:
        """Store the stream's bytes under their SHA-256, computing all four digests in one pass.
        A sound object already there is kept (created=False); anything else at the name is set
        aside (PutResult.replaced) and replaced."""
        ...

    def has(self, sha256: str) -> bool: ...

    def open(self, sha256: str) -> ObjectReader:
        """A verified reader (ObjectMissing if there is none)."""
        ...

    def check(self, sha256: str) -> int:
        """Fixity: re-hash the object; its size, or ObjectMissing / ObjectCorrupt."""
        ...

    def __iter__(self) -> Iterator[str]:
        """Every stored object's SHA-256, in order."""
        ...

    def quarantined(self) -> list[str]:
        """Where each set-aside file is kept (as SetAside.path names it)."""
        ...

    def unfinished_writes(self) -> list[str]:
        """What interrupted writes left behind (harmless, never an object), by location."""
        ...

    def retention(self, sha256: str) -> Retention | None:
        """The object's retention in the store (S3 Object Lock), or None for a store that has no
        such thing (the local folder). ObjectMissing if there is no object."""
        ...

    @property
    def keeps_retention(self) -> bool:
        """Whether `retention` can say anything but None (S3 Object Lock): verify asks it of
        every object only then (a local folder's answer would only repeat what fixity found)."""
        ...

    def local_file(self, sha256: str) -> AbstractContextManager[Path]:
        """A readable local file holding the object, for readers that need a path (ExifTool).
        The local adapter yields the object file itself (never to be written); a remote one
        copies the object to a temporary file, verified, and removes it on exit."""
        ...


# Ledger ---------------------------------------------------------------------------------------


class LedgerReads(Protocol):
    """Reads that a decision under the write lock needs as well as any reader."""

    def rows_for_item(self, item: str) -> list[EntryRow]: ...
    def rows_with_action(self, *actions: str) -> list[EntryRow]: ...
    def has_action(self, item: str, action: str) -> bool: ...
    def metadata(self, sha256: str) -> bytes | None: ...
    def get_node(self, level: int, idx: int) -> bytes:
        """The stored hash of a complete tree node, or NodeMissing."""
        ...

    def get_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The stored hashes of these (level, index) nodes, in one request where the store is
        remote; a node not stored is absent from the answer (not an error)."""
        ...


class LedgerTransaction(LedgerReads, Protocol):
    """One write transaction holding the ledger's write lock: every write lands or none does,
    and no other writer appends meanwhile (so next_seq and tip_hash stay true)."""

    next_seq: int
    tip_hash: bytes | None
    tip_time: str | None  # the signed time of the last entry (None for an empty log)

    def append(self, row: EntryRow) -> None:
        """Append the entry due (row.seq == next_seq, else LedgerStoreError)."""
        ...

    def put_metadata(self, sha256: str, doc: bytes) -> None:
        """An item's metadata document, before the entry that records it. A different document
        found there is unsigned: kept aside and replaced; once recorded it is write-once."""
        ...

    def put_nodes(self, nodes: Sequence[NodeRow]) -> None: ...
    def latest_checkpoint(self) -> CheckpointRow | None: ...
    def put_checkpoint(self, size: int, note: str, created: str) -> CheckpointRow: ...
    def put_checkpoint_extra(
        self, checkpoint_id: int, kind: str, data: str, added: str
    ) -> None: ...


class Ledger(LedgerReads, Protocol):
    """The log's entries, the metadata documents, the Merkle tree's nodes and the checkpoints.

    Reads never write. Reading a missing or damaged ledger raises LedgerDamaged, one that cannot
    be read here LedgerUnreadable; writes happen only inside `writing()`."""

    def open(self) -> None:
        """Connect now (a no-op once open): raises what an unusable ledger raises on first read."""
        ...

    def close(self) -> None: ...

    def writing(self) -> AbstractContextManager[LedgerTransaction]:
        """The one write transaction: committed on a clean exit, rolled back on any error.
        LedgerFull when out of space, LedgerReadOnly on read-only storage."""
        ...

    def size(self) -> int: ...
    def rows(self, start: int = 0) -> Iterator[EntryRow]: ...
    def row(self, seq: int) -> EntryRow | None: ...
    def items(self) -> list[str]:
        """Every recorded item (an `ingest`, `received` or `derived` entry), in order of first
        record."""
        ...

    def items_with_prefix(self, prefix: str) -> list[str]:
        """Recorded items whose SHA-256 starts with `prefix`: at most two (enough to refuse)."""
        ...

    def recorded(self, item: str) -> bool: ...
    def metadata_items(self) -> Iterator[str]: ...
    def all_metadata(self) -> Iterator[tuple[str, bytes]]: ...
    def set_aside_metadata(self) -> Iterator[tuple[str, bytes, str]]:
        """Every unsigned metadata document `put_metadata` set aside: (sha256, doc, when set
        aside), in the order they were set aside (`custody migrate` copies them)."""
        ...

    def checkpoints(self) -> list[CheckpointRow]: ...
    def latest_checkpoint(self) -> CheckpointRow | None:
        """The last kept checkpoint, read alone (a served log asks for it on every request)."""
        ...
    def checkpoint(self, checkpoint_id: int) -> CheckpointRow | None: ...
    def checkpoint_extras(self, checkpoint_id: int | None = None) -> list[CheckpointExtra]: ...
    def nodes_between(self, level: int, first: int, last: int) -> list[tuple[int, bytes]]:
        """The stored nodes (index, hash) of one level with first <= index <= last, in order."""
        ...

    def nodes_beyond(self, size: int, limit: int) -> list[tuple[int, int]]:
        """(level, index) of stored nodes that are no complete subtree of the first `size`
        leaves, at most `limit`."""
        ...
