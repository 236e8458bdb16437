"""`ingest --dry-run`: files are hashed as ingest would store them, and classified as a run would
record them, with nothing written: no object, no entry, no metadata row.
"""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO

from custody.core.chain import FIRST_RECORD
from store.ports import Digests, LedgerReads, PutResult

CHUNK = 1 << 20


def hashed(stream: BinaryIO) -> PutResult:
    """The digests `ObjectStore.put` would compute, from one pass over the stream; nothing kept."""
    hashes = {name: hashlib.new(name) for name in ("sha256", "sha512", "sha1", "md5")}
    size = 0
    view = memoryview(bytearray(CHUNK))
    source: Any = stream  # every binary stream ingest reads has readinto
    while n := source.readinto(view):
        for h in hashes.values():
            h.update(view[:n])
        size += n
    return PutResult(
        Digests(**{k: h.hexdigest() for k, h in hashes.items()}, size=size), created=False
    )


def classify(ledger: LedgerReads, results: list[Any], new_so_far: set[str | None]) -> None:
    """Set each FileResult's status as the commit would: `new` for content neither recorded nor
    met earlier in this run, `present` (a sighting) otherwise."""
    for r in results:
        recorded = r.sha256 in new_so_far or any(ledger.has_action(r.sha256, a)
                                                 for a in FIRST_RECORD)
        r.status = "present" if recorded else "new"
        if not recorded:
            new_so_far.add(r.sha256)
