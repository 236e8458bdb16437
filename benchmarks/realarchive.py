"""A large archive of real entries for the verify and search benchmarks, built fast and cached.

The real camera JPEGs of ../shared/corpora/exiftool-samples are ingested through `custody ingest`
(real entries, real metadata documents from the real worker). Each further item is a variant of
one of them: the same JPEG with a comment segment (COM, FF FE) naming its number inserted after
SOI, so every variant is a distinct, valid JPEG whose metadata the worker would read exactly as
its original's; its entry carries all four digests, its size, a source name and path, the case,
and its original's metadata document (signed by digest). Entries go through the library's batched
`Archive.append` (signed, chained, tree nodes stored: what ingest commits); object files are
written straight into the local store's layout (mode 0400, no fsync: a benchmark fixture, not
evidence). The archive is kept in the work folder and reused while its size and this recipe match.

    python benchmarks/realarchive.py 100000 [--dir DIR]   # build (or find) it and print its path
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

PASSPHRASE = "benchmark passphrase"
ARCHIVE_PASSPHRASE = "benchmark archive passphrase"
CASE = "BENCH-2016"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "exiftool-samples"
RECIPE = "v1"  # bump when the recipe changes: a cached archive of another recipe is rebuilt
BATCH = 1000


def environment(work: Path, archive: Path) -> dict[str, str]:
    """The environment a `python -m custody` of this tree runs with, acting as the bench key."""
    tree = str(Path(__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=tree, CUSTODY_ARCHIVE=str(archive),
                CUSTODY_KEY=str(work / "bench.key"), CUSTODY_PASSPHRASE=PASSPHRASE,
                CUSTODY_ARCHIVE_PASSPHRASE=ARCHIVE_PASSPHRASE)


def custody(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-P", "-m", "custody", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def default_dir() -> Path:
    return Path(tempfile.gettempdir()) / "custody-bench"


def build(size: int, work: Path | None = None) -> Path:
    """The path of an archive of about `size` recorded items (ingest entries), built if needed."""
    work = (work or default_dir()).resolve()
    archive = work / f"real-{size}-{RECIPE}"
    if (archive / "complete").is_file():
        return archive
    shutil.rmtree(archive, ignore_errors=True)
    (work / "bench.key").unlink(missing_ok=True)
    (work / "bench.key.pub").unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    env = environment(work, archive)
    started = time.perf_counter()
    custody(env, "key", "new", "--name", "Bench Investigator")
    custody(env, "init", "--name", "Benchmark archive")
    jpegs = sorted(SAMPLES.glob("*.jpg"))
    custody(env, "ingest", *map(str, jpegs), "--case", CASE)
    _add_variants(archive, work / "bench.key", size)
    (archive / "complete").write_text("built by benchmarks/realarchive.py\n")
    print(f"built {archive} ({size:,} items) in {time.perf_counter() - started:.0f} s",
          file=sys.stderr, flush=True)
    return archive


def _add_variants(root: Path, key_path: Path, size: int) -> None:
    from custody.core import entry as entries
    from custody.ops.archive import Archive, Draft
    from custody.ops.keyfiles import load_key

    archive = Archive.open(root)
    key = load_key(key_path, PASSPHRASE)
    bases: list[tuple[bytes, dict[str, Any], bytes]] = []  # content, details, metadata document
    for row in archive.ledger.rows_with_action("ingest"):
        details = entries.parse(row.body).details
        doc = archive.ledger.metadata(row.item or "")
        with archive.objects.open(row.item or "") as reader:
            content = reader.read()
        if doc is not None and content[:2] == b"\xff\xd8":
            bases.append((content, details, doc))
    objects = root / "objects" / "sha256"
    batch = str(uuid.uuid4())
    done = len(bases)
    while done < size:
        drafts = []
        for i in range(done, min(size, done + BATCH)):
            content, base, doc = bases[i % len(bases)]
            comment = f"custody benchmark variant {i}".encode()
            data = content[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment \
                + content[2:]
            sha256 = hashlib.sha256(data).hexdigest()
            shard = objects / sha256[:2]
            shard.mkdir(mode=0o700, exist_ok=True)
            path = shard / sha256
            path.write_bytes(data)
            path.chmod(0o400)
            name = f"IMG_{i:06d}.JPG"
            drafts.append(Draft("ingest", sha256, {
                "digests": {"md5": hashlib.md5(data).hexdigest(),
                            "sha1": hashlib.sha1(data).hexdigest(), "sha256": sha256,
                            "sha512": hashlib.sha512(data).hexdigest()},
                "size": len(data),
                "source": {"name": name, "path": f"/media/card{i // 10000}/DCIM/{name}",
                           "mtime": base["source"]["mtime"]},
                "case": CASE, "note": None, "batch": batch, "mime": base.get("mime"),
                "metadata_sha256": hashlib.sha256(doc).hexdigest(),
            }, metadata=doc))
        archive.append(key, drafts)
        done += len(drafts)
        print(f"  {done:,} items", file=sys.stderr, end="\r", flush=True)
    archive.ledger.close()


def linked_copy(archive: Path, tree: int) -> Path:
    """The archive beside itself for another source tree, its files hard links, without its
    search index: two trees of different index schemas would each rebuild (or, verifying,
    refuse) the other's at every run. A search or verify only reads the rest."""
    copy = archive.parent / f"{archive.name}-tree{tree}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(archive, copy, copy_function=os.link,
                    ignore=shutil.ignore_patterns("index.db*"))
    return copy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", type=int)
    ap.add_argument("--dir", type=Path, default=None, help=f"work folder [{default_dir()}]")
    args = ap.parse_args()
    print(build(args.size, args.dir))


if __name__ == "__main__":
    main()
