"""The floor of `custody verify`: the work no verifier can skip, over every core, in plain Python.

A process per core takes its share of the ledger's entries and of the object files: it reads each
entry's bytes and signature from ledger.db (sqlite3), checks the Ed25519 signature with libsodium
(PyNaCl, the library custody verifies with) against the signer's public key, and computes the
SHA-256 of each object file (hashlib). Nothing else: no parsing, no chain, no tree, no rules, no
metadata documents. custody's verify is measured against this (benchmarks/ledger.py --verify).

`floor.PeakRss` samples the peak RSS (VmHWM) of a timed `custody verify` process and, apart, of
its largest worker, from /proc while it runs (wait4's ru_maxrss is the largest of a process and
every descendant it waited for: it cannot tell them apart).

    python benchmarks/verify_floor.py ARCHIVE
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nacl.signing

TAG = b"custody:entry:v1\x00"  # custody's signature input: tag || entry bytes (docs/FORMAT.md)


def _keys(db: Path) -> dict[str, bytes]:
    """Every public key named in the ledger (init's archive key and admin, enrolments)."""
    import json

    keys: dict[str, bytes] = {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    for (body,) in conn.execute("SELECT body FROM entries WHERE action IN ('init', 'enroll')"):
        for value in _strings(json.loads(body)):
            try:
                raw = base64.b64decode(value, validate=True)
            except ValueError:
                continue
            if len(raw) == 32:
                keys[hashlib.sha256(b"custody:key-id:v1\x00" + raw).hexdigest()[:32]] = raw
    return keys


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _share(archive: Path, part: int, parts: int, keys: dict[str, bytes]) -> int:
    conn = sqlite3.connect(f"file:{archive / 'ledger.db'}?mode=ro", uri=True)
    verifiers = {k: nacl.signing.VerifyKey(raw) for k, raw in keys.items()}
    checked = 0
    for body, signature, actor in conn.execute(
            "SELECT body, signature, actor FROM entries WHERE seq % ? = ?", (parts, part)):
        verifier = verifiers.get(actor)
        if verifier is not None:
            verifier.verify(TAG + body, signature)
            checked += 1
    objects = archive / "objects" / "sha256"
    for shard in sorted(os.listdir(objects))[part::parts]:
        for name in os.listdir(objects / shard):
            with open(objects / shard / name, "rb") as f:
                hashlib.file_digest(f, "sha256")
    return checked



def main() -> None:
    archive = Path(sys.argv[1])
    keys = _keys(archive / "ledger.db")
    parts = os.cpu_count() or 2
    with ProcessPoolExecutor(parts) as pool:
        checked = sum(pool.map(_share, [archive] * parts, range(parts), [parts] * parts,
                               [keys] * parts))
    print(f"{checked} signatures verified", file=sys.stderr)


if __name__ == "__main__":
    main()
