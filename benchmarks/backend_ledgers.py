"""The ledgers benchmarks/backends.py compares: SQLite (the embedded default) and PostgreSQL (when
store.pg_ledger is in this tree and a server is given), filled with real signed entries.

Every ledger measured belongs to one "home" archive (custody.json, its keys, entry 0), so each can
be opened as an Archive and verified. Entries are ingest-sized (about 950 bytes of canonical JSON,
as benchmarks/ledger.py makes them) and signed by custody's own entry code, up front: what a
batched append then costs is the backend's work (the tree nodes read and written, the rows, the
commit), not Ed25519 or RFC 8785. Built ledgers are kept in a cache folder for the next run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from custody.core import entry as entries
from custody.core import merkle
from custody.core.signing import SigningKey
from custody.ops.archive import Archive, Draft, utc_now
from custody.ops.keyfiles import load_key, write_new_key
from store.ports import EntryRow, Ledger
from store.sqlite_ledger import SqliteLedger

PASSPHRASE = "benchmark passphrase"
ARCHIVE_PASSPHRASE = "benchmark archive passphrase"
BATCH = 1000  # entries per write transaction in a batched append (as ingest commits them)
SHAPE = 1  # bump when the entries made here change: cached ledgers of another shape are rebuilt


def details(i: int) -> dict[str, Any]:
    """An ingest entry's details, as a camera JPEG's ingest records them (no object behind it)."""
    digest = f"{i:064x}"
    return {
        "digests": {"md5": digest[:32], "sha1": digest[:40], "sha256": digest,
                    "sha512": digest * 2},
        "size": 1_000_000 + i,
        "source": {"name": f"IMG_{i:06d}.JPG", "path": f"/media/card/DCIM/IMG_{i:06d}.JPG",
                   "mtime": "2016-10-03T11:22:05.000000Z"},
        "case": "BENCH-2016", "note": None, "batch": "b" * 36, "mime": "image/jpeg",
        "metadata_sha256": digest,
    }


def draft(i: int) -> Draft:
    return Draft(action="ingest", item=f"{i:064x}", details=details(i))


@dataclass(frozen=True, slots=True)
class Home:
    """The archive every measured ledger belongs to, and its admin's key."""

    root: Path
    key: SigningKey
    genesis: EntryRow

    @classmethod
    def at(cls, folder: Path) -> Home:
        """The home archive kept in `folder` (made on first use)."""
        root, key_file = folder / "home", folder / "bench.key"
        if not (root / "custody.json").is_file():
            shutil.rmtree(root, ignore_errors=True)
            key_file.unlink(missing_ok=True)
            key = write_new_key(key_file, "Bench Custodian", PASSPHRASE)
            Archive.create(root, "Bench", key, ARCHIVE_PASSPHRASE).ledger.close()
        key = load_key(key_file, PASSPHRASE)
        ledger = SqliteLedger(root / "ledger.db")
        genesis = ledger.row(0)
        ledger.close()
        assert genesis is not None
        return cls(root, key, genesis)

    @property
    def origin(self) -> str:
        return entries.parse(self.genesis.body).log

    def archive(self, ledger: Ledger) -> Archive:
        """This home archive with `ledger` as its ledger (its objects and index stay local)."""
        home = Archive.open(self.root)
        home.ledger.close()
        return Archive(home.objects, ledger, home.index, home.stated, root=self.root)

    def signed(self, first: int, count: int, prev: bytes) -> Iterator[EntryRow]:
        """Entries first..first+count-1, each signed by the admin, chained after leaf `prev`."""
        now = utc_now()
        for seq in range(first, first + count):
            d = draft(seq)
            body = entries.Entry(log=self.origin, seq=seq, time=now, actor=self.key.key_id,
                                 action=d.action, item=d.item, details=d.details,
                                 prev=prev.hex())
            signed = entries.sign(body, self.key)
            prev = signed.leaf_hash
            yield EntryRow(seq=seq, body=signed.body, signature=signed.signature,
                           leaf_hash=prev, time=now, actor=self.key.key_id, action=d.action,
                           item=d.item)


def append_batched(ledger: Ledger, rows: Iterable[EntryRow], batch: int = BATCH) -> int:
    """Append `rows` through the Ledger port, `batch` to a write transaction, with the tree's
    nodes as Archive.append writes them (reading the left siblings through the transaction)."""
    done = 0
    it = iter(rows)
    while chunk := list(itertools.islice(it, batch)):
        with ledger.writing() as writer:
            for row in chunk:
                writer.put_nodes(merkle.nodes_after_append(row.seq, row.leaf_hash,
                                                           writer.get_node))
                writer.append(row)
        done += len(chunk)
    return done


def fill(home: Home, ledger: Ledger, size: int, say: Callable[[str], None]) -> None:
    """Append signed entries to `ledger` (which holds entry 0 at least) until it holds `size`."""
    have = ledger.size()
    last = ledger.row(have - 1)
    assert last is not None
    prev = last.leaf_hash
    started = time.perf_counter()
    for first in range(have, size, 50_000):
        count = min(50_000, size - first)
        rows = list(home.signed(first, count, prev))
        prev = rows[-1].leaf_hash
        append_batched(ledger, rows)
        rate = (first + count - have) / (time.perf_counter() - started)
        say(f"  built {first + count:,} of {size:,} entries ({rate:,.0f}/s, signing included)")


# The backends --------------------------------------------------------------------------------


class Backend:
    """One kind of ledger: make a fresh one holding entry 0, or reuse a cached one of a size."""

    name = ""

    def fresh(self, home: Home) -> Ledger:
        raise NotImplementedError

    def cached(self, home: Home, size: int, say: Callable[[str], None]) -> Ledger:
        raise NotImplementedError

    def disk_bytes(self, home: Home, size: int) -> int:
        """What the cached ledger of `size` entries takes on disk."""
        raise NotImplementedError

    def close(self) -> None:
        """Remove what `fresh` made (cached ledgers are kept)."""


def _with_genesis(ledger: Ledger, home: Home) -> Ledger:
    ledger.create()  # type: ignore[attr-defined]  # every adapter has it; the port does not say
    append_batched(ledger, [home.genesis])
    return ledger


class SqliteBackend(Backend):
    name = "SQLite (embedded default)"

    def __init__(self, work: Path, cache: Path) -> None:
        self.work, self.cache = work, cache

    def fresh(self, home: Home) -> Ledger:
        path = self.work / f"ledger-{uuid.uuid4().hex[:8]}.db"
        return _with_genesis(SqliteLedger(path), home)

    def _cached_path(self, home: Home, size: int) -> Path:
        return self.cache / f"ledger-v{SHAPE}-{home.key.key_id[:8]}-{size}.db"

    def disk_bytes(self, home: Home, size: int) -> int:
        return self._cached_path(home, size).stat().st_size

    def cached(self, home: Home, size: int, say: Callable[[str], None]) -> Ledger:
        path = self._cached_path(home, size)
        if not path.exists():
            building = path.with_suffix(".building")
            for leftover in building.parent.glob(building.name + "*"):
                leftover.unlink()
            ledger = _with_genesis(SqliteLedger(building), home)
            fill(home, ledger, size, say)
            ledger.close()
            os.replace(building, path)  # only a finished ledger is ever found in the cache
        return SqliteLedger(path)


class PostgresBackend(Backend):
    """A new database per fresh ledger (dropped at the end); cached ones are kept by name."""

    name = "PostgreSQL"

    def __init__(self, url: str, sqlite: SqliteBackend) -> None:
        from store.pg_ledger import PostgresLedger  # the adapter of issue 15 (another branch)

        self.make = PostgresLedger
        self.url = url
        self.sqlite = sqlite
        self.made: list[str] = []

    def _database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return self._url(name)
            conn.execute(f'CREATE DATABASE "{name}"')
        return self._url(name)

    def _url(self, database: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path="/" + database))

    def fresh(self, home: Home) -> Ledger:
        name = f"custody_bench_{uuid.uuid4().hex[:12]}"
        self.made.append(name)
        return _with_genesis(self.make(self._database(name)), home)

    def disk_bytes(self, home: Home, size: int) -> int:
        import psycopg

        with psycopg.connect(self._url(self._cached_name(home, size))) as conn:
            found = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(found[0]) if found else 0

    def _cached_name(self, home: Home, size: int) -> str:
        return f"custody_bench_v{SHAPE}_{home.key.key_id[:8]}_{size}"

    def cached(self, home: Home, size: int, say: Callable[[str], None]) -> Ledger:
        name = self._cached_name(home, size)
        url = self._database(name)
        ledger = self.make(url)
        try:
            ledger.open()
            if ledger.size() == size:
                return ledger
        except Exception:  # noqa: BLE001  # an empty or unfinished database: made again
            pass
        ledger.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        ledger = _with_genesis(self.make(self._database(name)), home)
        source = self.sqlite.cached(home, size, say)  # the same signed entries, copied over
        say(f"  copying {size:,} entries into PostgreSQL database {name}")
        append_batched(ledger, source.rows(1))
        source.close()
        return ledger

    def close(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for name in self.made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made.clear()


def postgres(url: str | None, sqlite: SqliteBackend) -> tuple[PostgresBackend | None, str]:
    """The PostgreSQL backend, or None and why it is skipped."""
    try:
        import store.pg_ledger  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "store.pg_ledger":
            raise
        return None, "store.pg_ledger is not in this tree (the PostgreSQL adapter of issue 15)"
    if not url:
        return None, "no server given (--pg URL or $CUSTODY_TEST_PG)"
    return PostgresBackend(url, sqlite), ""
