"""Mappings that keep a bounded number of values in memory and the rest in a scratch database.

A long fold (verify's replay of every entry) keeps state per item; on a huge log that state must not
grow the process. `SpillTables` is one unnamed temporary SQLite database (SQLite deletes its file on
close, and keeps its own page cache small); each `table(name)` is a MutableMapping with the dict's
behaviour (iteration in insertion order, a key deleted and set again goes last) whose most recently
brought-in values stay in memory as the objects themselves, the oldest written out (pickled) a batch
at a time. The values are the caller's own, read back only by this process.

A value taken from a table must be changed before the next use of that table: the next use may
write it out, after which a change to the object would not be kept (set it again instead).
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterator, MutableMapping
from contextlib import suppress
from typing import Any

HOT = 8192  # values kept in memory per table (about 1 KB an item over the item tables)
EVICT = 2048  # written out at once when a table holds more than HOT in memory
FILTER_BITS = 1 << 22  # a table's filter of the keys written out (512 KiB; see _WrittenOut)
PAGE = 1024  # keys read at once when a table is iterated
PROTOCOL = pickle.HIGHEST_PROTOCOL

Key = str | int
_MISSING: Any = object()


class ScratchError(Exception):
    """The scratch database could not be written or read (a full or unwritable temporary folder);
    the message is SQLite's, one line."""


INT64 = range(-2**63, 2**63)  # what SQLite holds as an INTEGER


def _stored(key: Key) -> bytes | int | str:
    """A key as the database holds it: a str as its UTF-8 bytes (any str, lone surrogates too,
    ordered by code point), an int as itself, an int SQLite cannot hold as its decimal text."""
    if isinstance(key, str):
        return key.encode("utf-8", "surrogatepass")
    return key if key in INT64 else str(key)


def _key(stored: bytes | int | str) -> Key:
    if isinstance(stored, bytes):
        return stored.decode("utf-8", "surrogatepass")
    return int(stored)


class _WrittenOut:
    """Which keys may have been written out: a fixed-size Bloom filter (two bits a key, taken
    from its hash), so that asking for a key never written out (each new item, several times
    an entry) reads no database. It may say yes wrongly (then the database says no), never no
    wrongly; it does not grow (about 0.2% wrong yeses at 100,000 keys, 14% at a million)."""

    def __init__(self) -> None:
        self._bits = bytearray(FILTER_BITS // 8)

    def add(self, key: object) -> None:
        h = hash(key) & 0xFFFFFFFFFFFFFFFF
        one, two = h % FILTER_BITS, (h >> 32 ^ h * 0x9E3779B1) % FILTER_BITS
        self._bits[one >> 3] |= 1 << (one & 7)
        self._bits[two >> 3] |= 1 << (two & 7)

    def __contains__(self, key: object) -> bool:
        h = hash(key) & 0xFFFFFFFFFFFFFFFF
        one, two = h % FILTER_BITS, (h >> 32 ^ h * 0x9E3779B1) % FILTER_BITS
        return bool(self._bits[one >> 3] & (1 << (one & 7))
                    and self._bits[two >> 3] & (1 << (two & 7)))


def _execute(conn: sqlite3.Connection, sql: str, params: tuple[object, ...] = ()
             ) -> sqlite3.Cursor:
    try:
        return conn.execute(sql, params)
    except sqlite3.Error as exc:
        raise ScratchError(f"cannot use the verifier's scratch file in the temporary folder: "
                           f"{exc}") from None


class SpillTables:
    """One scratch database holding any number of named tables; `close()` deletes it."""

    def __init__(self, hot: int | None = None, evict: int | None = None) -> None:
        self._conn = sqlite3.connect("", isolation_level=None)  # "": a temporary file, unnamed
        self._sql("PRAGMA journal_mode = OFF")  # scratch: nothing to recover
        self._sql("PRAGMA synchronous = OFF")
        self._sql("PRAGMA cache_size = -2048")  # KiB: SQLite's own memory stays small
        self._sql(
            "CREATE TABLE spilled (space INTEGER, key, ord INTEGER, value BLOB, "
            "PRIMARY KEY (space, key)) WITHOUT ROWID")
        self._sql("CREATE INDEX spilled_order ON spilled (space, ord)")
        self._hot = HOT if hot is None else hot  # read when made: a test may lower them
        self._evict = EVICT if evict is None else evict
        self._tables: dict[str, SpillMapping] = {}

    def _sql(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        return _execute(self._conn, sql, params)

    def table(self, name: str) -> SpillMapping:
        """The table called `name` (the same object each time)."""
        found = self._tables.get(name)
        if found is None:
            found = self._tables[name] = SpillMapping(self._conn, len(self._tables), self._hot,
                                                      self._evict)
        return found

    def close(self) -> None:
        self._tables.clear()
        self._conn.close()

    def __enter__(self) -> SpillTables:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SpillMapping(MutableMapping[Any, Any]):
    """A dict of str or int keys whose oldest values are written out (see the module)."""

    def __init__(self, conn: sqlite3.Connection, space: int, hot: int, evict: int) -> None:
        self._conn = conn
        self._space = space
        self._hot_limit = hot
        self._evict = max(1, min(evict, hot))
        # key -> the value itself, oldest first: a new key's place in the order is given when it
        # is written out (in this order, after every place given before); a key brought back
        # keeps the place stored with it
        self._hot: dict[Key, Any] = {}
        self._next = 0
        self._cold = False  # whether anything was ever written out
        self._written: _WrittenOut | None = None  # made when something is first written out

    def _sql(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        return _execute(self._conn, sql, params)

    def __getitem__(self, key: Key) -> Any:
        value = self._hot.get(key, _MISSING)
        if value is not _MISSING:
            return value
        if self._may_be_cold(key):
            row = self._sql("SELECT value FROM spilled WHERE space = ? AND key = ?",
                            (self._space, _stored(key))).fetchone()
            if row is not None:
                value = pickle.loads(row[0])
                self._bring_in(key, value)
                return value
        raise KeyError(key)

    def get(self, key: Key, default: Any = None) -> Any:  # the dict's speed while in memory
        value = self._hot.get(key, _MISSING)
        if value is not _MISSING:
            return value
        if self._written is None:
            return default
        try:
            return self[key]
        except KeyError:
            return default

    def setdefault(self, key: Key, default: Any = None) -> Any:
        value = self._hot.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = self.get(key, _MISSING)
        if value is _MISSING:
            self[key] = value = default
        return value

    def pop(self, key: Key, default: Any = _MISSING) -> Any:
        if key not in self._hot and self._written is None:  # never written out: a dict's miss
            if default is _MISSING:
                raise KeyError(key)
            return default
        return super().pop(key) if default is _MISSING else super().pop(key, default)

    def __contains__(self, key: object) -> bool:
        if key in self._hot:
            return True
        if not self._may_be_cold(key) or not isinstance(key, str | int):
            return False
        return self._sql("SELECT 1 FROM spilled WHERE space = ? AND key = ?",
                         (self._space, _stored(key))).fetchone() is not None

    def __setitem__(self, key: Key, value: Any) -> None:
        if key in self._hot:
            self._hot[key] = value
            return
        if not isinstance(key, str | int):
            raise TypeError(f"a spilled table's keys are str or int, not {type(key).__name__}")
        self._bring_in(key, value)

    def __delitem__(self, key: Key) -> None:
        found = self._hot.pop(key, _MISSING)
        gone = 0
        if self._may_be_cold(key):
            gone = self._sql("DELETE FROM spilled WHERE space = ? AND key = ?",
                             (self._space, _stored(key))).rowcount
        if found is _MISSING and not gone:
            raise KeyError(key)

    def __len__(self) -> int:
        self._write_out_all()
        if not self._cold:
            return len(self._hot)
        (count,) = self._sql("SELECT count(*) FROM spilled WHERE space = ?",
                             (self._space,)).fetchone()
        return int(count)

    def __iter__(self) -> Iterator[Any]:
        """Keys in insertion order, read a page at a time (setting a key while iterating is
        allowed, as for a dict)."""
        if not self._cold:
            yield from list(self._hot)
            return
        after = -1
        while True:
            self._write_out_all()
            page = self._sql(
                "SELECT key, ord FROM spilled WHERE space = ? AND ord > ? ORDER BY ord LIMIT ?",
                (self._space, after, PAGE)).fetchall()
            if not page:
                return
            after = page[-1][1]
            for key, _order in page:
                yield _key(key)

    def sorted_keys(self) -> Iterator[Any]:
        """Keys in sorted order (str keys by code point, as `sorted` orders them; a table of str
        keys only), a page at a time, without holding them all."""
        if not self._cold:
            yield from sorted(self._hot)
            return
        for (key,) in self._sorted_pages("key"):
            yield _key(key)

    def sorted_items(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) in sorted order of keys (as `sorted_keys`), a page at a time; the values
        are read, not brought into memory (for a table no longer changed)."""
        if not self._cold:
            yield from sorted(self._hot.items())
            return
        for key, value in self._sorted_pages("key, value"):
            yield _key(key), pickle.loads(value)

    def _sorted_pages(self, columns: str) -> Iterator[tuple[Any, ...]]:
        """Every row of this table (`columns`, the key first), all written out first, in key
        order: PAGE rows a query, each after the last key of the one before (keyset paging)."""
        self._write_out_all()
        last: bytes | int | str | None = None
        while True:
            after, args = ("", (self._space,)) if last is None else \
                (" AND key > ?", (self._space, last))
            page = self._sql(f"SELECT {columns} FROM spilled WHERE space = ?{after} "
                             "ORDER BY key LIMIT ?", (*args, PAGE)).fetchall()
            if not page:
                return
            last = page[-1][0]
            yield from page

    def _bring_in(self, key: Key, value: Any) -> None:
        if len(self._hot) >= self._hot_limit:
            self._write_out(self._evict)
        self._hot[key] = value

    def _write_out(self, count: int) -> None:
        """Write the `count` oldest values in memory out to the database and drop them."""
        hot = self._hot
        keys = [key for key, _ in zip(hot, range(count), strict=False)]
        written = self._written = self._written or _WrittenOut()
        for key in keys:
            written.add(key)
        first, self._next = self._next, self._next + len(keys)  # kept by keys written before
        # made before the transaction: a value that does not pickle leaves none open
        rows = [(self._space, _stored(key), first + n, pickle.dumps(hot[key], PROTOCOL))
                for n, key in enumerate(keys)]
        conn = self._conn
        try:
            # One transaction for the batch: in autocommit, each row was one (SQLite ends a
            # transaction, and writes out its dirty pages, at every step of an executemany).
            conn.execute("BEGIN")
            try:
                conn.executemany(
                    "INSERT INTO spilled (space, key, ord, value) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",  # order stays
                    rows)
                conn.execute("COMMIT")
            finally:
                # it failed or was interrupted: the transaction is ended, not undone (there is
                # no journal), and verify reads the scratch no more after a ScratchError
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # the values stay in memory; the caller is told
            raise ScratchError(f"cannot write the verifier's scratch file in the temporary "
                               f"folder: {exc}") from None
        for key in keys:
            del hot[key]
        self._cold = True

    def _may_be_cold(self, key: object) -> bool:
        return self._written is not None and isinstance(key, str | int) and key in self._written

    def _write_out_all(self) -> None:
        """Once anything is written out, the database is the one place to read an order from."""
        if self._hot and self._cold:
            self._write_out(len(self._hot))
