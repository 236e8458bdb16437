"""The archive's backends: opening the local adapters, and the ONE place where a port's error
becomes what a user is told (a CustodyError with its exit code).

A missing or corrupt object, and a missing or damaged ledger, are verification problems (exit 1):
what was kept is not what was recorded. A full disk, storage that is read-only here, or one that
cannot be read here (permissions) are other errors (exit 3): nothing kept is shown to be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.errors import ArchiveError, CustodyError, DiskFull, VerificationFailed
from store.index import LocalIndex
from store.index_port import IndexLocation, IndexStoreError
from store.local_objects import LocalObjectStore
from store.ports import (
    LedgerDamaged,
    LedgerFull,
    LedgerStoreError,
    ObjectCorrupt,
    ObjectMissing,
    ObjectStore,
    StoreError,
    StoreFull,
)
from store.sqlite_ledger import SqliteLedger

OBJECTS, LEDGER = "objects", "ledger.db"  # the local adapters' places in an archive folder
FREE_SPACE = "free space, then run the command again"


SPOOL = "spool"  # an S3 archive's local folder for the copy each upload and each reader makes


@dataclass(frozen=True, slots=True)
class LocalBackends:
    objects: LocalObjectStore
    ledger: SqliteLedger
    index: LocalIndex


@dataclass(frozen=True, slots=True)
class Backends:
    objects: ObjectStore
    ledger: SqliteLedger
    index: LocalIndex


def s3_objects_config(url: str, endpoint: str | None, retention_days: int | None) -> dict[str, Any]:
    """custody.json's `objects` for an S3 store (no secrets: credentials stay in the AWS
    environment or profile). ValueError for an address that is no s3://BUCKET[/PREFIX]."""
    from store.s3_objects import DEFAULT_RETENTION_DAYS, S3Location  # boto3 only when used

    where = S3Location.parse(url, endpoint)
    days = DEFAULT_RETENTION_DAYS if retention_days is None else retention_days
    if days < 1:
        raise ValueError(f"--retention-days must be at least 1, not {days}")
    return {"backend": "s3", "bucket": where.bucket, "prefix": where.prefix,
            "endpoint": where.endpoint, "retention_mode": "COMPLIANCE", "retention_days": days}


def _objects(root: Path, config: dict[str, Any] | None) -> ObjectStore:
    if config is None or config.get("backend", "folder") == "folder":
        return LocalObjectStore(root / OBJECTS)
    if config.get("backend") == "s3":
        from store.s3_objects import S3Location, S3ObjectStore  # boto3 only when used

        where = S3Location(str(config["bucket"]), str(config.get("prefix") or ""),
                           config.get("endpoint") or None)
        return S3ObjectStore(where, retention_days=int(config["retention_days"]),
                             spool=root / SPOOL)
    raise ArchiveError(f"custody.json names an object store this custody does not know: "
                       f"{config.get('backend')!r}")


def open_backends(root: Path, objects: dict[str, Any] | None) -> Backends:
    """The backends custody.json names (`objects`: absent for the local folder)."""
    local = local_backends(root)
    return Backends(_objects(root, objects), local.ledger, local.index)


def prepare_objects(root: Path, objects: dict[str, Any] | None) -> ObjectStore:
    """Before init writes anything: an S3 bucket must answer these credentials and have Object
    Lock (else a StoreUnavailable saying why); the folder needs nothing."""
    store = _objects(root, objects)
    if not isinstance(store, LocalObjectStore):
        store.probe()  # type: ignore[attr-defined]  # the S3 store's own check
    return store


def create_objects(root: Path, store: ObjectStore) -> None:
    if isinstance(store, LocalObjectStore):
        store.create()
    else:
        (root / SPOOL).mkdir(mode=0o700, exist_ok=True)


def local_backends(root: Path) -> LocalBackends:
    """The embedded default: objects in `root/objects`, the ledger in `root/ledger.db`, the
    search index in `root/index.db`. The one place in custody that names an adapter."""
    return LocalBackends(LocalObjectStore(root / OBJECTS), SqliteLedger(root / LEDGER),
                         LocalIndex(root))


def index_for(root: Path, ledger_config: dict[str, Any] | None) -> IndexLocation:
    """Where the search index lives: beside a PostgreSQL ledger, in its database (schema
    custody_index); else the folder's index.db."""
    if ledger_config is not None and ledger_config.get("backend") == "postgresql":
        from store.pg_index import PostgresIndexLocation  # psycopg only when used

        return PostgresIndexLocation(str(ledger_config["url"]))
    return LocalIndex(root)


def custody_error(exc: StoreError | IndexStoreError) -> CustodyError:
    """What a user is told of a port's error, with its exit code: the one mapping."""
    if isinstance(exc, IndexStoreError):  # derived data out of reach: nothing kept is wrong
        return ArchiveError(f"search index: {exc}")
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
