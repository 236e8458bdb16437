"""The archive's backends: opening the local adapters, and the ONE place where a port's error
becomes what a user is told (a CustodyError with its exit code).

A missing or corrupt object, and a missing or damaged ledger, are verification problems (exit 1):
what was kept is not what was recorded. A full disk, storage that is read-only here, or one that
cannot be read here (permissions) are other errors (exit 3): nothing kept is shown to be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from custody.errors import ArchiveError, CustodyError, DiskFull, VerificationFailed
from store.index import LocalIndex
from store.local_objects import LocalObjectStore
from store.ports import (
    LedgerDamaged,
    LedgerFull,
    LedgerStoreError,
    ObjectCorrupt,
    ObjectMissing,
    StoreError,
    StoreFull,
)
from store.sqlite_ledger import SqliteLedger

OBJECTS, LEDGER = "objects", "ledger.db"  # the local adapters' places in an archive folder
FREE_SPACE = "free space, then run the command again"


@dataclass(frozen=True, slots=True)
class LocalBackends:
    objects: LocalObjectStore
    ledger: SqliteLedger
    index: LocalIndex


def local_backends(root: Path) -> LocalBackends:
    """The embedded default: objects in `root/objects`, the ledger in `root/ledger.db`, the
    search index in `root/index.db`. The one place in custody that names an adapter."""
    return LocalBackends(LocalObjectStore(root / OBJECTS), SqliteLedger(root / LEDGER),
                         LocalIndex(root))


def custody_error(exc: StoreError) -> CustodyError:
    """What a user is told of a port's error, with its exit code: the one mapping."""
    if isinstance(exc, ObjectMissing | ObjectCorrupt | LedgerDamaged):
        return VerificationFailed([str(exc)])
    if isinstance(exc, LedgerFull):
        return DiskFull(f"the disk holding the archive's ledger is full: nothing was recorded "
                        f"({exc})", hint=FREE_SPACE)
    if isinstance(exc, StoreFull):
        return DiskFull(f"the disk holding the archive's objects is full: nothing was stored "
                        f"({exc})", hint=FREE_SPACE)
    if isinstance(exc, LedgerStoreError) and type(exc) is LedgerStoreError:
        return ArchiveError(f"nothing was recorded: {exc}")  # a write the ledger refused
    return ArchiveError(str(exc))  # unreadable here, read-only storage, a write that failed
