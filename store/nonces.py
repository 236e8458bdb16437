"""The request nonces a service has seen: a small SQLite file beside the archive, not the ledger.

A nonce is claimed once per key within the signature window; older ones are pruned, since a
signature that old is refused by its `created` time anyway.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class NonceStore:
    """`claim` is True the first time a (key, nonce) is seen, False for a replay."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS nonces (key_id TEXT NOT NULL, nonce TEXT NOT "
                         "NULL, seen INTEGER NOT NULL, PRIMARY KEY (key_id, nonce))")
        self._db.execute("CREATE INDEX IF NOT EXISTS nonces_seen ON nonces (seen)")

    def claim(self, key_id: str, nonce: str, now: int, keep_seconds: int) -> bool:
        with self._lock:
            self._db.execute("DELETE FROM nonces WHERE seen < ?", (now - keep_seconds,))
            try:
                self._db.execute("INSERT INTO nonces (key_id, nonce, seen) VALUES (?, ?, ?)",
                                 (key_id, nonce, now))
            except sqlite3.IntegrityError:
                return False
            return True

    def close(self) -> None:
        self._db.close()
