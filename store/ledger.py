"""The ledger's rows in SQLite: opaque signed entries, append-only, with the indexes queries need.

Bytes and rows only: what an entry means, and whether its signature holds, is custody's business.
UPDATE and DELETE are refused by triggers; that stops accidents, signatures catch tampering.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 120_000  # a second ingest waits for the first one's batch, never fails on it

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
CREATE TRIGGER IF NOT EXISTS metadata_no_update BEFORE UPDATE ON metadata
BEGIN SELECT RAISE(ABORT, 'metadata is write-once: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS metadata_no_delete BEFORE DELETE ON metadata
BEGIN SELECT RAISE(ABORT, 'metadata is write-once: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS nodes_no_update BEFORE UPDATE ON merkle_nodes
BEGIN SELECT RAISE(ABORT, 'tree nodes are write-once: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS nodes_no_delete BEFORE DELETE ON merkle_nodes
BEGIN SELECT RAISE(ABORT, 'tree nodes are write-once: DELETE refused'); END;
"""


class LedgerStoreError(Exception):
    pass


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


def _row(r: sqlite3.Row | tuple) -> EntryRow:
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


_CP_COLUMNS = "id, size, note, created"
_COLUMNS = "seq, body, signature, leaf_hash, time, actor, action, item"


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")  # a committed entry survives power loss
    return conn


class LedgerWriter:
    """Appends inside one IMMEDIATE transaction: all rows of a batch land together or none do."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        tip = conn.execute(
            "SELECT seq, leaf_hash FROM entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        self.next_seq: int = 0 if tip is None else tip[0] + 1
        self.tip_hash: bytes | None = None if tip is None else bytes(tip[1])

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
        self._conn.execute(
            "INSERT OR IGNORE INTO metadata (sha256, doc) VALUES (?, ?)", (sha256, doc)
        )

    def has_action(self, item: str, action: str) -> bool:
        return (
            self._conn.execute(
                "SELECT 1 FROM entries WHERE item = ? AND action = ? LIMIT 1", (item, action)
            ).fetchone()
            is not None
        )

    def get_node(self, level: int, idx: int) -> bytes:
        r = self._conn.execute(
            "SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, idx)
        ).fetchone()
        if r is None:
            raise LedgerStoreError(f"tree node ({level}, {idx}) is missing")
        return bytes(r[0])

    def put_nodes(self, nodes: list[tuple[int, int, bytes]]) -> None:
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


class LedgerStore:
    """The SQLite file that holds entries, metadata documents and Merkle tree nodes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.is_file():
                raise LedgerStoreError(f"no ledger database at {self.path}")
            self._conn = connect(self.path)
        return self._conn

    @property
    def db(self) -> sqlite_utils.Database:
        """The same connection through sqlite-utils, for row-shaped (dict) reads."""
        return sqlite_utils.Database(self.conn)

    def create(self) -> None:
        # SQLite would create the file 0644 (less the umask); made 0600 first, its -wal and -shm
        # files take the same mode.
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.chmod(self.path, 0o600)
        conn = connect(self.path)
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def writing(self) -> Iterator[LedgerWriter]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield LedgerWriter(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # Reads -----------------------------------------------------------------------------------

    def size(self) -> int:
        r = self.conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM entries").fetchone()
        return int(r[0])

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def rows(self, start: int = 0) -> Iterator[EntryRow]:
        cur = self.conn.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE seq >= ? ORDER BY seq", (start,)
        )
        for r in cur:
            yield _row(r)

    def row(self, seq: int) -> EntryRow | None:
        r = self.conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE seq = ?", (seq,)).fetchone()
        return None if r is None else _row(r)

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

    def items(self) -> list[str]:
        """Every item with an ingest entry, in order of first ingest."""
        rows = self.db.query(
            "SELECT item FROM entries WHERE action IN ('ingest', 'received') GROUP BY item "
            "ORDER BY MIN(seq)"
        )
        return [r["item"] for r in rows]

    def items_with_prefix(self, prefix: str) -> list[str]:
        cur = self.conn.execute(
            "SELECT DISTINCT item FROM entries WHERE action IN ('ingest', 'received') "
            "AND item >= ? AND item < ? "
            "LIMIT 2",
            (prefix, prefix + "g"),
        )
        return [r[0] for r in cur]

    def metadata(self, sha256: str) -> bytes | None:
        r = self.conn.execute("SELECT doc FROM metadata WHERE sha256 = ?", (sha256,)).fetchone()
        return None if r is None else bytes(r[0])

    def all_metadata(self) -> Iterator[tuple[str, bytes]]:
        for r in self.conn.execute("SELECT sha256, doc FROM metadata ORDER BY sha256"):
            yield r[0], bytes(r[1])

    def checkpoints(self) -> list[CheckpointRow]:
        rows = self.db.query(f"SELECT {_CP_COLUMNS} FROM checkpoints ORDER BY id")
        return [CheckpointRow(**r) for r in rows]

    def checkpoint(self, checkpoint_id: int) -> CheckpointRow | None:
        r = self.conn.execute(
            f"SELECT {_CP_COLUMNS} FROM checkpoints WHERE id = ?", (checkpoint_id,)
        ).fetchone()
        return None if r is None else CheckpointRow(*r)

    def checkpoint_extras(self, checkpoint_id: int | None = None) -> list[CheckpointExtra]:
        sql = "SELECT checkpoint_id, kind, data, added FROM checkpoint_extras"
        args: tuple[int, ...] = ()
        if checkpoint_id is not None:
            sql += " WHERE checkpoint_id = ?"
            args = (checkpoint_id,)
        return [CheckpointExtra(*r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def get_node(self, level: int, idx: int) -> bytes:
        r = self.conn.execute(
            "SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, idx)
        ).fetchone()
        if r is None:
            raise LedgerStoreError(f"tree node ({level}, {idx}) is missing")
        return bytes(r[0])
