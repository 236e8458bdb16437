"""The PostgreSQL ledger adapter (psycopg 3, psycopg_pool): the same entries, tree nodes, metadata
documents and checkpoints as the SQLite adapter, for an archive several stations write at once.

Satisfies store.ports.Ledger; its physical layout (schema `custody_ledger`) is docs/FORMAT.md
Appendix A.4, the roles and privileges docs/BACKENDS.md. Append order is kept by the database:
every write transaction first takes a transaction-level advisory lock, so `next_seq`/`tip_hash`
read under it stay true until it commits; `seq` is the primary key and a trigger refuses any seq
but the next. UPDATE, DELETE and TRUNCATE are refused by triggers on every table, and the role an
archive connects as is meant to hold only SELECT and INSERT (nothing in this schema ever needs
more: a set-aside metadata document is an older version row, never rewritten). As with SQLite,
triggers and privileges stop accidents; signatures catch tampering.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from store.ports import (
    CheckpointExtra,
    CheckpointRow,
    EntryRow,
    LedgerAccessDenied,
    LedgerDamaged,
    LedgerFull,
    LedgerReadOnly,
    LedgerStoreError,
    LedgerUnavailable,
    LedgerUnreachable,
    LedgerUnreadable,
    NodeMissing,
    NodeRow,
)

SCHEMA = "custody_ledger"
SCHEMA_VERSION = 1
TABLES = ("entries", "metadata", "merkle_nodes", "checkpoints", "checkpoint_extras", "about")
WRITE_LOCK = 0x637573746F6479  # "custody": the advisory lock key every write transaction takes
PAGE = 2000  # entries read per query when walking the log
CONNECT_TIMEOUT = 5  # seconds: an unreachable server is said quickly
_RECORDING = "('ingest', 'received', 'derived')"

_DDL = f"""
CREATE SCHEMA {SCHEMA};
SET LOCAL search_path = {SCHEMA};
CREATE TABLE about (
    key text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE entries (
    seq bigint PRIMARY KEY CHECK (seq >= 0),
    body bytea NOT NULL,
    signature bytea NOT NULL,
    leaf_hash bytea NOT NULL,
    time text COLLATE "C" NOT NULL,
    actor text COLLATE "C" NOT NULL,
    action text COLLATE "C" NOT NULL,
    item text COLLATE "C"
);
CREATE INDEX entries_item ON entries (item, seq);
CREATE INDEX entries_action ON entries (action, seq);
CREATE TABLE metadata (
    sha256 text COLLATE "C" NOT NULL,
    version integer NOT NULL CHECK (version >= 0),
    doc bytea NOT NULL,
    added text COLLATE "C" NOT NULL
        DEFAULT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    PRIMARY KEY (sha256, version)
);
CREATE TABLE merkle_nodes (
    level integer NOT NULL,
    idx bigint NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE checkpoints (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    size bigint NOT NULL,
    note text COLLATE "C" NOT NULL,
    created text COLLATE "C" NOT NULL
);
CREATE TABLE checkpoint_extras (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    checkpoint_id bigint NOT NULL REFERENCES checkpoints (id),
    kind text COLLATE "C" NOT NULL,
    data text COLLATE "C" NOT NULL,
    added text COLLATE "C" NOT NULL
);

CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'raise_exception',
        MESSAGE = TG_TABLE_NAME || ' is append-only: ' || TG_OP || ' refused';
END $$;
CREATE FUNCTION entries_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq IS DISTINCT FROM (SELECT COALESCE(MAX(seq) + 1, 0) FROM {SCHEMA}.entries) THEN
        RAISE EXCEPTION USING ERRCODE = 'raise_exception',
            MESSAGE = 'ledger entries are append-only: out-of-order INSERT refused';
    END IF;
    RETURN NEW;
END $$;
CREATE FUNCTION metadata_write_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM {SCHEMA}.entries WHERE item = NEW.sha256
               AND action IN {_RECORDING}) THEN
        RAISE EXCEPTION USING ERRCODE = 'raise_exception',
            MESSAGE = 'metadata is write-once: a recorded item''s document cannot be replaced';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER entries_in_order BEFORE INSERT ON entries
    FOR EACH ROW EXECUTE FUNCTION entries_in_order();
CREATE TRIGGER metadata_write_once BEFORE INSERT ON metadata
    FOR EACH ROW WHEN (NEW.version > 0) EXECUTE FUNCTION metadata_write_once();
"""

_REFUSALS = "\n".join(
    f"CREATE TRIGGER {t}_no_change BEFORE UPDATE OR DELETE ON {t} "
    f"FOR EACH ROW EXECUTE FUNCTION refuse();\n"
    f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION refuse();"
    for t in TABLES
)

_COLUMNS = "seq, body, signature, leaf_hash, time, actor, action, item"
_CP_COLUMNS = "id, size, note, created"
# the newest version of each item's document is its document; older ones were set aside
_CURRENT = (f"SELECT DISTINCT ON (sha256) sha256, doc FROM {SCHEMA}.metadata "
            "ORDER BY sha256, version DESC")


def _entry(r: Sequence[Any]) -> EntryRow:
    return EntryRow(seq=int(r[0]), body=bytes(r[1]), signature=bytes(r[2]),
                    leaf_hash=bytes(r[3]), time=r[4], actor=r[5], action=r[6], item=r[7])


def _checkpoint(r: Sequence[Any]) -> CheckpointRow:
    return CheckpointRow(int(r[0]), int(r[1]), r[2], r[3])


def describe(url: str) -> str:
    """The URL as a user may see it: role@host:port/database, never a password. ValueError for
    what is no PostgreSQL URL."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"not a postgresql:// URL: {url!r}")
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise ValueError(f"malformed PostgreSQL URL: {str(exc).strip().splitlines()[0]}") from None
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


def has_password(url: str) -> bool:
    return bool(conninfo_to_dict(url).get("password"))


class _Reads:
    """The reads a decision under the write lock needs, shared by the ledger and its transaction."""

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def rows_for_item(self, item: str) -> list[EntryRow]:
        rows = self._all(f"SELECT {_COLUMNS} FROM {SCHEMA}.entries WHERE item = %s ORDER BY seq",
                         (item,))
        return [_entry(r) for r in rows]

    def rows_with_action(self, *actions: str) -> list[EntryRow]:
        rows = self._all(f"SELECT {_COLUMNS} FROM {SCHEMA}.entries WHERE action = ANY(%s) "
                         "ORDER BY seq", (list(actions),))
        return [_entry(r) for r in rows]

    def has_action(self, item: str, action: str) -> bool:
        return bool(self._all(f"SELECT 1 FROM {SCHEMA}.entries WHERE item = %s AND action = %s "
                              "LIMIT 1", (item, action)))

    def metadata(self, sha256: str) -> bytes | None:
        r = self._all(f"SELECT doc FROM {SCHEMA}.metadata WHERE sha256 = %s "
                      "ORDER BY version DESC LIMIT 1", (sha256,))
        return bytes(r[0][0]) if r else None

    def get_node(self, level: int, idx: int) -> bytes:
        r = self._all(f"SELECT hash FROM {SCHEMA}.merkle_nodes WHERE level = %s AND idx = %s",
                      (level, idx))
        if not r:
            raise NodeMissing(f"tree node ({level}, {idx}) is missing")
        return bytes(r[0][0])

    def get_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """One query for all of them (a proof's ~2 log n nodes), not a round trip each."""
        if not keys:
            return {}
        rows = self._all(f"SELECT n.level, n.idx, n.hash FROM {SCHEMA}.merkle_nodes n "
                         "JOIN unnest(%s::int[], %s::bigint[]) AS k(level, idx) "
                         "ON n.level = k.level AND n.idx = k.idx",
                         ([k[0] for k in keys], [k[1] for k in keys]))
        return {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}


class PostgresTransaction(_Reads):
    """One write transaction holding the advisory write lock: all its rows land or none do.

    Entries and tree nodes are buffered and sent in one pipelined batch before any other
    statement and at commit (a round trip per row made batched appends ~5x slower); the tree
    nodes this transaction wrote or read are answered from memory (complete nodes never change)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._entries: list[tuple[Any, ...]] = []
        self._new_nodes: list[NodeRow] = []
        self._nodes: dict[tuple[int, int], bytes] = {}
        tip = self._all(f"SELECT seq, leaf_hash, time FROM {SCHEMA}.entries "
                        "ORDER BY seq DESC LIMIT 1")
        self.next_seq: int = 0 if not tip else int(tip[0][0]) + 1
        self.tip_hash: bytes | None = None if not tip else bytes(tip[0][1])
        self.tip_time: str | None = None if not tip else str(tip[0][2])

    def flush(self) -> None:
        """Send the buffered entries, then their nodes (the order triggers check)."""
        with self._conn.cursor() as cur:
            if self._entries:
                with cur.copy(f"COPY {SCHEMA}.entries ({_COLUMNS}) FROM STDIN") as copy:
                    for entry in self._entries:
                        copy.write_row(entry)
                self._entries = []
            if self._new_nodes:
                with cur.copy(f"COPY {SCHEMA}.merkle_nodes (level, idx, hash) FROM STDIN") as copy:
                    for node in self._new_nodes:
                        copy.write_row(node)
                self._new_nodes = []

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.flush()  # every read sees what this transaction wrote
        cur = self._conn.execute(sql, args)
        return cur.fetchall() if cur.description is not None else []

    def get_node(self, level: int, idx: int) -> bytes:
        found = self._nodes.get((level, idx))
        if found is None:
            found = super().get_node(level, idx)
            self._nodes[(level, idx)] = found
        return found

    def append(self, row: EntryRow) -> None:
        if row.seq != self.next_seq:
            raise LedgerStoreError(f"entry {row.seq} appended where {self.next_seq} was due")
        self._entries.append((row.seq, row.body, row.signature, row.leaf_hash, row.time,
                              row.actor, row.action, row.item))
        self.next_seq += 1
        self.tip_hash = row.leaf_hash
        self.tip_time = row.time

    def put_metadata(self, sha256: str, doc: bytes) -> None:
        """A new version row; an older one (unsigned: nothing recorded the item yet) stays as the
        set-aside document. Once an entry records the item, a trigger refuses a new version."""
        found = self._all(f"SELECT version, doc FROM {SCHEMA}.metadata WHERE sha256 = %s "
                          "ORDER BY version DESC LIMIT 1", (sha256,))
        if found and bytes(found[0][1]) == doc:
            return
        version = int(found[0][0]) + 1 if found else 0
        self._conn.execute(f"INSERT INTO {SCHEMA}.metadata (sha256, version, doc) "
                           "VALUES (%s, %s, %s)", (sha256, version, doc))

    def put_nodes(self, nodes: Sequence[NodeRow]) -> None:
        for level, idx, digest in nodes:
            self._nodes[(level, idx)] = digest
        self._new_nodes.extend(nodes)

    def latest_checkpoint(self) -> CheckpointRow | None:
        r = self._all(f"SELECT {_CP_COLUMNS} FROM {SCHEMA}.checkpoints ORDER BY id DESC LIMIT 1")
        return _checkpoint(r[0]) if r else None

    def put_checkpoint(self, size: int, note: str, created: str) -> CheckpointRow:
        r = self._all(f"INSERT INTO {SCHEMA}.checkpoints (size, note, created) "
                      "VALUES (%s, %s, %s) RETURNING id", (size, note, created))
        return CheckpointRow(int(r[0][0]), size, note, created)

    def put_checkpoint_extra(self, checkpoint_id: int, kind: str, data: str, added: str) -> None:
        self.flush()
        self._conn.execute(f"INSERT INTO {SCHEMA}.checkpoint_extras "
                           "(checkpoint_id, kind, data, added) VALUES (%s, %s, %s, %s)",
                           (checkpoint_id, kind, data, added))


class PostgresLedger(_Reads):
    """The ledger in schema `custody_ledger` of a PostgreSQL database, reached through a small
    connection pool. `url` is a libpq URL without a password (PGPASSWORD, ~/.pgpass or the
    libpq environment give one). Nothing connects before `open()`, `create()` or a first read."""

    def __init__(self, url: str, *, max_connections: int = 4) -> None:
        self.label = describe(url)  # ValueError for what is no PostgreSQL URL
        self.url = url
        self._max = max_connections
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None

    # Errors -----------------------------------------------------------------------------------

    def _connect_error(self, exc: psycopg.Error) -> LedgerStoreError:
        """What a failed connection means (libpq reports refusals without an SQLSTATE, so the
        server's own words are kept in the message)."""
        said = " ".join(str(exc).split())
        state = getattr(exc, "sqlstate", None)
        if state == "3D000" or "does not exist" in said and "database" in said:
            return LedgerDamaged(f"the ledger database {self.label} does not exist")
        if state in {"28P01", "28000", "42501"} or "authentication failed" in said \
                or "password" in said or "role" in said and "does not exist" in said \
                or "no pg_hba.conf entry" in said:
            return LedgerAccessDenied(f"the PostgreSQL server refuses these credentials for "
                                      f"{self.label} ({said.split(': ', 2)[-1][:160]})")
        return LedgerUnreachable(f"the PostgreSQL server of {self.label} cannot be reached")

    def _failure(self, exc: psycopg.Error, writing: bool) -> LedgerStoreError:
        state = getattr(exc, "sqlstate", None) or ""
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if state == "53100" or state.startswith("53"):
            return LedgerFull(f"no space left for the ledger {self.label}: {said}")
        if state == "42P01" or state == "3F000":
            return LedgerDamaged(f"{self.label} holds no ledger (schema {SCHEMA}): {said}")
        if state.startswith("XX"):
            return LedgerDamaged(f"the ledger {self.label} is damaged: {said}")
        if state == "25006":
            return LedgerReadOnly(f"{self.label} is read-only here (a standby?): this command "
                                  "needs to write to the archive")
        if state == "42501":
            return (LedgerStoreError(f"{self.label} refused the write: {said}") if writing
                    else LedgerAccessDenied(f"{self.label} may not be read by this role: {said}"))
        if isinstance(exc, psycopg.OperationalError) and not state:
            return LedgerUnreachable(f"the PostgreSQL server of {self.label} cannot be reached "
                                     f"(connection lost: {said})")
        if writing:
            return LedgerStoreError(f"{self.label} refused the write: {said}")
        return LedgerUnreadable(f"cannot read the ledger {self.label}: {said}")

    # Connecting -------------------------------------------------------------------------------

    def _probe(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None

    def _start_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        if self._pool is None:
            self._probe().close()  # a clear error for a server that cannot be used at all
            pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                self.url, min_size=1, max_size=self._max, open=False, timeout=60,
                kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
                name="custody-ledger")
            try:
                pool.open(wait=True, timeout=30)
            except PoolTimeout:
                pool.close()
                raise LedgerUnreachable(f"the PostgreSQL server of {self.label} stopped "
                                        "answering") from None
            self._pool = pool
        return self._pool

    @contextmanager
    def _connection(self, writing: bool = False) -> Iterator[psycopg.Connection[Any]]:
        pool = self._start_pool()
        try:
            with pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise LedgerUnreachable(f"the PostgreSQL server of {self.label} does not answer "
                                    "(no connection within 60 s)") from None
        except psycopg.Error as exc:
            raise self._failure(exc, writing) from None

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            cur = conn.execute(sql, args)
            return cur.fetchall() if cur.description is not None else []

    def open(self) -> None:
        """Connect, and check that the database holds a ledger (LedgerDamaged if not)."""
        found = self._all("SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                          "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                          (SCHEMA,))
        have = {r[0] for r in found}
        if not have:
            raise LedgerDamaged(f"{self.label} holds no ledger (no schema {SCHEMA})")
        if missing := [t for t in TABLES if t not in have]:
            raise LedgerDamaged(f"{self.label} has no {SCHEMA}.{missing[0]} table: it is not "
                                "a ledger")

    def create(self, writer: str | None = None) -> None:
        """Make the ledger's schema in this database, as the connecting role (its owner), or
        take one its owner made already, empty. LedgerStoreError if the database already holds
        a ledger with entries. `writer`: a role granted what an archive needs (SELECT, INSERT)
        and nothing more (docs/BACKENDS.md)."""
        try:
            self._start_pool()
        except LedgerDamaged:  # no such database: init makes none, an administrator does
            raise LedgerUnavailable(f"there is no database {self.label}: create it first "
                                    "(docs/BACKENDS.md)") from None
        try:
            self._create(writer)
        except LedgerStoreError as exc:
            if "permission denied" in str(exc):
                raise LedgerAccessDenied(f"{self.label}: this role may not create the ledger's "
                                         f"schema ({exc}); have its owner create it "
                                         "(docs/BACKENDS.md)") from None
            raise
        self.open()

    def _create(self, writer: str | None) -> None:
        with self._connection(writing=True) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                                  (SCHEMA,)).fetchone()
            if exists is not None:
                size = conn.execute(f"SELECT COUNT(*) FROM {SCHEMA}.entries").fetchone()
                if size is not None and size[0] > 0:
                    raise LedgerStoreError(f"{self.label} already holds a ledger ({size[0]} "
                                           "entries): an archive needs a database of its own")
            else:
                conn.execute(_DDL)
                conn.execute(f"SET LOCAL search_path = {SCHEMA}")
                conn.execute(_REFUSALS)
                conn.execute(f"INSERT INTO {SCHEMA}.about (key, value) VALUES "
                             "('schema_version', %s)", (str(SCHEMA_VERSION),))
                self._revoke(conn)
            if writer is not None:
                self._grant(conn, writer)

    @staticmethod
    def _revoke(conn: psycopg.Connection[Any]) -> None:
        """Nobody but the owner gets anything by default; the owner itself gives up UPDATE,
        DELETE and TRUNCATE (it could grant them back: the triggers still refuse)."""
        tables = ", ".join(f"{SCHEMA}.{t}" for t in TABLES)
        conn.execute(f"REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC")
        conn.execute(f"REVOKE ALL ON {tables} FROM PUBLIC")
        conn.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {tables} FROM CURRENT_USER")

    @staticmethod
    def _grant(conn: psycopg.Connection[Any], writer: str) -> None:
        from psycopg import sql

        role = sql.Identifier(writer)
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(SCHEMA), role))
        for table in TABLES:
            conn.execute(sql.SQL("GRANT SELECT, INSERT ON {}.{} TO {}").format(
                sql.Identifier(SCHEMA), sql.Identifier(table), role))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @contextmanager
    def writing(self) -> Iterator[PostgresTransaction]:
        """One transaction under the advisory write lock: committed on a clean exit, rolled back
        on any error; PostgreSQL's failures become the port's errors."""
        with self._connection(writing=True) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            transaction = PostgresTransaction(conn)
            yield transaction
            transaction.flush()  # the buffered rows, before the commit

    # Reads ------------------------------------------------------------------------------------

    def size(self) -> int:
        return int(self._all(f"SELECT COALESCE(MAX(seq) + 1, 0) FROM {SCHEMA}.entries")[0][0])

    def rows(self, start: int = 0) -> Iterator[EntryRow]:
        """Entries from `start` up to the size when the walk began, a page per query (no
        connection is held between pages)."""
        end = self.size()
        while start < end:
            page = self._all(f"SELECT {_COLUMNS} FROM {SCHEMA}.entries WHERE seq >= %s "
                             "AND seq < %s ORDER BY seq LIMIT %s", (start, end, PAGE))
            if not page:
                return
            for r in page:
                yield _entry(r)
            start = int(page[-1][0]) + 1

    def row(self, seq: int) -> EntryRow | None:
        r = self._all(f"SELECT {_COLUMNS} FROM {SCHEMA}.entries WHERE seq = %s", (seq,))
        return _entry(r[0]) if r else None

    def items(self) -> list[str]:
        return [r[0] for r in self._all(f"SELECT item FROM {SCHEMA}.entries WHERE action IN "
                                        f"{_RECORDING} GROUP BY item ORDER BY MIN(seq)")]

    def items_with_prefix(self, prefix: str) -> list[str]:
        return [r[0] for r in self._all(
            f"SELECT DISTINCT item FROM {SCHEMA}.entries WHERE action IN {_RECORDING} "
            "AND item >= %s AND item < %s LIMIT 2", (prefix, prefix + "g"))]

    def recorded(self, item: str) -> bool:
        return bool(self._all(f"SELECT 1 FROM {SCHEMA}.entries WHERE item = %s AND action IN "
                              f"{_RECORDING} LIMIT 1", (item,)))

    def metadata_items(self) -> Iterator[str]:
        for r in self._all(f"SELECT DISTINCT sha256 FROM {SCHEMA}.metadata ORDER BY sha256"):
            yield r[0]

    def all_metadata(self) -> Iterator[tuple[str, bytes]]:
        after = ""
        while True:  # a page at a time: documents can be large
            page = self._all(f"SELECT * FROM ({_CURRENT}) m WHERE sha256 > %s "
                             "ORDER BY sha256 LIMIT %s", (after, PAGE // 10))
            for sha, doc in page:
                yield sha, bytes(doc)
            if len(page) < PAGE // 10:
                return
            after = page[-1][0]

    def set_aside_metadata(self) -> Iterator[tuple[str, bytes, str]]:
        """(sha256, document, when a newer one replaced it) of every document set aside, in the
        order they were set aside."""
        rows = self._all(
            f"SELECT m.sha256, m.doc, n.added FROM {SCHEMA}.metadata m "
            f"JOIN {SCHEMA}.metadata n ON n.sha256 = m.sha256 AND n.version = m.version + 1 "
            "ORDER BY n.added, m.sha256, m.version")
        return iter([(sha, bytes(doc), added) for sha, doc, added in rows])

    def checkpoints(self) -> list[CheckpointRow]:
        return [_checkpoint(r) for r in
                self._all(f"SELECT {_CP_COLUMNS} FROM {SCHEMA}.checkpoints ORDER BY id")]

    def latest_checkpoint(self) -> CheckpointRow | None:
        r = self._all(f"SELECT {_CP_COLUMNS} FROM {SCHEMA}.checkpoints ORDER BY id DESC LIMIT 1")
        return _checkpoint(r[0]) if r else None

    def checkpoint(self, checkpoint_id: int) -> CheckpointRow | None:
        r = self._all(f"SELECT {_CP_COLUMNS} FROM {SCHEMA}.checkpoints WHERE id = %s",
                      (checkpoint_id,))
        return _checkpoint(r[0]) if r else None

    def checkpoint_extras(self, checkpoint_id: int | None = None) -> list[CheckpointExtra]:
        sql = f"SELECT checkpoint_id, kind, data, added FROM {SCHEMA}.checkpoint_extras"
        args: tuple[int, ...] = ()
        if checkpoint_id is not None:
            sql += " WHERE checkpoint_id = %s"
            args = (checkpoint_id,)
        return [CheckpointExtra(int(r[0]), r[1], r[2], r[3])
                for r in self._all(sql + " ORDER BY id", args)]

    def nodes_between(self, level: int, first: int, last: int) -> list[tuple[int, bytes]]:
        rows = self._all(f"SELECT idx, hash FROM {SCHEMA}.merkle_nodes WHERE level = %s "
                         "AND idx BETWEEN %s AND %s ORDER BY idx", (level, first, last))
        return [(int(i), bytes(h)) for i, h in rows]

    def nodes_beyond(self, size: int, limit: int) -> list[tuple[int, int]]:
        rows = self._all(
            f"SELECT level, idx FROM {SCHEMA}.merkle_nodes WHERE CASE WHEN level BETWEEN 0 AND 62 "
            "THEN idx < 0 OR idx >= (%s::bigint >> level) ELSE true END "
            "ORDER BY level, idx LIMIT %s", (size, limit))
        return [(int(level), int(idx)) for level, idx in rows]


def main(argv: list[str] | None = None) -> int:
    """`python -m store.pg_ledger OWNER_URL --writer ROLE`: the owner makes the ledger's schema in
    an empty database and grants the archive's role what it needs (docs/BACKENDS.md)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m store.pg_ledger", description=main.__doc__)
    parser.add_argument("owner_url", help="postgresql://OWNER@HOST:PORT/DATABASE (no password)")
    parser.add_argument("--writer", required=True, help="the role custody.json's URL names")
    args = parser.parse_args(argv)
    try:
        PostgresLedger(args.owner_url).create(writer=args.writer)
    except (ValueError, LedgerStoreError) as exc:
        print(f"pg_ledger: {exc}", file=sys.stderr)
        return 3
    print(f"schema {SCHEMA} ready in {describe(args.owner_url)}; {args.writer} may append",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
