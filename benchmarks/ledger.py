"""Ledger benchmark: signed appends, Merkle proofs and full verify at 10^4, 10^5, 10^6 entries.

For each size it builds a fresh archive whose entries are ingest-sized (about 950 bytes of canonical
JSON, signed by an enrolled custodian), then prints: append rate committed in batches of 1,000 and
one entry per transaction; mean inclusion and consistency proof time (generation from the stored
tree nodes plus verification, 1,000 random proofs each); and the time of a full `verify` (every
entry parsed, chained, signature-checked, the tree rebuilt and compared with the stored nodes and
the checkpoint; objects are not made, so their re-hashing is not part of it). Targets: proofs
< 1 ms at 10^6; full verify of 10^6 < 60 s on 2 cores; batched
appends >= 5,000/s.

    python benchmarks/ledger.py [--sizes 10000,100000,1000000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from custody.core import merkle
from custody.ops import checkpoints
from custody.ops.archive import Archive, Draft
from custody.ops.keyfiles import write_new_key
from custody.ops.verify import audit

BATCH = 1000
PASSPHRASE = "benchmark passphrase"
ARCHIVE_PASSPHRASE = "benchmark archive passphrase"


def draft(i: int) -> Draft:
    digest = f"{i:064x}"
    return Draft(
        action="ingest",  # real ingest entries; their objects are not made (see `objects=False`)
        item=digest,
        details={
            "digests": {"md5": digest[:32], "sha1": digest[:40], "sha256": digest,
                        "sha512": digest * 2},
            "size": 1_000_000 + i,
            "source": {"name": f"IMG_{i:06d}.JPG", "path": f"/media/card/DCIM/IMG_{i:06d}.JPG",
                       "mtime": "2016-10-03T11:22:05.000000Z"},
            "case": "BENCH-2016", "note": None, "batch": "b" * 36, "mime": "image/jpeg",
            "metadata_sha256": digest,
        },
    )


def run(size: int, work: Path) -> None:
    root = work / f"archive-{size}"
    key = write_new_key(work / f"key-{size}", "Bench Custodian", PASSPHRASE)
    archive = Archive.create(root, "bench", key, ARCHIVE_PASSPHRASE)
    start = time.perf_counter()
    done = archive.ledger.size()
    while done < size:
        n = min(BATCH, size - done)
        archive.append(key, [draft(done + j) for j in range(n)], check_signer=(done == 1))
        done += n
    batched = (size - 1) / (time.perf_counter() - start)

    singles = 300
    start = time.perf_counter()
    for j in range(singles):
        archive.append(key, [draft(size + j)], check_signer=False)
    single = singles / (time.perf_counter() - start)
    total = archive.ledger.size()

    cp = checkpoints.issue(archive, archive.load_archive_key(ARCHIVE_PASSPHRASE)).checkpoint
    rng = random.Random(size)
    get = archive.ledger.get_node
    leaves = {i: archive.ledger.row(i).leaf_hash for i in rng.sample(range(total), 1000)}
    start = time.perf_counter()
    for i, leaf in leaves.items():
        merkle.verify_inclusion(leaf, i, total, merkle.inclusion_proof(i, total, get),
                                cp.root_hash)
    inclusion_ms = (time.perf_counter() - start) / len(leaves) * 1000
    olds = [rng.randrange(1, total) for _ in range(1000)]
    old_roots = {m: merkle.root_hash(m, get) for m in olds}
    start = time.perf_counter()
    for m in olds:
        merkle.verify_consistency(m, total, merkle.consistency_proof(m, total, get),
                                  old_roots[m], cp.root_hash)
    consistency_ms = (time.perf_counter() - start) / len(olds) * 1000

    start = time.perf_counter()
    report = audit(archive, objects=False)  # the record: entries, signatures, tree, checkpoint
    verify_s = time.perf_counter() - start
    assert report.ok, report.problems[:3]
    db_mib = (root / "ledger.db").stat().st_size / (1 << 20)
    print(f"{size:>9} entries | append batched {batched:8.0f}/s | one per commit {single:6.0f}/s"
          f" | inclusion {inclusion_ms:6.3f} ms | consistency {consistency_ms:6.3f} ms"
          f" | full verify {verify_s:7.1f} s ({total / verify_s:7.0f}/s) | db {db_mib:6.0f} MiB",
          flush=True)
    archive.ledger.close()
    shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="custody-ledger-bench-", dir=args.dir))
    print(f"machine: {os.cpu_count()} cores; targets: proofs < 1 ms at 10^6, full verify of 10^6"
          " < 60 s, batched appends >= 5000/s")
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            run(size, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
