"""A sealed archive's search index: the SQLite index held in memory only, kept on disk as one age
file (docs/SEARCH.md "Sealed archives", docs/FORMAT.md §12.6).

The index of a sealed archive holds its places, times, devices, names and notes in clear, so it
never touches a disk as plaintext: it is read by decrypting `index.age` into an in-memory SQLite
database (`Connection.deserialize`), and written back, when a refresh changed it, as the whole
database sealed to the content key in force (`Connection.serialize`, then age). SQLite's
temporary tables stay in memory too. Nothing is left to remove at `custody lock`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyrage

from store.index import IndexStore
from store.index_port import IndexUnusable


class SealedIndex:
    """The IndexLocation of a sealed archive. `identities`: the content keys the reader holds
    (to open the file); `recipient`: the content key in force, or None when the reader does not
    hold it (their index is built for this run only and never saved: it would lack what they
    cannot open, and a later reader would take it as complete)."""

    def __init__(self, path: Path, identities: list[pyrage.x25519.Identity],
                 recipient: pyrage.x25519.Recipient | None) -> None:
        self.path = path
        self._identities = identities
        self._recipient = recipient

    @property
    def name(self) -> str:
        return self.path.name

    def open(self) -> SealedIndexStore:
        # os.access is False on a read-only mount: build in memory, save nothing
        may_write = self._recipient is not None and os.access(self.path.parent, os.W_OK)
        return SealedIndexStore(self.path, self._identities,
                                self._recipient if may_write else None)

    def open_existing(self) -> SealedIndexStore | None:
        """The saved index, opened in memory, to be compared (verify with a key); None when
        there is none or no key is held. IndexUnusable when it does not open."""
        if not self._identities or not self.path.exists():
            return None
        store = SealedIndexStore(self.path, self._identities, None, strict=True)
        store.conn  # noqa: B018 - decrypts now: IndexUnusable here, not later
        return store


class SealedIndexStore(IndexStore):
    """An in-memory IndexStore loaded from, and saved to, one age file."""

    def __init__(self, sealed: Path, identities: list[pyrage.x25519.Identity],
                 recipient: pyrage.x25519.Recipient | None, *, strict: bool = False,
                 rtree: bool | None = None, fts: bool | None = None) -> None:
        super().__init__(None, rtree=rtree, fts=fts)
        self._sealed = sealed
        self._identities = identities
        self._recipient = recipient
        self._strict = strict
        self._changed = False
        self._was_reset = False

    @property
    def location(self) -> str | None:
        return str(self._sealed)

    def scratch(self) -> IndexStore:
        """An empty index like this one, in memory only, never saved (verify's replay)."""
        return SealedIndexStore(self._sealed, [], None, rtree=self.rtree, fts=self.fts)

    def _open(self) -> sqlite3.Connection:
        conn = self._plain_open()
        if not self._sealed.exists() or not self._identities:
            return conn
        try:
            data = pyrage.decrypt(self._sealed.read_bytes(), self._identities)
            conn.deserialize(data)
            conn.execute("PRAGMA temp_store = MEMORY")
            if self._strict:  # verify: compared as it is, an older version said, not remade
                self._take_as_it_is(conn, self._sealed)
            else:
                self._prepare(conn)  # a file of another version is rebuilt, as index.db is
        except IndexUnusable:
            conn.close()
            raise
        except (OSError, pyrage.DecryptError, sqlite3.DatabaseError) as exc:
            if self._strict:
                conn.close()
                raise IndexUnusable(f"{self._sealed} does not open: {exc}") from None
            conn.close()  # derived: one that does not open (another epoch's key) is rebuilt
            conn = self._plain_open()
        return conn

    def _plain_open(self) -> sqlite3.Connection:
        conn = IndexStore._open(self)
        conn.execute("PRAGMA temp_store = MEMORY")  # no temporary file holds a row
        return conn

    @contextmanager
    def writing(self) -> Iterator[None]:
        before = self._mark()
        self._was_reset = False
        with super().writing():
            yield
        # saved only when the index moved on (a refresh with nothing new is not re-sealed), or
        # was rebuilt: a rebuild to the same tip replaces what was there, perhaps altered
        self._changed = self._changed or self._was_reset or self._mark() != before

    def reset(self, *, zero: bool = True) -> None:
        super().reset(zero=zero)  # in memory: IndexStore.reset zeroes whatever it is asked
        self._was_reset = True

    def _mark(self) -> tuple[str | None, ...]:
        return tuple(self.get(k) for k in ("origin", "last_seq", "last_leaf"))

    def close(self) -> None:
        """Save the index, sealed whole, if it changed and the content key in force is held."""
        if self._conn is not None and self._changed and self._recipient is not None:
            self._save(self._conn.serialize())
        self._changed = False
        super().close()

    def _save(self, data: bytes) -> None:
        assert self._recipient is not None  # close() saves only with the key in force
        blob = pyrage.encrypt(data, [self._recipient])
        tmp = self._sealed.with_name(self._sealed.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._sealed)
        except OSError:
            tmp.unlink(missing_ok=True)  # derived: not saved, rebuilt next time

