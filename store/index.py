"""The SQLite adapter of the search index port (store/index_port.py): the rows about items (time,
place, device, type, names, notes, cases, incidents) in their own SQLite file, ARCHIVE/index.db,
with an R*Tree for places and an FTS5 trigram table for text when this SQLite has them; and a
track's temporary tables.

Bytes and rows only; what the rows mean is custody's business (custody/search/indexer.py). Nothing
here is evidence: the file can be deleted at any time and is rebuilt from the ledger.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from operator import itemgetter
from pathlib import Path
from typing import Any

from store.index_port import (
    COMPARED,
    Box,
    IncidentRow,
    IndexStoreError,
    IndexUnusable,
    ItemQuery,
    ItemRow,
    LegRow,
    LinkKind,
    MakeLegs,
    Mode,
    PointRow,
)
from store.index_rows import (
    FIXES_SQL,
    INCIDENT_COLUMNS,
    ITEM_COLUMNS,
    LEG_COLUMNS,
    apply_filter,
    incident_row,
    item_row,
    like_escape,
    pack,
    time_match,
)
from store.ports import LedgerStoreError
from store.sqlite_ledger import open_for_reading

INDEX_FILE = "index.db"  # beside ledger.db
SCHEMA_VERSION = 6  # 2: flagged GPS fixes (null island, no fix, poor DOP) are no place;
#                   3: item_phash, item_unhashed (look-alikes); 4: items.c2pa (the verdict);
#                   5: facts are the ingest's reading, a later one only warns (rebuilt once);
#                   6: items.row_json, each item's search row as written (rebuilt once)
BUSY_TIMEOUT_MS = 120_000
BATCH = 2000
NO_TIME = 1e18  # time bounds of an item's place row when it has no time: matches any time

_TABLES = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    first_seq INTEGER NOT NULL,
    captured_at TEXT,           -- UTC, sortable: YYYY-MM-DDTHH:MM:SS.ffffffZ
    captured_text TEXT,         -- as the metadata document has it
    captured_t REAL,            -- Unix seconds
    basis TEXT,
    lat REAL, lon REAL, alt REAL,
    make TEXT, model TEXT,
    device TEXT,                -- lower-case "make model", for substring search
    mime TEXT,
    warnings TEXT,              -- JSON list, or NULL
    names TEXT, notes TEXT, cases TEXT, incidents TEXT, tags TEXT, -- lists, for output (_pack)
    c2pa TEXT,                  -- the C2PA verdict of the signed metadata document
    row_json BLOB               -- the row `search --json` writes for it (UTF-8), or NULL: stale
);
CREATE INDEX IF NOT EXISTS items_time ON items(captured_at);
CREATE INDEX IF NOT EXISTS items_place ON items(lat, lon);
CREATE INDEX IF NOT EXISTS items_mime ON items(mime);
CREATE INDEX IF NOT EXISTS items_unrendered ON items(id) WHERE row_json IS NULL;
CREATE TABLE IF NOT EXISTS item_names (
    sha256 TEXT NOT NULL, name TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (sha256, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS item_cases (
    case_id TEXT NOT NULL, sha256 TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (case_id, sha256)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS item_cases_item ON item_cases(sha256);
CREATE TABLE IF NOT EXISTS item_incidents (
    incident TEXT NOT NULL, sha256 TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (incident, sha256)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS item_incidents_item ON item_incidents(sha256);
CREATE TABLE IF NOT EXISTS item_tags (
    tag TEXT NOT NULL, sha256 TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (tag, sha256)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS item_tags_item ON item_tags(sha256);
CREATE TABLE IF NOT EXISTS notes (
    seq INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_item ON notes(sha256, seq);
CREATE TABLE IF NOT EXISTS incidents (
    incident TEXT PRIMARY KEY, seq INTEGER NOT NULL, case_id TEXT, date TEXT,
    t_lo REAL, t_hi REAL, offset_unknown INTEGER NOT NULL DEFAULT 0,
    lat REAL, lon REAL, place_name TEXT, description TEXT
);
CREATE INDEX IF NOT EXISTS incidents_case ON incidents(case_id);
CREATE TABLE IF NOT EXISTS item_phash (
    sha256 TEXT NOT NULL, frame INTEGER NOT NULL,  -- 0 for an image, keyframe order for a video
    t REAL,                     -- the keyframe's time in seconds, NULL for an image
    hash TEXT NOT NULL,         -- 64-bit perceptual hash, 16 hex digits
    PRIMARY KEY (sha256, frame)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS item_unhashed (sha256 TEXT PRIMARY KEY, reason TEXT NOT NULL)
    WITHOUT ROWID;
"""
# An item's rendered search row is made from its items row and, for the case its incidents bring,
# the incidents table (custody/search/render.py). Any change to either makes the rendered row
# NULL (stale) here, in SQL, whoever writes: it is rendered again at the next refresh. Only
# `put_rendered` writes row_json itself (into a NULL: these do not fire). `incident` is the only
# unique key of `incidents`, so the row an INSERT OR REPLACE deletes (which fires no DELETE
# trigger) has NEW.incident: the INSERT trigger covers it. Written as sqlite_master keeps them
# (no IF NOT EXISTS, single spaces): a file whose triggers differ is mended on open and named by
# verify (`rendering_guarded`).
_TRIGGERS = [
    "CREATE TRIGGER items_stale AFTER UPDATE ON items "
    "WHEN OLD.row_json IS NOT NULL AND NEW.row_json IS OLD.row_json "
    "BEGIN UPDATE items SET row_json = NULL WHERE id = NEW.id; END",
    *(f"CREATE TRIGGER incidents_stale_{when.lower()} AFTER {when} ON incidents "
      f"BEGIN UPDATE items SET row_json = NULL WHERE row_json IS NOT NULL AND sha256 IN "
      f"(SELECT sha256 FROM item_incidents WHERE incident IN ({which})); END"
      for when, which in (("INSERT", "NEW.incident"), ("DELETE", "OLD.incident"),
                          ("UPDATE", "OLD.incident, NEW.incident"))),
]
_GEO_RTREE = ("CREATE VIRTUAL TABLE IF NOT EXISTS item_geo USING rtree("
              "id, min_t, max_t, min_lat, max_lat, min_lon, max_lon)")
_GEO_PLAIN = """
CREATE TABLE IF NOT EXISTS item_geo (id INTEGER PRIMARY KEY, min_t REAL, max_t REAL,
    min_lat REAL, max_lat REAL, min_lon REAL, max_lon REAL);
CREATE INDEX IF NOT EXISTS item_geo_place ON item_geo(min_lat, min_lon);
"""
_TEXT_FTS = "CREATE VIRTUAL TABLE IF NOT EXISTS item_text USING fts5(body, tokenize='trigram')"
_TEXT_PLAIN = "CREATE TABLE IF NOT EXISTS item_text (rowid INTEGER PRIMARY KEY, body TEXT)"
# An item's output lists for a batch of items, in refresh_item's order (names, notes, cases,
# incidents, tags), each item's values in the order refresh_item reads them.
REFRESH_BATCH = 500
_LIST_SQL = (
    "SELECT sha256, name FROM item_names WHERE sha256 IN ({marks}) ORDER BY sha256, seq, name",
    "SELECT sha256, text FROM notes WHERE sha256 IN ({marks}) ORDER BY sha256, seq",
    "SELECT sha256, case_id FROM item_cases WHERE sha256 IN ({marks}) "
    "ORDER BY sha256, seq, case_id",
    "SELECT sha256, incident FROM item_incidents WHERE sha256 IN ({marks}) "
    "ORDER BY sha256, seq, incident",
    "SELECT sha256, tag FROM item_tags WHERE sha256 IN ({marks}) ORDER BY sha256, seq, tag",
)
# No item, nor any row keyed by an item's id or SHA-256 that a new item could collide with.
# Nor any list row: an item's lists are made from what the fill holds, so a tag, note or case
# written for it before (an entry about an item the log records later) must not be there.
_EMPTY_SQL = "SELECT " + " AND ".join(
    f"NOT EXISTS (SELECT 1 FROM {t})"
    for t in ("items", "item_geo", "item_text", "item_phash", "item_unhashed", "item_names",
              "notes", "item_cases", "item_incidents", "item_tags"))
_DROP = ["item_unhashed", "item_phash", "item_text", "item_geo", "incidents", "notes", "item_tags",
         "item_incidents", "item_cases", "item_names", "items", "state"]
_SECURE_DELETE = {0: "OFF", 1: "ON", 2: "FAST"}


def _drop_tables(conn: sqlite3.Connection, *, zero: bool) -> None:
    """Drop every table; `zero` False: without overwriting the pages they free. Debian's SQLite
    is built with SECURE_DELETE, so a DROP writes every page of the old index again, as zeros,
    into the WAL: 136 MiB and about 0.8 s for a 100,000-item index, before the rebuild that
    follows writes the same pages once more (docs/PERFORMANCE.md "Round 32"). The caller says
    when zeroing hides nothing (`SearchIndex.reset`). The connection's own setting (of the main
    database) is put back after."""
    was = conn.execute("PRAGMA main.secure_delete").fetchone()[0]
    if not zero:
        conn.execute("PRAGMA main.secure_delete = OFF")
    try:
        for table in _DROP:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        conn.execute(f"PRAGMA main.secure_delete = {_SECURE_DELETE.get(was, 'ON')}")


# table: the SQL giving its rows in the port's logical form (store/index_port.py COMPARED): keyed
# by item SHA-256, not by this file's row ids, ordered by the key, so two indexes compare in one
# merge.
_COMPARED_SQL: dict[str, str] = {
    "items": "SELECT sha256, first_seq, captured_at, captured_text, captured_t, basis, lat, lon, "
             "alt, make, model, device, mime, warnings, names, notes, cases, incidents, tags, "
             "c2pa FROM items ORDER BY sha256",
    "item_names": "SELECT sha256, name, seq FROM item_names ORDER BY sha256, name",
    "item_cases": "SELECT sha256, case_id, seq FROM item_cases ORDER BY sha256, case_id",
    "item_incidents": "SELECT sha256, incident, seq FROM item_incidents "
                      "ORDER BY sha256, incident",
    "item_tags": "SELECT sha256, tag, seq FROM item_tags ORDER BY sha256, tag",
    "notes": "SELECT sha256, seq, text FROM notes ORDER BY sha256, seq",
    "incidents": "SELECT incident, seq, case_id, date, t_lo, t_hi, offset_unknown, lat, lon, "
                 "place_name, description FROM incidents ORDER BY incident",
    "item_geo": "SELECT COALESCE(i.sha256, '#' || g.id), g.min_t, g.max_t, g.min_lat, "
                "g.max_lat, g.min_lon, g.max_lon FROM item_geo g LEFT JOIN items i "
                "ON i.id = g.id ORDER BY 1",
    "item_text": "SELECT COALESCE(i.sha256, '#' || t.rowid), t.body FROM item_text t "
                 "LEFT JOIN items i ON i.id = t.rowid ORDER BY 1",
    "item_phash": "SELECT sha256, frame, t, hash FROM item_phash ORDER BY sha256, frame",
    "item_unhashed": "SELECT sha256, reason FROM item_unhashed ORDER BY sha256",
}
assert _COMPARED_SQL.keys() == COMPARED.keys()


class LocalIndex:
    """The index of an archive in a local folder: ARCHIVE/index.db (the IndexLocation port)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def path(self) -> Path:
        return self.root / INDEX_FILE

    @property
    def name(self) -> str:
        return self.path.name

    def open(self) -> IndexStore:
        path = self.path
        # os.access is False on a read-only mount, even for root
        may_write = os.access(self.root, os.W_OK) and (
            not path.exists() or os.access(path, os.W_OK))
        if not may_write:  # a write-blocked copy: nothing is created or changed beside the ledger
            return IndexStore(None)
        store = IndexStore(path)
        try:
            store.conn  # noqa: B018 - opens, creates or repairs the file
        except (sqlite3.OperationalError, OSError):
            store = IndexStore(None)
        return store

    def open_existing(self) -> IndexStore | None:
        if not self.path.exists():
            return None
        return IndexStore.for_reading(self.path)


class IndexStore:
    """The index database: `index.db` beside the ledger, or in memory (path None)."""

    def __init__(self, path: Path | None, *, rtree: bool | None = None,
                 fts: bool | None = None, spill: bool = False) -> None:
        self.path = path
        # With no path: in memory, or (`spill`) an unnamed database SQLite keeps in a temporary
        # file of its own, deleted when closed, its cache bounded: verify's scratch replay of a
        # large archive would otherwise hold the whole index in RAM (docs/PERFORMANCE.md).
        self._spill = spill and path is None
        self._want_rtree = rtree
        self._want_fts = fts
        self._conn: sqlite3.Connection | None = None
        self.rtree = False
        self.fts = False
        self._bulk: _Bulk | None = None  # rows held back while filling an empty index
        self._render_new: Callable[[ItemRow], bytes | None] | None = None  # render_new_items

    # Opening ------------------------------------------------------------------------------------

    @classmethod
    def for_reading(cls, path: Path) -> IndexStore:
        """An existing index file opened only to be read: nothing is created, repaired or
        rebuilt (verify compares it with the ledger). Raises IndexUnusable for a file that is
        not SQLite, or not an index of this version."""
        store = cls(path)
        try:
            conn, _ = open_for_reading(path)
        except LedgerStoreError as exc:
            raise IndexUnusable(str(exc)) from exc
        try:
            store._take_as_it_is(conn, path)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise IndexUnusable(str(exc)) from exc
        except IndexUnusable:
            conn.close()
            raise
        store._conn = conn
        return store

    def _take_as_it_is(self, conn: sqlite3.Connection, where: object) -> None:
        """An index to be read as it is (verify): of this version, else IndexUnusable; nothing
        created, repaired or rebuilt (`_prepare` would)."""
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "state" not in have or self._state(conn, "schema") != str(SCHEMA_VERSION):
            raise IndexUnusable(f"{where} is not a search index of version {SCHEMA_VERSION}")
        self.rtree = self._state(conn, "rtree") == "1"
        self.fts = self._state(conn, "fts") == "1"

    @property
    def location(self) -> str | None:
        return None if self.path is None else str(self.path)

    def scratch(self) -> IndexStore:
        return IndexStore(None, rtree=self.rtree, fts=self.fts, spill=True)

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, every row held back by a bulk fill written first: whatever uses it
        (a read, a DELETE, a write the fill does not hold back) sees what was written before."""
        if self._bulk is not None and self._bulk.held:
            self._flush()
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        target = str(self.path) if self.path is not None else "" if self._spill else ":memory:"
        try:
            conn = self._connect(target)
        except sqlite3.OperationalError:
            raise  # cannot open or write it (a read-only folder): the caller decides
        except sqlite3.DatabaseError:
            if self.path is None:
                raise
            # Derived state: a damaged index is deleted and rebuilt, never trusted.
            for suffix in ("", "-wal", "-shm"):
                with suppress(FileNotFoundError):
                    Path(str(self.path) + suffix).unlink()
            conn = self._connect(target)
        return conn

    def _connect(self, target: str) -> sqlite3.Connection:
        named = target not in (":memory:", "")
        if named and not os.path.exists(target):
            # Owner-only (SQLite would make it 0644 less the umask; its -wal, -shm follow it).
            # Only a new file: closing any descriptor of a file drops every POSIX lock this
            # process holds on it, a lock another connection here (a web worker's) relies on.
            with suppress(OSError):  # a read-only folder: sqlite3 says so below
                os.close(os.open(target, os.O_RDONLY | os.O_CREAT, 0o600))
        conn = sqlite3.connect(target, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if named:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # derived: a lost tail is re-indexed
            conn.execute("PRAGMA temp_store = FILE")  # a huge track's tables go to disk
            conn.execute("PRAGMA foreign_keys = OFF")
            self._prepare(conn)
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        version = None
        if "state" in have:
            r = conn.execute("SELECT value FROM state WHERE key = 'schema'").fetchone()
            version = r[0] if r else None
        if version != str(SCHEMA_VERSION) or self._mismatch(conn):
            self._create(conn, drop=bool(have))
        elif not _triggers_intact(conn):
            # dropped or altered by hand (or another trigger added): the kept rows may be stale
            conn.execute("BEGIN IMMEDIATE")
            try:
                _set_triggers(conn)
                conn.execute("UPDATE items SET row_json = NULL WHERE row_json IS NOT NULL")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        self.rtree = self._state(conn, "rtree") == "1"
        self.fts = self._state(conn, "fts") == "1"

    def _mismatch(self, conn: sqlite3.Connection) -> bool:
        """A forced choice of R*Tree or FTS5 differs from the one the file was built with."""
        for key, want in (("rtree", self._want_rtree), ("fts", self._want_fts)):
            if want is not None and (self._state(conn, key) == "1") != want:
                return True
        return False

    @staticmethod
    def _state(conn: sqlite3.Connection, key: str) -> str | None:
        r = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if r is None else str(r[0])

    def _create(self, conn: sqlite3.Connection, drop: bool) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if drop:  # another version's rows, perhaps another archive's: zeroed as SQLite does
                _drop_tables(conn, zero=True)
            rtree = _supported(conn, "rtree(id, a, b)") if self._want_rtree is None \
                else self._want_rtree
            fts = _supported(conn, "fts5(x, tokenize='trigram')") if self._want_fts is None \
                else self._want_fts
            _make_tables(conn, rtree, fts)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def reset(self, *, zero: bool = True) -> None:
        """Drop every row and table and start empty (inside `writing`). `zero` False is heeded
        only by a file index: an index in memory (a sealed archive's, saved with
        `serialize`, free pages and all) always overwrites what it frees."""
        conn = self.conn
        _drop_tables(conn, zero=zero or self.path is None)
        _make_tables(conn, self.rtree, self.fts)
        self._bulk = _Bulk()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One IMMEDIATE transaction: concurrent refreshers wait for each other. Into an empty
        index (a rebuild, verify's scratch replay) new items' rows are held back and written many
        at a time (`_Bulk`), in the same transaction: a crash leaves the index as it was."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute(_EMPTY_SQL).fetchone()[0]:
                    self._bulk = _Bulk()
                yield
                if self._bulk is not None:
                    self._flush()
            except BaseException:
                self._bulk = self._render_new = None
                if conn.in_transaction:  # a full disk has SQLite roll back by itself
                    conn.execute("ROLLBACK")
                raise
            self._bulk = self._render_new = None
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if not self._spill:
                raise
            # verify's scratch replay: a full or unwritable temporary folder is said in one line
            raise IndexStoreError(f"the scratch copy of the search index (a temporary file) "
                                  f"failed: {exc}") from None

    # State --------------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        return self._state(self.conn, key)

    def put(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))

    # Writing items ------------------------------------------------------------------------------

    def has_item(self, sha256: str) -> bool:
        return self.conn.execute("SELECT 1 FROM items WHERE sha256 = ?",
                                 (sha256,)).fetchone() is not None

    def ensure_item(self, sha256: str, seq: int) -> None:
        bulk = self._bulk
        if bulk is None:
            self.conn.execute("INSERT OR IGNORE INTO items (sha256, first_seq) VALUES (?, ?)",
                              (sha256, seq))
        elif sha256 not in bulk.known:  # the fill made every row there: it knows them all
            bulk.add_item(sha256, seq)
            self._flush_when_full()

    def set_facts(self, sha256: str, *, captured_at: str | None, captured_text: str | None,
                  captured_t: float | None, basis: str | None, lat: float | None,
                  lon: float | None, alt: float | None, make: str | None, model: str | None,
                  mime: str | None, time_bounds: tuple[float, float] | None,
                  warnings: list[str], c2pa: str | None = None) -> None:
        """The facts read from an item's metadata; `time_bounds` is its place row's time extent
        (the caller widens it for clocks of unknown offset)."""
        device = " ".join(p for p in (make, model) if p).lower() or None
        held = None if self._bulk is None else self._bulk.items.get(sha256)
        if held is not None:  # written with its row (UPDATE's values; the place row replaced)
            held.facts = (captured_at, captured_text, captured_t, basis, lat, lon, alt, make,
                          model, device, mime, json.dumps(warnings) if warnings else None, c2pa)
            held.place = None
            if lat is not None and lon is not None:
                lo, hi = time_bounds or (-NO_TIME, NO_TIME)
                held.place = (lo, hi, lat, lat, lon, lon)
            return
        conn = self.conn
        conn.execute(
            "UPDATE items SET captured_at = ?, captured_text = ?, captured_t = ?, basis = ?, "
            "lat = ?, lon = ?, alt = ?, make = ?, model = ?, device = ?, mime = ?, warnings = ?, "
            "c2pa = ? WHERE sha256 = ?",
            (captured_at, captured_text, captured_t, basis, lat, lon, alt, make, model, device,
             mime, json.dumps(warnings) if warnings else None, c2pa, sha256))
        rowid = self._id(sha256)
        conn.execute("DELETE FROM item_geo WHERE id = ?", (rowid,))
        if lat is not None and lon is not None:
            lo, hi = time_bounds or (-NO_TIME, NO_TIME)
            conn.execute("INSERT INTO item_geo (id, min_t, max_t, min_lat, max_lat, min_lon, "
                         "max_lon) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (rowid, lo, hi, lat, lat, lon, lon))

    def _id(self, sha256: str) -> int:
        r = self.conn.execute("SELECT id FROM items WHERE sha256 = ?", (sha256,)).fetchone()
        if r is None:
            raise IndexStoreError(f"no item {sha256} in the index")
        return int(r[0])

    def add_name(self, sha256: str, name: str, seq: int) -> None:
        self._write(_NAME_SQL, (sha256, name, seq), sha256, _NAMES, name, seq)

    def _write(self, sql: str, row: tuple[Any, ...], sha256: str | None = None, kind: int = 0,
               key: Any = None, value: Any = None) -> None:
        """An INSERT of one row of an item's list `kind`: held back during a bulk fill (written
        in order with the statement's other rows, which keeps OR IGNORE's and OR REPLACE's
        outcome), and followed in the held item's lists; else written now."""
        bulk = self._bulk
        if bulk is None:
            self.conn.execute(sql, row)
            return
        bulk.rows.setdefault(sql, []).append(row)
        bulk.held += 1
        if sha256 is not None:
            held = bulk.items.get(sha256)
            if held is not None:
                held.follow(kind, key, value)
            else:
                bulk.listed.discard(sha256)
                bulk.touched.add(sha256)
        self._flush_when_full()

    def link(self, kind: LinkKind, key: str, sha256: str, seq: int, present: bool = True) -> None:
        """Put an item in (or take it out of) a case, an incident or a tag."""
        table, column = _LINK_TABLES[kind]
        if present:
            self._write(_LINK_SQL[kind], (key, sha256, seq), sha256, _LINK_LIST[kind], key, seq)
        else:
            self.conn.execute(f"DELETE FROM {table} WHERE {column} = ? AND sha256 = ?",
                              (key, sha256))
            if self._bulk is not None:  # after the flush `conn` made, which lists held items
                self._bulk.listed.discard(sha256)
                self._bulk.touched.add(sha256)

    def put_note(self, seq: int, sha256: str, text: str) -> None:
        bulk = self._bulk
        if bulk is not None:
            if seq <= bulk.last_note:  # may replace another item's note: lists from SQL only
                bulk.lists_held = False
                bulk.listed.clear()
            bulk.last_note = seq
        self._write("INSERT OR REPLACE INTO notes (seq, sha256, text) VALUES (?, ?, ?)",
                    (seq, sha256, text), sha256, _NOTES, seq, text)

    def drop_note(self, seq: int) -> str | None:
        """Remove the note made by entry `seq`; the item it was about, if any."""
        r = self.conn.execute("SELECT sha256 FROM notes WHERE seq = ?", (seq,)).fetchone()
        if r is None:
            return None
        self.conn.execute("DELETE FROM notes WHERE seq = ?", (seq,))
        if self._bulk is not None:
            self._bulk.listed.discard(str(r[0]))
            self._bulk.touched.add(str(r[0]))
        return str(r[0])

    def put_incident(self, row: IncidentRow) -> None:
        self._write(f"INSERT OR REPLACE INTO incidents ({INCIDENT_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row.incident, row.seq, row.case_id, row.date, row.t_lo, row.t_hi,
                     int(row.offset_unknown), row.lat, row.lon, row.place_name, row.description))

    def drop_incident_version(self, seq: int, keep: str) -> None:
        """Remove an incident whose current version is entry `seq`, unless it is `keep`."""
        self.conn.execute("DELETE FROM incidents WHERE seq = ? AND incident != ?", (seq, keep))

    def refresh_item(self, sha256: str) -> None:
        """Rebuild an item's output lists and its text row from the link tables."""
        conn = self.conn
        if self._bulk is not None:
            self._bulk.listed.discard(sha256)

        def column(sql: str) -> list[str]:
            return [str(r[0]) for r in conn.execute(sql, (sha256,))]

        names = column("SELECT name FROM item_names WHERE sha256 = ? ORDER BY seq, name")
        notes = column("SELECT text FROM notes WHERE sha256 = ? ORDER BY seq")
        cases = column("SELECT case_id FROM item_cases WHERE sha256 = ? ORDER BY seq, case_id")
        incidents = column("SELECT incident FROM item_incidents WHERE sha256 = ? "
                           "ORDER BY seq, incident")
        tags = column("SELECT tag FROM item_tags WHERE sha256 = ? ORDER BY seq, tag")
        conn.execute("UPDATE items SET names = ?, notes = ?, cases = ?, incidents = ?, tags = ? "
                     "WHERE sha256 = ?", (pack(names), pack(notes), pack(cases),
                                          pack(incidents), pack(tags), sha256))
        rowid = self._id(sha256)
        body = "\n".join([*names, *notes]).lower()
        if self._bulk is None or sha256 not in self._bulk.untexted:
            conn.execute("DELETE FROM item_text WHERE rowid = ?", (rowid,))
        else:
            self._bulk.untexted.discard(sha256)
        conn.execute("INSERT INTO item_text (rowid, body) VALUES (?, ?)", (rowid, body))

    def refresh_items(self, sha256s: Iterable[str]) -> None:
        """`refresh_item` for many items, REFRESH_BATCH at a time: one query per list for the
        whole batch and one executemany per write, instead of nine statements an item."""
        conn = self.conn
        listed = set() if self._bulk is None else self._bulk.listed
        todo = [sha for sha in sha256s if sha not in listed]  # the fill wrote theirs: current
        for start in range(0, len(todo), REFRESH_BATCH):
            chunk = todo[start:start + REFRESH_BATCH]
            marks = ", ".join("?" * len(chunk))
            ids = dict(conn.execute(f"SELECT sha256, id FROM items WHERE sha256 IN ({marks})",
                                    chunk))
            lists: dict[str, tuple[list[str], ...]] = {sha: ([], [], [], [], []) for sha in ids}
            for k, sql in enumerate(_LIST_SQL):
                for sha, value in conn.execute(sql.format(marks=marks), chunk):
                    if sha in lists:
                        lists[sha][k].append(str(value))
            conn.executemany("UPDATE items SET names = ?, notes = ?, cases = ?, incidents = ?, "
                             "tags = ? WHERE id = ?",
                             [(*map(pack, lists[sha]), ids[sha]) for sha in lists])
            untexted = set() if self._bulk is None else self._bulk.untexted
            conn.executemany("DELETE FROM item_text WHERE rowid = ?",
                             [(i,) for sha, i in ids.items() if sha not in untexted])
            untexted.difference_update(ids)
            conn.executemany("INSERT INTO item_text (rowid, body) VALUES (?, ?)",
                             [(ids[sha], "\n".join([*names, *notes]).lower())
                              for sha, (names, notes, *_links) in lists.items()])

    def set_perceptual(self, sha256: str, hashes: list[tuple[float | None, str]],
                       unhashed: str | None) -> None:
        """An item's perceptual hashes (`t` None for an image's), or why it has none."""
        held = None if self._bulk is None else self._bulk.items.get(sha256)
        if held is not None:
            held.hashes, held.unhashed = hashes, unhashed
            return
        conn = self.conn
        conn.execute("DELETE FROM item_phash WHERE sha256 = ?", (sha256,))
        conn.execute("DELETE FROM item_unhashed WHERE sha256 = ?", (sha256,))
        conn.executemany("INSERT INTO item_phash (sha256, frame, t, hash) VALUES (?, ?, ?, ?)",
                         [(sha256, i, t, h) for i, (t, h) in enumerate(hashes)])
        if unhashed is not None:
            conn.execute("INSERT INTO item_unhashed (sha256, reason) VALUES (?, ?)",
                         (sha256, unhashed))

    def _flush_when_full(self) -> None:
        if self._bulk is not None and self._bulk.held >= _Bulk.MAX_HELD:
            self._flush()

    def _flush(self) -> None:
        """Write every row the bulk fill holds: one executemany a table, each statement's rows
        in the order they came."""
        bulk, conn = self._bulk, self._conn
        assert bulk is not None and conn is not None
        items = list(bulk.items.items())
        # an item with list rows written while it was not held: its lists are read from SQL
        lists = {sha: h.lists() for sha, h in items
                 if sha not in bulk.touched} if bulk.lists_held else {}
        rows = [(h.id, sha, h.first_seq, *(h.facts or _NO_FACTS),
                 *(map(pack, lists[sha]) if sha in lists else _NO_LISTS)) for sha, h in items]
        render = self._render_new
        conn.executemany(f"INSERT INTO items (id, sha256, first_seq, {_FACTS}, names, notes, "
                         f"cases, incidents, tags, row_json) VALUES ({', '.join('?' * 22)})",
                         [(*row, None if render is None or row[1] not in lists
                           else render(_as_read(row))) for row in rows])
        # their text rows as refresh_items would write them (it leaves these items alone)
        conn.executemany("INSERT INTO item_text (rowid, body) VALUES (?, ?)",
                         [(bulk.items[sha].id, "\n".join([*names, *notes]).lower())
                          for sha, (names, notes, *_links) in lists.items()])
        bulk.listed.update(lists)
        bulk.untexted.difference_update(lists)
        conn.executemany("INSERT INTO item_geo (id, min_t, max_t, min_lat, max_lat, min_lon, "
                         "max_lon) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(h.id, *h.place) for _, h in items if h.place is not None])
        conn.executemany("INSERT INTO item_phash (sha256, frame, t, hash) VALUES (?, ?, ?, ?)",
                         sorted((sha, i, t, x) for sha, h in items
                                for i, (t, x) in enumerate(h.hashes)))  # distinct keys
        conn.executemany("INSERT INTO item_unhashed (sha256, reason) VALUES (?, ?)",
                         sorted((sha, h.unhashed) for sha, h in items if h.unhashed is not None))
        for sql, held in bulk.rows.items():
            if sql in _KEYED_INSERTS:
                held.sort(key=_FIRST_TWO)  # stable: rows of one key keep their order
            conn.executemany(sql, held)
        bulk.items.clear()
        bulk.rows.clear()
        bulk.held = 0

    # Reading ------------------------------------------------------------------------------------

    def item(self, sha256: str) -> ItemRow | None:
        r = self.conn.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE sha256 = ?",
                              (sha256,)).fetchone()
        return None if r is None else item_row(r)

    def perceptual_rows(self) -> Iterator[tuple[str, float | None, str]]:
        yield from self.conn.execute("SELECT sha256, t, hash FROM item_phash "
                                     "ORDER BY sha256, frame")

    def unhashed(self) -> Iterator[tuple[str, str]]:
        yield from self.conn.execute("SELECT sha256, reason FROM item_unhashed ORDER BY sha256")

    def device_fixes(self) -> Iterator[tuple[str | None, str | None, str, float, float, float,
                                             str | None]]:
        yield from self.conn.execute(FIXES_SQL.format(items="items"))

    def count_items(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def case_known(self, case: str) -> bool:
        conn = self.conn
        return (conn.execute("SELECT 1 FROM item_cases WHERE case_id = ? LIMIT 1",
                             (case,)).fetchone() is not None
                or conn.execute("SELECT 1 FROM incidents WHERE case_id = ? LIMIT 1",
                                (case,)).fetchone() is not None)

    def incident(self, incident: str) -> IncidentRow | None:
        r = self.conn.execute(f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE incident = ?",
                              (incident,)).fetchone()
        return None if r is None else incident_row(r)

    def incidents(self, case: str | None = None) -> list[IncidentRow]:
        sql = f"SELECT {INCIDENT_COLUMNS} FROM incidents"
        args: tuple[str, ...] = ()
        if case is not None:
            sql, args = sql + " WHERE case_id = ?", (case,)
        return [incident_row(r) for r in self.conn.execute(sql + " ORDER BY incident", args)]

    def count(self, query: ItemQuery, *, time: Mode = "match", place: Mode = "match") -> int:
        where, params = self._where(query, time, place)
        sql = "SELECT COUNT(*) FROM items i" + (" WHERE " + " AND ".join(where) if where else "")
        return int(self.conn.execute(sql, params).fetchone()[0])

    def count_missing(self, query: ItemQuery) -> tuple[int, int]:
        """(items without a capture time, items with one but without a place) that pass the
        other filters."""
        where, params = self._where(query, "match", "match")
        extra = "".join(" AND " + w for w in where)
        no_time = self.conn.execute(f"SELECT COUNT(*) FROM items i WHERE i.captured_t IS NULL"
                                    f"{extra}", params).fetchone()[0]
        no_place = self.conn.execute(f"SELECT COUNT(*) FROM items i WHERE i.captured_t IS NOT "
                                     f"NULL AND i.lat IS NULL{extra}", params).fetchone()[0]
        return int(no_time), int(no_place)

    def incident_linked(self, incident: str) -> bool:
        return self.conn.execute("SELECT 1 FROM item_incidents WHERE incident = ? LIMIT 1",
                                 (incident,)).fetchone() is not None

    def select(self, query: ItemQuery, *, time: Mode = "match", place: Mode = "match",
               limit: int | None = None) -> Iterator[ItemRow]:
        """Items passing the filters. `time`/`place` say how the time and place filters (when
        given) apply: "match" (the row passes), "missing" (the row lacks the field), "either"."""
        columns = ", ".join("i." + c for c in ITEM_COLUMNS.split(", "))
        for r in self._in_order(columns, query, time, place, limit):
            yield item_row(r)

    def select_rendered(self, query: ItemQuery, *, time: Mode = "match", place: Mode = "match",
                        limit: int | None = None) -> Iterator[tuple[str, str | None,
                                                                     bytes | ItemRow]]:
        """`select`'s items in its order, each as (SHA-256, capture time basis, its rendered
        row, or its ItemRow when that is stale): a search writes rendered rows as they are."""
        for sha256, basis, text in self._in_order("i.sha256, i.basis, i.row_json", query, time,
                                                  place, limit):
            if type(text) is not bytes:  # stale (NULL), or not what put_rendered writes
                row = self.item(sha256)
                assert row is not None  # the same transaction's read
                yield sha256, basis, row
            else:
                yield sha256, basis, text

    def _in_order(self, columns: str, query: ItemQuery, time: Mode, place: Mode,
                  limit: int | None) -> Iterator[tuple[Any, ...]]:
        """`columns` of the items passing the filters: the dated in capture-time order, then the
        undated (two walks of the time index rather than one sort of everything)."""
        where, params = self._where(query, time, place)
        left = limit
        for dated in ("i.captured_at IS NOT NULL", "i.captured_at IS NULL"):
            if left is not None and left <= 0:
                return
            sql = (f"SELECT {columns} FROM items i WHERE {' AND '.join([*where, dated])} "
                   "ORDER BY i.captured_at, i.first_seq"
                   + (f" LIMIT {int(left)}" if left is not None else ""))
            if left is None:
                yield from self.conn.execute(sql, params)
                continue
            for r in self.conn.execute(sql, params):
                left -= 1
                yield r

    def unrendered(self) -> Iterator[ItemRow]:
        """Every item whose rendered row is stale (NULL), a batch read at a time: the caller may
        `put_rendered` between them."""
        last = 0
        while True:
            batch = self.conn.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE row_json IS NULL "
                                      f"AND id > ? ORDER BY id LIMIT {REFRESH_BATCH}",
                                      (last,)).fetchall()
            if not batch:
                return
            for r in batch:
                yield item_row(r)
            last = batch[-1][0]

    def rendered_rows(self) -> Iterator[tuple[str, ItemRow | None, Any]]:
        for r in self.conn.execute(f"SELECT {ITEM_COLUMNS}, row_json FROM items "
                                   "WHERE row_json IS NOT NULL ORDER BY id"):
            try:
                row: ItemRow | None = item_row(r)
            except (TypeError, ValueError, AttributeError):  # columns edited to other types
                row = None
            yield r[1], row, r[-1]

    def rendering_guarded(self) -> bool:
        return _triggers_intact(self.conn)

    def forget_rendered(self) -> None:
        self.conn.execute("UPDATE items SET row_json = NULL WHERE row_json IS NOT NULL")

    def put_rendered(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Keep items' rendered rows: (item id, row)."""
        self.conn.executemany("UPDATE items SET row_json = ? WHERE id = ?",
                              [(text, rowid) for rowid, text in rows])

    def render_new_items(self, render: Callable[[ItemRow], bytes | None]) -> None:
        """A bulk fill renders the items whose lists it writes (`_flush`): the row is inserted
        rendered, instead of inserted stale, read back and updated (a rewrite of every row)."""
        self._render_new = render

    def _where(self, q: ItemQuery, time: Mode, place: Mode) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if q.case is not None:
            where.append("(i.sha256 IN (SELECT sha256 FROM item_cases WHERE case_id = ?) OR "
                         "i.sha256 IN (SELECT l.sha256 FROM item_incidents l JOIN incidents n "
                         "ON n.incident = l.incident WHERE n.case_id = ?))")
            params += [q.case, q.case]
        if q.incident is not None:
            where.append("i.sha256 IN (SELECT sha256 FROM item_incidents WHERE incident = ?)")
            params.append(q.incident)
        if q.tag is not None:
            where.append("i.sha256 IN (SELECT sha256 FROM item_tags WHERE tag = ?)")
            params.append(q.tag)
        if q.device is not None:
            where.append("i.device LIKE ? ESCAPE '\\'")
            params.append("%" + like_escape(q.device.lower()) + "%")
        if q.mime is not None:
            if q.mime.endswith("/"):
                where.append("i.mime >= ? AND i.mime < ?")
                params += [q.mime, q.mime[:-1] + "0"]
            else:
                where.append("i.mime = ?")
                params.append(q.mime)
        for word in q.words:
            if self.fts and len(word) >= 3:
                where.append("i.id IN (SELECT rowid FROM item_text WHERE item_text MATCH ?)")
                params.append('"' + word.replace('"', '""') + '"')
            else:
                where.append("i.id IN (SELECT rowid FROM item_text WHERE instr(body, ?) > 0)")
                params.append(word)
        if q.time is not None:
            match, args = time_match(q.time, "?")
            apply_filter(where, params, match, args, "i.captured_at IS NULL", time)
        if q.boxes is not None:
            match, args = self._place_match(q.boxes)
            apply_filter(where, params, match, args, "i.lat IS NULL", place)
        return where, params

    def _place_match(self, boxes: tuple[Box, ...]) -> tuple[str, list[Any]]:
        exact = " OR ".join("(i.lat BETWEEN ? AND ? AND i.lon BETWEEN ? AND ?)" for _ in boxes)
        args: list[Any] = [v for b in boxes for v in b]
        if not self.rtree:
            return f"({exact})", args
        overlap = " UNION ".join("SELECT id FROM item_geo WHERE max_lat >= ? AND min_lat <= ? "
                                 "AND max_lon >= ? AND min_lon <= ?" for _ in boxes)
        return f"(i.id IN ({overlap}) AND ({exact}))", args + args

    def compared_rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        """Every row of one index table in a form two indexes can be compared by: the item's
        SHA-256 in place of the file's row id, ordered by the key COMPARED[table] gives."""
        yield from self.conn.execute(_COMPARED_SQL[table])

    # Track cross-reference: temporary tables ------------------------------------------------------

    @contextmanager
    def track(self) -> Iterator[TrackTables]:
        """Temporary tables for one track (on disk when large; dropped afterwards)."""
        tables = TrackTables(self)
        tables.create()
        try:
            yield tables
        finally:
            tables.drop()


_FACTS = ("captured_at, captured_text, captured_t, basis, lat, lon, alt, make, model, device, "
          "mime, warnings, c2pa")
_NO_FACTS = (None,) * 13
_NO_LISTS = (None,) * 5
_NAMES, _NOTES, _CASES, _INCIDENTS, _TAGS = range(5)  # an item's lists, in _LIST_SQL's order
_LINK_LIST = {"case": _CASES, "incident": _INCIDENTS, "tag": _TAGS}
_LINK_TABLES = {"case": ("item_cases", "case_id"), "incident": ("item_incidents", "incident"),
                "tag": ("item_tags", "tag")}
_LINK_SQL = {kind: f"INSERT OR IGNORE INTO {table} ({column}, sha256, seq) VALUES (?, ?, ?)"
             for kind, (table, column) in _LINK_TABLES.items()}
_NAME_SQL = "INSERT OR IGNORE INTO item_names (sha256, name, seq) VALUES (?, ?, ?)"
# Held INSERTs into WITHOUT ROWID tables keyed by their first two columns: written in key order,
# a bulk fill touches each page of the tree once a batch instead of at random (the item
# SHA-256s arrive in random order); the same rows result, as no row id is given and rows of one
# key keep their order (OR IGNORE keeps the first).
_KEYED_INSERTS = frozenset({_NAME_SQL, *_LINK_SQL.values()})
_FIRST_TWO = itemgetter(0, 1)  # the key of a held row of _KEYED_INSERTS


def _as_read(row: tuple[Any, ...]) -> ItemRow:
    """The ItemRow a read of this items row (as `_flush` inserts it) gives, through the reader's
    own conversion (item_row): a row rendered as it is written is the one rendered after. SQLite
    keeps a whole REAL as an integer, so -0.0 reads back as 0.0 (a received document may hold
    it: review, round 30): `+ 0.0` does the same here."""
    (rowid, sha256, first_seq, captured_at, captured_text, captured_t, basis, lat, lon, alt, make,
     model, _device, mime, warnings, c2pa, names, notes, cases, incidents, tags) = row
    captured_t, lat, lon, alt = (None if x is None else x + 0.0
                                 for x in (captured_t, lat, lon, alt))
    return item_row((rowid, sha256, first_seq, captured_at, captured_text, captured_t, basis, lat,
                     lon, alt, make, model, mime, warnings, names, notes, cases, incidents, tags,
                     c2pa))


class _Held:
    """A new item's own rows until they are written: its items row, place row and hashes."""

    __slots__ = ("facts", "first_seq", "hashes", "id", "keyed", "place", "unhashed")

    def __init__(self, rowid: int, first_seq: int) -> None:
        self.id = rowid
        self.first_seq = first_seq
        self.facts: tuple[Any, ...] | None = None
        self.place: tuple[float, ...] | None = None
        self.hashes: list[tuple[float | None, str]] = []
        self.unhashed: str | None = None
        # each list's rows as its table keeps them: name/case/incident/tag -> seq (INSERT OR
        # IGNORE: the first stays), note seq -> text (INSERT OR REPLACE: the last stays)
        self.keyed: tuple[dict[Any, Any], ...] = ({}, {}, {}, {}, {})

    def follow(self, kind: int, key: Any, value: Any) -> None:
        if kind == _NOTES:
            self.keyed[kind][key] = value
        else:
            self.keyed[kind].setdefault(key, value)

    def lists(self) -> tuple[list[str], ...]:
        """The five lists in refresh_items' order: by seq, then value (_LIST_SQL)."""
        names, notes, cases, incidents, tags = self.keyed
        return (_by_seq(names), [t for _, t in sorted(notes.items())] if notes else [],
                _by_seq(cases), _by_seq(incidents), _by_seq(tags))


def _by_seq(keyed: dict[str, int]) -> list[str]:
    if len(keyed) < 2:  # most lists: nothing to order (a sort per list was 7% of a rebuild)
        return list(keyed)
    return [key for key, _ in sorted(keyed.items(), key=_seq_then_value)]


def _seq_then_value(kv: tuple[str, int]) -> tuple[int, str]:
    return kv[1], kv[0]


class _Bulk:
    """Filling an index that was empty when its transaction began: each new item's rows, and the
    INSERTs of names, links, notes and incidents, are held and written many at a time instead of
    nine statements an item (docs/PERFORMANCE.md "Reindex"). Ids are given in the order SQLite
    would have given them (1, 2, ...: rows are never deleted from `items`). Anything else (a
    DELETE, a read, a change to an item already written) first writes what is held."""

    MAX_HELD = 4096  # items and rows held at most; the items added are remembered by SHA-256

    def __init__(self) -> None:
        self.known: set[str] = set()  # every item this fill added, held or written
        self.untexted: set[str] = set()  # ... whose text row is not written yet
        self.items: dict[str, _Held] = {}
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        self.held = 0
        self.lists_held = True  # held items' lists are known here (else refresh_items reads)
        self.listed: set[str] = set()  # items written with their lists, unchanged since
        self.touched: set[str] = set()  # items whose list rows were written while not held
        self.last_note = -1

    def add_item(self, sha256: str, seq: int) -> None:
        self.known.add(sha256)
        self.untexted.add(sha256)
        self.items[sha256] = _Held(len(self.known), seq)
        self.held += 1


class TrackTables:
    """A track's points (any order), its legs and their search boxes, in the temp schema."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self.conn = store.conn
        self.rtree = store.rtree

    def create(self) -> None:
        self.drop()
        c = self.conn
        c.execute("CREATE TEMP TABLE xr_points (seg TEXT NOT NULL, t REAL NOT NULL, "
                  "lat REAL NOT NULL, lon REAL NOT NULL, alt REAL, ref TEXT NOT NULL)")
        c.execute(f"CREATE TEMP TABLE xr_legs (id INTEGER PRIMARY KEY, {LEG_COLUMNS})")
        if self.rtree:
            c.execute("CREATE VIRTUAL TABLE temp.xr_boxes USING rtree(id, min_t, max_t, "
                      "min_lat, max_lat, min_lon, max_lon, +leg INTEGER)")
        else:
            c.execute("CREATE TEMP TABLE xr_boxes (id INTEGER PRIMARY KEY, min_t REAL, "
                      "max_t REAL, min_lat REAL, max_lat REAL, min_lon REAL, max_lon REAL, "
                      "leg INTEGER)")
            c.execute("CREATE INDEX temp.xr_boxes_t ON xr_boxes(min_t)")

    def drop(self) -> None:
        for table in ("xr_points", "xr_legs", "xr_boxes"):
            self.conn.execute(f"DROP TABLE IF EXISTS temp.{table}")

    def add_points(self, rows: Iterable[PointRow]) -> None:
        """Store points as they stream in (any order)."""
        with self._transaction():
            self.conn.executemany("INSERT INTO xr_points (seg, t, lat, lon, alt, ref) "
                                  "VALUES (?, ?, ?, ?, ?, ?)", rows)

    def build_legs(self, make: MakeLegs) -> int:
        """Feed the points, by segment then time (then file order), to `make`, which yields
        legs (the LEG_COLUMNS values) each with its search boxes; store them. Streamed."""
        count = 0
        leg_rows: list[tuple[Any, ...]] = []
        box_rows: list[tuple[Any, ...]] = []
        with self._transaction():
            points = self.conn.execute("SELECT seg, t, lat, lon, alt, ref FROM xr_points "
                                       "ORDER BY seg, t, rowid")
            for row, boxes in make(points):
                count += 1
                leg_rows.append((count, *row))
                box_rows.extend((*b, count) for b in boxes)
                if len(leg_rows) >= BATCH:
                    self._flush(leg_rows, box_rows)
            self._flush(leg_rows, box_rows)
        return count

    def _flush(self, legs: list[tuple[Any, ...]], boxes: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(f"INSERT INTO xr_legs (id, {LEG_COLUMNS}) "
                              f"VALUES ({', '.join('?' * 12)})", legs)
        self.conn.executemany("INSERT INTO xr_boxes (min_t, max_t, min_lat, max_lat, min_lon, "
                              "max_lon, leg) VALUES (?, ?, ?, ?, ?, ?, ?)", boxes)
        legs.clear()
        boxes.clear()

    def item_pairs(self, query: ItemQuery) -> Iterator[tuple[ItemRow, LegRow]]:
        """(item, leg) for every timed, placed item whose place row meets a leg's search box."""
        where, params = self.store._where(query, "match", "match")
        columns = ", ".join("i." + c for c in ITEM_COLUMNS.split(", "))
        legs = ", ".join("l." + c for c in LEG_COLUMNS.split(", "))
        sql = (f"SELECT {columns}, {legs} FROM xr_boxes b "
               "JOIN item_geo g ON g.max_t >= b.min_t AND g.min_t <= b.max_t "
               "AND g.max_lat >= b.min_lat AND g.min_lat <= b.max_lat "
               "AND g.max_lon >= b.min_lon AND g.min_lon <= b.max_lon "
               "JOIN items i ON i.id = g.id JOIN xr_legs l ON l.id = b.leg "
               "WHERE i.captured_t IS NOT NULL AND i.lat IS NOT NULL"
               + "".join(" AND " + w for w in where))
        n = len(ITEM_COLUMNS.split(", "))
        for r in self.conn.execute(sql, params):
            yield item_row(r[:n]), tuple(r[n:])

    def segments(self) -> int:
        return int(self.conn.execute("SELECT COUNT(DISTINCT seg) FROM xr_points").fetchone()[0])

    def lines(self) -> Iterator[tuple[str, list[tuple[float, float]]]]:
        """Each segment's positions in time order, (lon, lat) pairs, for drawing."""
        current: str | None = None
        coords: list[tuple[float, float]] = []
        for seg, lat, lon in self.conn.execute("SELECT seg, lat, lon FROM xr_points "
                                               "ORDER BY seg, t, rowid"):
            if seg != current and current is not None:
                yield current, coords
                coords = []
            current = seg
            coords.append((lon, lat))
        if current is not None:
            yield current, coords

    def legs_near(self, t_lo: float, t_hi: float, lat: float, lon: float) -> Iterator[LegRow]:
        """Legs whose search box holds the place and meets the time interval."""
        yield from self.conn.execute(
            f"SELECT DISTINCT {', '.join('l.' + c for c in LEG_COLUMNS.split(', '))} "
            "FROM xr_boxes b JOIN xr_legs l ON l.id = b.leg WHERE b.max_t >= ? AND b.min_t <= ? "
            "AND b.max_lat >= ? AND b.min_lat <= ? AND b.max_lon >= ? AND b.min_lon <= ?",
            (t_lo, t_hi, lat, lat, lon, lon))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


def _make_tables(conn: sqlite3.Connection, rtree: bool, fts: bool) -> None:
    """The schema, statement by statement (executescript would commit the open transaction)."""
    script = (_TABLES + (_GEO_RTREE + ";" if rtree else _GEO_PLAIN)
              + (_TEXT_FTS if fts else _TEXT_PLAIN))
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)
    _set_triggers(conn)
    conn.executemany("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                     [("schema", str(SCHEMA_VERSION)), ("rtree", "1" if rtree else "0"),
                      ("fts", "1" if fts else "0")])


def _set_triggers(conn: sqlite3.Connection) -> None:
    """Every trigger in the file dropped, then this schema's made (their bodies hold a `;`)."""
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f'DROP TRIGGER "{name.replace(chr(34), chr(34) * 2)}"')
    for trigger in _TRIGGERS:
        conn.execute(trigger)


def _triggers_intact(conn: sqlite3.Connection) -> bool:
    """The file's triggers are exactly this schema's, as written."""
    have = sorted(r[0] for r in conn.execute("SELECT sql FROM sqlite_master "
                                             "WHERE type = 'trigger'"))
    return have == sorted(_TRIGGERS)


def _supported(conn: sqlite3.Connection, module: str) -> bool:
    try:
        conn.execute(f"CREATE VIRTUAL TABLE temp.probe USING {module}")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp.probe")
    return True
