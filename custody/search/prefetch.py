"""A forked process that reads the metadata documents of the first records an indexing run is
about to meet, while the indexing process parses entries and writes rows: the second core
(docs/PERFORMANCE.md "Reindex").

The reader opens the archive afresh from its folder (a forked process never uses its parent's
ledger connection; none is in use when it forks), walks the same entries by the ledger's own
columns, and sends (seq, item, reading) through a pipe in log order. The indexer uses a reading
only for the entry it was read for, same seq and same item, and reads itself whatever did not come
(a sealed or unreadable document, a reader that failed or stopped): the rows are the same either
way (tests/test_index_rebuild.py).
"""

from __future__ import annotations

import enum
import fcntl
import os
import pickle
import signal
import threading
from contextlib import suppress
from typing import IO

from custody.core.chain import FIRST_RECORD
from custody.ops import encryption
from custody.ops.archive import Archive
from custody.search.reading import Reading, read_document

MIN_ENTRIES = 4_000  # below this a fork and the reader's own start cost more than they save
BATCH = 256  # readings a message
PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged process (pipe-max-size)


class _Missing(enum.Enum):
    NOT_PREFETCHED = 0


NOT_PREFETCHED = _Missing.NOT_PREFETCHED
Found = Reading | None | _Missing  # a reading, no document at all, or: read it yourself


class Prefetch:
    """The reading side of the pipe, in the indexing process."""

    def __init__(self, pid: int, stream: IO[bytes]) -> None:
        self._pid: int | None = pid
        self._stream: IO[bytes] | None = stream
        self._batch: list[tuple[int, str, Reading | None]] = []
        self._at = 0

    @classmethod
    def start(cls, archive: Archive, first: int, until: int | None) -> Prefetch | None:
        """A reader for the entries from `first` (to `until`), or None where one would not help
        or might not be safe: a sealed archive (its documents open only with the reader's keys,
        in this process), another thread running (a fork copies only this one), few entries."""
        last = archive.ledger.size() - 1 if until is None else until
        if archive.sealer is not None or threading.active_count() > 1 or not hasattr(os, "fork") \
                or last - first + 1 < MIN_ENTRIES:
            return None
        read_end, write_end = os.pipe()
        _widen(write_end)
        pid = os.fork()
        if pid == 0:  # the reader: never returns, runs no exit handler of its parent's
            code = 1
            try:
                os.close(read_end)
                _send(archive, first, until, write_end)
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        return cls(pid, os.fdopen(read_end, "rb", buffering=1 << 16))

    def get(self, seq: int, item: str) -> Found:
        """The reading of entry `seq`'s document (`item`'s), None when the item has none, or
        NOT_PREFETCHED. Entries are asked for in log order."""
        while True:
            if self._at >= len(self._batch) and not self._next_batch():
                return NOT_PREFETCHED
            at_seq, at_item, reading = self._batch[self._at]
            if at_seq > seq:
                return NOT_PREFETCHED
            self._at += 1
            if at_seq == seq:
                return reading if at_item == item else NOT_PREFETCHED

    def _next_batch(self) -> bool:
        if self._stream is None:
            return False
        try:
            self._batch, self._at = pickle.load(self._stream), 0
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):  # done, or it failed
            self.close()
            return False
        return True

    def close(self) -> None:
        """Stop the reader (it may be waiting to write) and reap it: no process is left."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGKILL)  # no handler of the parent's runs there
            except ProcessLookupError:
                pass
            os.waitpid(self._pid, 0)
            self._pid = None
        self._batch = []


def _widen(fd: int) -> None:
    """Let the reader run ahead by more than one batch (a pipe holds 64 KiB by default, less than
    a batch's readings): the indexer's pace is uneven (a flush of held rows stops it for a
    moment), and a reader that must wait then leaves it waiting in turn. Linux only; elsewhere
    the default."""
    with suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _send(parent: Archive, first: int, until: int | None, fd: int) -> None:
    archive = Archive.open(parent.root)
    with os.fdopen(fd, "wb", buffering=1 << 16) as out:
        batch: list[tuple[int, str, Reading | None]] = []
        for row in archive.ledger.rows(first):
            if until is not None and row.seq > until:
                break
            if row.action not in FIRST_RECORD or row.item is None:
                continue
            raw = archive.ledger.metadata(row.item)
            if raw is not None and encryption.is_sealed(raw):
                continue  # opened by the indexer, with the keys it holds
            try:
                reading = None if raw is None else read_document(raw)
            except (ValueError, RecursionError):
                continue  # the indexer meets the same failure itself, as it always did
            batch.append((row.seq, row.item, reading))
            if len(batch) >= BATCH:
                pickle.dump(batch, out, protocol=pickle.HIGHEST_PROTOCOL)
                out.flush()
                batch = []
        pickle.dump(batch, out, protocol=pickle.HIGHEST_PROTOCOL)
