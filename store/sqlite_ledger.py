"""The SQLite ledger adapter: opaque signed entries, append-only, with the indexes queries need.

Satisfies store.ports.Ledger; its physical layout (ledger.db's tables) is docs/FORMAT.md
Appendix A.1.

Bytes and rows only: what an entry means, and whether its signature holds, is custody's business.
UPDATE and DELETE are refused by triggers; that stops accidents, signatures catch tampering.
Reads never write: a connection is query-only until `writing()`, and on read-only storage (a
write-blocked copy) the file is opened read-only, so nothing beside it is created.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from store.ports import (
    CheckpointExtra,
    CheckpointRow,
    EntryRow,
    LedgerDamaged,
    LedgerFull,
    LedgerReadOnly,
    LedgerStoreError,
    LedgerUnreadable,
    NodeMissing,
    NodeRow,
)

SCHEMA_VERSION = 2  # 2: unsigned metadata rows can be set aside (metadata_set_aside)
BUSY_TIMEOUT_MS = 120_000  # a second ingest waits for the first one's batch, never fails on it

# A ledger made since `derived` exists protects a derivative's row too; an older version-2 file
# keeps its triggers (the derived entry's signed metadata_sha256 still catches a change).
_RECORDED = (
    "EXISTS (SELECT 1 FROM entries WHERE item = OLD.sha256 "
    "AND action IN ('ingest', 'received', 'derived'))"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    signature BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    item TEXT
);
CREATE INDEX IF NOT EXISTS entries_item ON entries(item, seq);
CREATE INDEX IF NOT EXISTS entries_action ON entries(action, seq);
CREATE TABLE IF NOT EXISTS metadata (
    sha256 TEXT PRIMARY KEY,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS merkle_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    note TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint_extras (
    id INTEGER PRIMARY KEY,
    checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id),
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    added TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are kept as issued: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are kept as issued: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS extras_no_update BEFORE UPDATE ON checkpoint_extras
BEGIN SELECT RAISE(ABORT, 'checkpoint cosignatures and timestamps are kept: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS extras_no_delete BEFORE DELETE ON checkpoint_extras
BEGIN SELECT RAISE(ABORT, 'checkpoint cosignatures and timestamps are kept: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS entries_in_order BEFORE INSERT ON entries
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq) + 1, 0) FROM entries)
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only: out-of-order INSERT refused'); END;
CREATE TRIGGER IF NOT EXISTS nodes_no_update BEFORE UPDATE ON merkle_nodes
BEGIN SELECT RAISE(ABORT, 'tree nodes are write-once: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS nodes_no_delete BEFORE DELETE ON merkle_nodes
BEGIN SELECT RAISE(ABORT, 'tree nodes are write-once: DELETE refused'); END;
"""

# Version 2. A metadata row is write-once from the moment an entry records its item (`ingest`,
# `received`); before that no signature vouches for it, and a row found there (planted, since
# rows are only ever written with their entry) is set aside, kept, and replaced by what the
# ingest itself read from the object.
_V2 = [
    """CREATE TABLE IF NOT EXISTS metadata_set_aside (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    doc BLOB NOT NULL,
    set_aside TEXT NOT NULL
)""",
    """CREATE TRIGGER IF NOT EXISTS set_aside_no_update BEFORE UPDATE ON metadata_set_aside
BEGIN SELECT RAISE(ABORT, 'set-aside metadata is kept as found: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS set_aside_no_delete BEFORE DELETE ON metadata_set_aside
BEGIN SELECT RAISE(ABORT, 'set-aside metadata is kept as found: DELETE refused'); END""",
    "DROP TRIGGER IF EXISTS metadata_no_update",
    "DROP TRIGGER IF EXISTS metadata_no_delete",
    f"""CREATE TRIGGER metadata_no_update BEFORE UPDATE ON metadata WHEN {_RECORDED}
BEGIN SELECT RAISE(ABORT, 'metadata is write-once: UPDATE refused'); END""",
    f"""CREATE TRIGGER metadata_no_delete BEFORE DELETE ON metadata WHEN {_RECORDED}
BEGIN SELECT RAISE(ABORT, 'metadata is write-once: DELETE refused'); END""",
]

# SQLite's codes for a full disk: SQLITE_FULL, and the shared-memory file of the WAL that
# cannot grow (how a full tmpfs shows itself before any page is written).
_DISK_FULL = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR_SHMSIZE}


SQLITE_HEADER = b"SQLite format 3\x00"
TABLES = ("entries", "metadata", "merkle_nodes", "checkpoints", "checkpoint_extras")


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in _DISK_FULL or (code is not None and code & 0xFF == sqlite3.SQLITE_FULL)


_DAMAGE = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def _write_failure(exc: sqlite3.Error, path: Path) -> LedgerStoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if _is_full(exc):
        return LedgerFull(f"no space left on the disk holding {path}")
    if code is not None and code & 0xFF in _DAMAGE:
        return LedgerDamaged(f"{path} is damaged: {exc}")
    return LedgerStoreError(f"cannot write {path.name}: {exc}")


def _row(r: sqlite3.Row | tuple[Any, ...]) -> EntryRow:
    return EntryRow(
        seq=r[0],
        body=bytes(r[1]),
        signature=bytes(r[2]),
        leaf_hash=bytes(r[3]),
        time=r[4],
        actor=r[5],
        action=r[6],
        item=r[7],
    )


_CP_COLUMNS = "id, size, note, created"
_COLUMNS = "seq, body, signature, leaf_hash, time, actor, action, item"


def connect(path: Path | str, uri: bool = False) -> sqlite3.Connection:
    # check_same_thread off: the service opens an archive in one worker thread and reads it in
    # another, one step after the other within a request (never two threads at once; SQLite is
    # built serialized anyway). The command line is unaffected.
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, uri=uri,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = FULL")  # a committed entry survives power loss
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def check_file(path: Path) -> None:
    """Refuse, before SQLite opens (and so possibly rewrites) it, what cannot be a ledger: nothing
    there, a folder, an empty file (SQLite would take it for a new database), an unreadable one.

    Only stat(2) and access(2): opening and closing another descriptor on the database would drop
    the POSIX locks this process's SQLite connections hold on it, and a second process could then
    checkpoint and remove the WAL under them (that corrupts the ledger). A foreign file is named by
    SQLite itself when it is first read (`open_for_reading`)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise LedgerDamaged(f"{path} is missing") from None
    except OSError as exc:
        raise LedgerUnreadable(f"{path} cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise LedgerDamaged(f"{path} is a folder, not the ledger database")
    if st.st_size == 0:
        raise LedgerDamaged(f"{path} is empty (zero bytes)")
    if st.st_size < len(SQLITE_HEADER):
        raise LedgerDamaged(f"{path} is not an SQLite database")
    if not os.access(path, os.R_OK):
        raise LedgerUnreadable(f"{path} cannot be read: Permission denied")


def _not_a_ledger(exc: sqlite3.DatabaseError, path: Path) -> LedgerStoreError:
    if _is_full(exc):
        return LedgerFull(f"no space left on the disk holding {path}")
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
        return LedgerDamaged(f"{path} is not an SQLite database")
    return LedgerDamaged(f"{path} is damaged: {exc}")


def _writable(path: Path) -> bool:
    """Whether this process may write the ledger and create its -wal/-shm beside it (False on a
    read-only mount even for root: access(2) reports EROFS)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def open_for_reading(path: Path) -> tuple[sqlite3.Connection, bool]:
    """An existing SQLite file, opened so that reading it writes nothing: query-only where this
    process may write (SQLite then removes its own -wal/-shm on close, as after any use), else
    read-only. Returns the connection and whether the storage is read-only."""
    check_file(path)
    if not _writable(path):
        return open_read_only(path), True
    try:
        conn = connect(path)
    except sqlite3.DatabaseError as exc:
        raise _not_a_ledger(exc, path) from None
    conn.execute("PRAGMA query_only = ON")  # lifted only inside a write transaction
    return conn, False


def open_read_only(path: Path) -> sqlite3.Connection:
    """The ledger on storage this process cannot write. SQLite reads a WAL database read-only
    when its -wal and -shm files both exist (a copy taken in use, or another user's live archive:
    SQLite then follows that WAL). With no WAL content the main file is the whole database, so it
    is opened `immutable` (no locks, no -shm: nothing is created). A non-empty -wal without its
    -shm holds committed entries SQLite cannot read without writing: refused, never read as if
    they were not there."""
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if wal.exists() and shm.exists():
        uri = path.absolute().as_uri() + "?mode=ro"
    elif wal.exists() and wal.stat().st_size > 0:
        raise LedgerUnreadable(
            f"{wal} holds entries not yet in {path.name}, and without {shm.name} SQLite cannot "
            "read them from read-only storage: verify a writable copy of the archive"
        )
    else:
        uri = path.absolute().as_uri() + "?mode=ro&immutable=1"
    try:
        conn = connect(uri, uri=True)
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise LedgerUnreadable(f"{path} cannot be opened read-only: {exc}") from None
    return conn


class _Reads:
    """The reads a decision under the write lock needs, shared by the ledger and its transaction."""

    @property
    def conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def rows_for_item(self, item: str) -> list[EntryRow]:
        cur = self.conn.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE item = ? ORDER BY seq", (item,)
        )
        return [_row(r) for r in cur]

    def rows_with_action(self, *actions: str) -> list[EntryRow]:
        marks = ", ".join("?" for _ in actions)
        cur = self.conn.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE action IN ({marks}) ORDER BY seq", actions
        )
        return [_row(r) for r in cur]

    def has_action(self, item: str, action: str) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM entries WHERE item = ? AND action = ? LIMIT 1", (item, action)
            ).fetchone()
            is not None
        )

    def metadata(self, sha256: str) -> bytes | None:
        r = self.conn.execute("SELECT doc FROM metadata WHERE sha256 = ?", (sha256,)).fetchone()
        return None if r is None else bytes(r[0])

    def get_node(self, level: int, idx: int) -> bytes:
        r = self.conn.execute(
            "SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, idx)
        ).fetchone()
        if r is None:
            raise NodeMissing(f"tree node ({level}, {idx}) is missing")
        return bytes(r[0])

    def get_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        found: dict[tuple[int, int], bytes] = {}
        for level, idx in keys:  # a local file: one query each costs microseconds
            r = self.conn.execute("SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?",
                                  (level, idx)).fetchone()
            if r is not None:
                found[(level, idx)] = bytes(r[0])
        return found


class SqliteTransaction(_Reads):
    """Appends inside one IMMEDIATE transaction: all rows of a batch land together or none do."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        tip = conn.execute(
            "SELECT seq, leaf_hash, time FROM entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        self.next_seq: int = 0 if tip is None else tip[0] + 1
        self.tip_hash: bytes | None = None if tip is None else bytes(tip[1])
        self.tip_time: str | None = None if tip is None else str(tip[2])

    @property
    def conn(self) -> sqlite3.Connection:
        return self._conn

    def append(self, row: EntryRow) -> None:
        if row.seq != self.next_seq:
            raise LedgerStoreError(f"entry {row.seq} appended where {self.next_seq} was due")
        self._conn.execute(
            f"INSERT INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.seq,
                row.body,
                row.signature,
                row.leaf_hash,
                row.time,
                row.actor,
                row.action,
                row.item,
            ),
        )
        self.next_seq += 1
        self.tip_hash = row.leaf_hash

    def put_metadata(self, sha256: str, doc: bytes) -> None:
        """Store `doc` as the item's metadata; call it before the entry that records the item.

        A different row already there is unsigned (rows are only ever written with their entry):
        it is set aside in `metadata_set_aside`, kept, and replaced. Once an entry records the
        item, the triggers refuse to replace its row.
        """
        found = self.metadata(sha256)
        if found == doc:
            return
        if found is not None:
            self._conn.execute(
                "INSERT INTO metadata_set_aside (sha256, doc, set_aside) "
                "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (sha256, found),
            )
            self._conn.execute("DELETE FROM metadata WHERE sha256 = ?", (sha256,))
        self._conn.execute("INSERT INTO metadata (sha256, doc) VALUES (?, ?)", (sha256, doc))

    def put_nodes(self, nodes: Sequence[NodeRow]) -> None:
        self._conn.executemany(
            "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes
        )

    def latest_checkpoint(self) -> CheckpointRow | None:
        r = self._conn.execute(
            f"SELECT {_CP_COLUMNS} FROM checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if r is None else CheckpointRow(*r)

    def put_checkpoint(self, size: int, note: str, created: str) -> CheckpointRow:
        cur = self._conn.execute(
            "INSERT INTO checkpoints (size, note, created) VALUES (?, ?, ?)", (size, note, created)
        )
        return CheckpointRow(int(cur.lastrowid or 0), size, note, created)

    def put_checkpoint_extra(self, checkpoint_id: int, kind: str, data: str, added: str) -> None:
        self._conn.execute(
            "INSERT INTO checkpoint_extras (checkpoint_id, kind, data, added) VALUES (?, ?, ?, ?)",
            (checkpoint_id, kind, data, added),
        )


def _upgrade(conn: sqlite3.Connection) -> None:
    """Bring an older ledger.db to SCHEMA_VERSION, inside the caller's write transaction."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    for statement in _V2:
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class SqliteLedger(_Reads):
    """The SQLite file that holds entries, metadata documents, tree nodes and checkpoints.

    Every SQLite error of a read becomes a port error (LedgerDamaged for a damaged file, LedgerFull
    when a full disk stops even a read); writes go through `writing()` only."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self.read_only = False

    @property
    def conn(self) -> sqlite3.Connection:
        """The adapter's own connection (store/ and its tests only: custody uses the port)."""
        if self._conn is None:
            try:  # opening reads through the WAL index, which a full disk cannot hold
                self._conn = self._open()
            except sqlite3.DatabaseError as exc:
                raise _not_a_ledger(exc, self.path) from None
        return self._conn

    def open(self) -> None:
        _ = self.conn

    def _open(self) -> sqlite3.Connection:
        conn, self.read_only = open_for_reading(self.path)
        try:
            have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _not_a_ledger(exc, self.path) from None
        if missing := [t for t in TABLES if t not in have]:
            conn.close()
            raise LedgerDamaged(f"{self.path} has no {missing[0]} table: it is not a ledger")
        return conn

    def create(self) -> None:
        # SQLite would create the file 0644 (less the umask); made 0600 first, its -wal and -shm
        # files take the same mode.
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.chmod(self.path, 0o600)
        conn = connect(self.path)
        conn.execute("PRAGMA journal_mode = WAL")  # kept in the file: every later open uses it
        conn.executescript(_SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        _upgrade(conn)
        conn.execute("COMMIT")
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, with SQLite's errors of a read said as the port's (a torn page in the
        file: LedgerDamaged naming it)."""
        conn = self.conn
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            raise _not_a_ledger(exc, self.path) from None

    @contextmanager
    def writing(self) -> Iterator[SqliteTransaction]:
        """One IMMEDIATE transaction; SQLite's failures become LedgerStoreError (LedgerFull for a
        full disk, LedgerDamaged for a damaged file), always after the transaction was rolled
        back."""
        conn = self.conn
        if self.read_only:
            raise LedgerReadOnly(f"{self.path} is on read-only storage (or not writable by "
                                 "this user): this command needs to write to the archive")
        try:
            conn.execute("PRAGMA query_only = OFF")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _write_failure(exc, self.path) from None
            try:
                _upgrade(conn)
                yield SqliteTransaction(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:  # SQLite may already have rolled back (e.g. SQLITE_FULL)
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _write_failure(exc, self.path) from None
                raise
        finally:
            with suppress(sqlite3.Error):
                conn.execute("PRAGMA query_only = ON")

    # Reads -----------------------------------------------------------------------------------

    def size(self) -> int:
        with self._reading() as conn:
            r = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM entries").fetchone()
        return int(r[0])

    def rows(self, start: int = 0) -> Iterator[EntryRow]:
        with self._reading() as conn:
            cur = conn.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE seq >= ? ORDER BY seq", (start,)
            )
            for r in cur:
                yield _row(r)

    def row(self, seq: int) -> EntryRow | None:
        with self._reading() as conn:
            r = conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE seq = ?", (seq,)).fetchone()
        return None if r is None else _row(r)

    def rows_for_item(self, item: str) -> list[EntryRow]:
        with self._reading():
            return super().rows_for_item(item)

    def rows_with_action(self, *actions: str) -> list[EntryRow]:
        with self._reading():
            return super().rows_with_action(*actions)

    def has_action(self, item: str, action: str) -> bool:
        with self._reading():
            return super().has_action(item, action)

    def metadata(self, sha256: str) -> bytes | None:
        with self._reading():
            return super().metadata(sha256)

    def get_node(self, level: int, idx: int) -> bytes:
        with self._reading():
            return super().get_node(level, idx)

    def get_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        with self._reading():
            return super().get_nodes(keys)

    def items(self) -> list[str]:
        """Every item with an ingest entry, in order of first ingest."""
        with self._reading() as conn:
            cur = conn.execute(
                "SELECT item FROM entries WHERE action IN ('ingest', 'received', 'derived') "
                "GROUP BY item "
                "ORDER BY MIN(seq)"
            )
            return [r[0] for r in cur]

    def items_with_prefix(self, prefix: str) -> list[str]:
        with self._reading() as conn:
            cur = conn.execute(
                "SELECT DISTINCT item FROM entries "
                "WHERE action IN ('ingest', 'received', 'derived') "
                "AND item >= ? AND item < ? "
                "LIMIT 2",
                (prefix, prefix + "g"),
            )
            return [r[0] for r in cur]

    def recorded(self, item: str) -> bool:
        """True if an entry brings `item` into the archive (`ingest`, `received`, `derived`)."""
        with self._reading() as conn:
            r = conn.execute(
                "SELECT 1 FROM entries WHERE item = ? "
                "AND action IN ('ingest', 'received', 'derived') "
                "LIMIT 1",
                (item,),
            ).fetchone()
        return r is not None

    def metadata_items(self) -> Iterator[str]:
        with self._reading() as conn:
            for r in conn.execute("SELECT sha256 FROM metadata ORDER BY sha256"):
                yield r[0]

    def all_metadata(self) -> Iterator[tuple[str, bytes]]:
        with self._reading() as conn:
            for r in conn.execute("SELECT sha256, doc FROM metadata ORDER BY sha256"):
                yield r[0], bytes(r[1])

    def set_aside_metadata(self) -> Iterator[tuple[str, bytes, str]]:
        with self._reading() as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                return  # a version-1 file (never written since) has set nothing aside
            cur = conn.execute("SELECT sha256, doc, set_aside FROM metadata_set_aside ORDER BY id")
            for r in cur:
                yield r[0], bytes(r[1]), r[2]

    def checkpoints(self) -> list[CheckpointRow]:
        with self._reading() as conn:
            cur = conn.execute(f"SELECT {_CP_COLUMNS} FROM checkpoints ORDER BY id")
            return [CheckpointRow(*r) for r in cur]

    def latest_checkpoint(self) -> CheckpointRow | None:
        with self._reading() as conn:
            r = conn.execute(
                f"SELECT {_CP_COLUMNS} FROM checkpoints ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return None if r is None else CheckpointRow(*r)

    def checkpoint(self, checkpoint_id: int) -> CheckpointRow | None:
        with self._reading() as conn:
            r = conn.execute(
                f"SELECT {_CP_COLUMNS} FROM checkpoints WHERE id = ?", (checkpoint_id,)
            ).fetchone()
        return None if r is None else CheckpointRow(*r)

    def checkpoint_extras(self, checkpoint_id: int | None = None) -> list[CheckpointExtra]:
        sql = "SELECT checkpoint_id, kind, data, added FROM checkpoint_extras"
        args: tuple[int, ...] = ()
        if checkpoint_id is not None:
            sql += " WHERE checkpoint_id = ?"
            args = (checkpoint_id,)
        with self._reading() as conn:
            return [CheckpointExtra(*r) for r in conn.execute(sql + " ORDER BY id", args)]

    def nodes_between(self, level: int, first: int, last: int) -> list[tuple[int, bytes]]:
        """The stored nodes (index, hash) of one level with first <= index <= last, in order."""
        with self._reading() as conn:
            cur = conn.execute(
                "SELECT idx, hash FROM merkle_nodes WHERE level = ? AND idx BETWEEN ? AND ? "
                "ORDER BY idx",
                (level, first, last),
            )
            return [(int(i), bytes(h)) for i, h in cur]

    def nodes_beyond(self, size: int, limit: int) -> list[tuple[int, int]]:
        """(level, index) of stored nodes that are no complete subtree of the first `size`
        leaves (a level holds size >> level of them), at most `limit`."""
        with self._reading() as conn:
            cur = conn.execute(
                "SELECT level, idx FROM merkle_nodes WHERE level < 0 OR level > 62 OR idx < 0 "
                "OR idx >= (? >> level) ORDER BY level, idx LIMIT ?",
                (size, limit),
            )
            return [(int(level), int(idx)) for level, idx in cur]
