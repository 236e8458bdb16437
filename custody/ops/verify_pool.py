"""verify's CPU-bound checks spread over a process per core: each entry's canonical form and
Ed25519 signature, each object's fixity (its SHA-256 re-computed from its bytes), and one long
task that runs beside them from the start (the search index's check, verify.py).

The verifying process walks the log (chain, tree, replay) and hands these checks out in chunks;
the workers are forked, so they share the object store's location and parse no media files (the
index check opens the archive afresh: a worker never uses its parent's ledger connection). Results
come back as plain values, and the caller turns them into findings in its own order: what verify
reports does not depend on which worker finished first. Below PARALLEL_FROM entries everything
runs inline (starting workers would cost more than it saves).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import TypeVar

from custody.core import entry as entries
from store.ports import ObjectCorrupt, ObjectMissing, ObjectStore, ObjectUnreadable

PARALLEL_FROM = 5_000  # entries; below this, forking the workers costs more than it saves
ENTRY_CHUNK = 2048
OBJECT_CHUNK = 256
MAX_IN_FLIGHT = 8  # chunks queued to the workers: bounds memory on a huge log
OBJECTS_IN_FLIGHT = 32  # object chunks queued ahead of the caller (8,192 names)

# seq, the signer's public key (None: no signature to check, form only), entry bytes, signature
EntryJob = tuple[int, bytes | None, bytes, bytes]
# what one object's check found: "ok" with its size, or "missing" / "corrupt" / "unreadable"
# with the store's message
ObjectOutcome = tuple[str, str, int | str]
# as a worker sends it back, the name left out (the caller holds the chunk it sent): the size, or
# the outcome and the store's message. A size alone keeps 100,000 results small in memory.
Fixity = int | tuple[str, str]

_store: ObjectStore | None = None  # the store the forked workers check (set before they fork)

T = TypeVar("T")


@dataclass(slots=True)
class EntryFindings:
    bad_signatures: list[int] = field(default_factory=list)
    not_canonical: dict[int, str] = field(default_factory=dict)


def check_entries(jobs: list[EntryJob]) -> EntryFindings:
    """The canonical form of each entry's bytes, and its signature where a key is given."""
    found = EntryFindings()
    for seq, public_key, body, signature in jobs:
        problem = entries.form_problem(body)
        if problem is not None:
            found.not_canonical[seq] = problem
        if public_key is not None and not entries.signature_valid(
            entries.SignedEntry(body, signature), public_key
        ):
            found.bad_signatures.append(seq)
    return found


def check_objects(shas: list[str], store: ObjectStore | None = None) -> list[Fixity]:
    """Fixity of each object, in order: its size, or why it could not be confirmed."""
    store = store or _store
    assert store is not None, "check_objects runs in a worker forked after _store was set"
    out: list[Fixity] = []
    for sha256 in shas:
        try:
            out.append(store.check(sha256))
        except ObjectMissing as exc:
            out.append(("missing", str(exc)))
        except ObjectCorrupt as exc:
            out.append(("corrupt", str(exc)))
        except ObjectUnreadable as exc:
            out.append(("unreadable", str(exc)))
    return out


class VerifyPool:
    """Entry checks are queued in order and bounded in flight; object checks are queued after the
    walk, in order. Until `start(parallel=True)` each check runs inline when queued."""

    def __init__(self, objects: ObjectStore) -> None:
        self._objects = objects
        self._jobs: list[EntryJob] = []
        self.entry_findings = EntryFindings()
        self._entry_futures: deque[Future[EntryFindings]] = deque()
        self._object_futures: deque[tuple[list[str], Future[list[Fixity]]]] = deque()
        self._object_chunks: Iterator[list[str]] = iter(())
        self._pool: ProcessPoolExecutor | None = None

    @property
    def parallel(self) -> bool:
        return self._pool is not None

    def start(self, parallel: bool) -> None:
        """Start a worker per core (`parallel`), or keep every check inline."""
        global _store
        if parallel and self._pool is None:
            _store = self._objects
            if (preload := getattr(self._objects, "preload", None)) is not None:
                preload()  # a sealed store's catalogue, read here: no ledger use after the fork
            context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
            self._pool = ProcessPoolExecutor(max_workers=os.cpu_count() or 2, mp_context=context)

    def __enter__(self) -> VerifyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        global _store
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        _store = None

    def beside(self, task: Callable[..., T], *args: object) -> Future[T] | None:
        """Run `task(*args)` on a worker, beside the checks queued after it (None when the pool
        runs inline: the caller then does the work itself). Submitted first, it takes one worker
        from the start while the other takes the entry and object chunks."""
        if self._pool is None:
            return None
        return self._pool.submit(task, *args)

    def entry(self, seq: int, public_key: bytes | None, body: bytes, signature: bytes) -> None:
        self._jobs.append((seq, public_key, body, signature))
        if len(self._jobs) >= ENTRY_CHUNK:
            self._flush()

    def _flush(self) -> None:
        jobs, self._jobs = self._jobs, []
        if not jobs:
            return
        if self._pool is None:
            self._merge(check_entries(jobs))
            return
        self._entry_futures.append(self._pool.submit(check_entries, jobs))
        while len(self._entry_futures) > MAX_IN_FLIGHT:
            self._merge(self._entry_futures.popleft().result())

    def _merge(self, found: EntryFindings) -> None:
        self.entry_findings.bad_signatures.extend(found.bad_signatures)
        self.entry_findings.not_canonical.update(found.not_canonical)

    def entries_done(self) -> EntryFindings:
        """Every entry check queued so far, finished."""
        self._flush()
        while self._entry_futures:
            self._merge(self._entry_futures.popleft().result())
        self.entry_findings.bad_signatures.sort()
        return self.entry_findings

    def objects(self, shas: Iterable[str]) -> None:
        """Queue the fixity of these objects: the first OBJECTS_IN_FLIGHT chunks go to the
        workers now, the rest as their outcomes are read (so the names are never all held)."""
        self._object_chunks = _chunks(iter(shas), OBJECT_CHUNK)
        if self._pool is not None:
            self._submit_objects(OBJECTS_IN_FLIGHT)

    def _submit_objects(self, count: int) -> None:
        assert self._pool is not None
        for chunk in islice(self._object_chunks, count):
            self._object_futures.append((chunk, self._pool.submit(check_objects, chunk)))

    def object_outcomes(self) -> Iterable[ObjectOutcome]:
        """The outcomes, in the order the objects were queued (checked here, inline, when the
        pool runs no workers)."""
        if self._pool is None:
            for chunk in self._object_chunks:
                yield from _outcomes(chunk, check_objects(chunk, self._objects))
            return
        while self._object_futures:
            chunk, future = self._object_futures.popleft()
            self._submit_objects(1)
            yield from _outcomes(chunk, future.result())


def _chunks(names: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(islice(names, size)):
        yield chunk


def _outcomes(chunk: list[str], found: list[Fixity]) -> Iterable[ObjectOutcome]:
    for sha256, fixity in zip(chunk, found, strict=True):
        if isinstance(fixity, int):
            yield sha256, "ok", fixity
        else:
            yield sha256, fixity[0], fixity[1]
