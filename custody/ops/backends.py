"""The archive's backends: opening the adapters custody.json names, and the ONE place where a
port's error becomes what a user is told (a CustodyError with its exit code).

A missing or corrupt object, and a missing or damaged ledger, are verification problems (exit 1):
what was kept is not what was recorded. A full disk, storage that is read-only here, or one that
cannot be read here (permissions) are other errors (exit 3): nothing kept is shown to be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyrage

from custody.errors import ArchiveError, CustodyError, DiskFull, UsageError, VerificationFailed
from custody.ops import encryption
from store.index import LocalIndex
from store.index_port import IndexLocation, IndexStoreError
from store.local_objects import LocalObjectStore
from store.ports import (
    Ledger,
    LedgerDamaged,
    LedgerFull,
    LedgerStoreError,
    ObjectCorrupt,
    ObjectMissing,
    ObjectStore,
    StoreError,
    StoreFull,
)
from store.sealed_objects import SealedObjects
from store.sqlite_ledger import SqliteLedger

if TYPE_CHECKING:
    from store.nonces import NonceStore

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
    ledger: Ledger
    index: IndexLocation


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


def pg_ledger_config(url: str) -> dict[str, Any]:
    """custody.json's `ledger` for a PostgreSQL ledger. ValueError for what is no postgresql://
    URL, and for one carrying a password: custody.json would keep it (passwords come from
    PGPASSWORD, ~/.pgpass or the libpq environment; docs/BACKENDS.md)."""
    from store.pg_ledger import describe, has_password  # psycopg only when used

    describe(url)
    if has_password(url):
        raise ValueError("the URL carries a password, which custody.json would keep: leave it "
                         "out and give it in PGPASSWORD or ~/.pgpass")
    return {"backend": "postgresql", "url": url}


def ledger_label(config: dict[str, Any] | None) -> str:
    """Where the ledger is, as a user may see it (never a password)."""
    if config is None or config.get("backend", "sqlite") == "sqlite":
        return LEDGER
    from store.pg_ledger import describe

    return describe(str(config["url"]))


def _ledger(root: Path, config: dict[str, Any] | None) -> Ledger:
    if config is None or config.get("backend", "sqlite") == "sqlite":
        return SqliteLedger(root / LEDGER)
    if config.get("backend") == "postgresql":
        from store.pg_ledger import PostgresLedger  # psycopg only when used

        return PostgresLedger(str(config["url"]))
    raise ArchiveError(f"custody.json names a ledger this custody does not know: "
                       f"{config.get('backend')!r}")


def open_backends(root: Path, objects: dict[str, Any] | None,
                  ledger: dict[str, Any] | None = None) -> Backends:
    """The backends custody.json names (`objects`, `ledger`: absent for the local folder and
    SQLite in it)."""
    return Backends(_objects(root, objects), _ledger(root, ledger), index_for(root, ledger))


def prepare_ledger(root: Path, config: dict[str, Any] | None) -> Ledger:
    """Before init writes anything to the folder: a server ledger gets its schema now (refused,
    with the port's error, when the database cannot be used or already holds a ledger); the
    SQLite file is made later, in the new folder (`create_ledger`)."""
    ledger = _ledger(root, config)
    if not isinstance(ledger, SqliteLedger):
        ledger.create()  # type: ignore[attr-defined]  # the server adapter's own setup
    return ledger


def create_ledger(ledger: Ledger) -> None:
    if isinstance(ledger, SqliteLedger):
        ledger.create()


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


NONCES = "service-nonces.db"  # custody serve's request nonces (docs/SERVICE.md), not the ledger


def nonce_store(root: Path) -> NonceStore:
    """The served archive's store of request nonces: a SQLite file in its folder."""
    from store.nonces import NonceStore as Store  # only the service uses it

    return Store(root / NONCES)


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


# `custody migrate` (custody/ops/migrate.py): the ledger a new archive's --ledger names -----------

POSTGRESQL = ("postgresql://", "postgres://")


def ledger_config(spec: str) -> dict[str, Any] | None:
    """custody.json's `ledger` for a --ledger spec: None for `sqlite` (the default, DIR/ledger.db,
    as custody.json has always meant), else what names the database. UsageError for a spec that
    names no ledger this custody knows."""
    if spec == "sqlite":
        return None
    if spec.startswith(POSTGRESQL):
        try:
            return pg_ledger_config(spec)
        except ValueError as exc:
            raise UsageError(f"--ledger: {exc}") from None
    raise UsageError(f"--ledger {spec!r}: give sqlite or a postgresql://… URL")


def target_ledger(root: Path, spec: str) -> Ledger:
    """The ledger a --ledger spec names for the archive folder `root`, open: created empty when
    there is none yet, else opened as it is (whose entries it holds is the caller's to check).
    The ONE factory of a new archive's ledger (`custody migrate`)."""
    ledger_config(spec)  # a spec no ledger answers to is a usage error
    if spec == "sqlite":
        ledger = SqliteLedger(root / LEDGER)
        if ledger.path.exists():
            ledger.open()
        else:
            ledger.create()
        return ledger
    from store.pg_ledger import PostgresLedger  # psycopg only when used

    server = PostgresLedger(spec)
    try:
        server.open()  # a ledger is there (a resumed copy): whose it is, the caller checks
    except LedgerDamaged:
        server.create()  # an empty database: the schema, as init makes it
    return server


def sealed_objects(root: Path, inner: ObjectStore, ledger: Ledger, recipient: str
                   ) -> SealedObjects:
    """A sealed archive's objects (docs/FORMAT.md §12): `inner` keeps the age files."""
    return SealedObjects(inner, pyrage.x25519.Recipient.from_str(recipient),
                         encryption.spool_dir(root), encryption.locator(ledger),
                         encryption.listing(ledger),
                         lambda: encryption.epochs(ledger)[-1].recipient)



def as_stored(objects: ObjectStore) -> ObjectStore:
    """The store as it holds the bytes: a sealed archive's age files under their ciphertext
    names (what `migrate` copies, with no key), else the store itself."""
    return objects.inner if isinstance(objects, SealedObjects) else objects


def sealed_index(root: Path, ledger: Ledger, recipient: str,
                 keys: encryption.ContentKeys | None) -> IndexLocation:
    """A sealed archive's search index (docs/SEARCH.md "Sealed archives"): in memory only, kept
    as `root/index.age` sealed to the content key in force, saved only by a reader holding it.
    `keys`: the reader's content keys (None: locked, nothing opens)."""
    from store.sealed_index import SealedIndex  # pyrage and SQLite in memory only when used

    held = keys.identities if keys is not None else []
    current = encryption.epochs(ledger, recipient)[-1]
    saves = keys is not None and current.number in keys.by_epoch
    return SealedIndex(root / "index.age", held,
                       pyrage.x25519.Recipient.from_str(current.recipient) if saves else None)
