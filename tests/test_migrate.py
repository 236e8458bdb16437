"""`custody migrate` (issue 15 item 8): an archive copied, checked, onto other backends and back;
resumed after a SIGKILL; an auditor's old checkpoint still proves consistent; bad input refused.

The target ledgers are the specs in LEDGER_TARGETS: adding a backend (PostgreSQL) is one entry."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from custody.ops.archive import Archive

from .conftest import DATA, Cli, one_line_error
from .s3_services import new_bucket, new_database

PHOTO = DATA / "media" / "aleppo-gps.jpg"
PHOTO2 = DATA / "media" / "carbon-south-west.jpg"
VIDEO = DATA / "media" / "homs-loci.mp4"
BLOBS = 30  # enough objects that a kill lands inside the object copy

# --ledger of each target tried: a name and a function making a fresh spec (a new database).
LEDGER_TARGETS: dict[str, Callable[[], str]] = {"sqlite": lambda: "sqlite",
                                                 "postgresql": new_database}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` and its SHA-256: the source must read as it was."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A folder+SQLite archive: photos, a video and blobs, a case, a note, a transfer, two kept
    checkpoints (the first cosigned by a witness) and the auditor's copy of the first."""
    tmp = tmp_path_factory.mktemp("migrate")
    cli = Cli(tmp, tmp / "source", tmp / "keys" / "alice.key")
    cli("key", "new", "--name", "Alice Admin", check=True)
    cli("init", "--name", "Documentation Centre", check=True)
    bob = tmp / "keys" / "bob.key"
    cli("key", "new", "--name", "Bob Investigator", "-o", bob, check=True)
    cli("enroll", f"{bob}.pub", "--role", "investigator", check=True)
    blobs = tmp / "blobs"
    blobs.mkdir()
    rng = random.Random(8)
    for i in range(BLOBS):
        (blobs / f"blob-{i:02d}.bin").write_bytes(rng.randbytes(rng.randint(1, 400_000)))
    cli("ingest", PHOTO, VIDEO, blobs, "--case", "C1", "--note", "from the field", check=True)
    photo = hashlib.sha256(PHOTO.read_bytes()).hexdigest()
    cli("note", photo[:12], "seen by a second team", check=True)
    offer = cli("transfer", photo[:12], "--to", "Bob Investigator", "--purpose", "handover",
                "--json", check=True).json()[0]["offer"]
    cli("accept", str(offer), env={"CUSTODY_KEY": str(bob)}, check=True)
    first = cli("checkpoint", "-o", tmp / "auditor-cp1.txt", "--json", check=True).json()
    witness = {"CUSTODY_KEY": str(tmp / "witness.key")}
    cli("key", "new", "--name", "Witness W", "-o", tmp / "witness.key", check=True)
    cosigned = cli("witness", "cosign", tmp / "auditor-cp1.txt", "--state", tmp / "w.json",
                   "--archive-key", first["verifier_key"], "-o", tmp / "cp1.cosigned", "--json",
                   env=witness, check=True).json()
    cli("witness", "add", tmp / "cp1.cosigned", "--witness-key", cosigned["witness_key"],
        check=True)
    cli("ingest", PHOTO2, check=True)
    cli("checkpoint", check=True)
    cli.bob = bob  # type: ignore[attr-defined]
    cli.verifier_key = first["verifier_key"]  # type: ignore[attr-defined]
    return cli


def migrate(src: Cli, to: Path, *args: str, env: dict[str, str] | None = None) -> object:
    return src("migrate", "--to", to, *args, "--json", env=env, timeout=300)


def same_record(source: Path, target: Path) -> int:
    """The target's ledger holds the source's entries byte for byte (and then one `migrated`
    entry), the same checkpoints under the same ids with the same extras, and the same metadata.
    Read through the ports, whatever the backends. The source's size."""
    a, b = Archive.open(source).ledger, Archive.open(target).ledger
    rows_a, rows_b = list(a.rows()), list(b.rows())
    assert rows_b[:len(rows_a)] == rows_a
    sealed = json.loads(rows_b[len(rows_a)].body)
    assert len(rows_b) == len(rows_a) + 1 and sealed["action"] == "migrated"
    assert sealed["details"]["entries"] == len(rows_a)
    assert b.checkpoints() == a.checkpoints() and b.checkpoint_extras() == a.checkpoint_extras()
    assert any(x.kind == "cosignature" for x in b.checkpoint_extras())
    assert dict(b.all_metadata()) == dict(a.all_metadata())
    a.close()
    b.close()
    return len(rows_a)


def auditor_proves_consistency(cli: Cli, old: Path) -> None:
    """The auditor's checkpoint, saved before the move, against the moved archive: verify
    accepts it, and a consistency proof to a checkpoint issued now verifies offline."""
    moved = cli("verify", "--checkpoint", old, "--json", check=True).json()
    assert moved["ok"], moved["problems"]
    cli("checkpoint", "-o", cli.tmp / "now.txt", check=True)
    proof = cli.tmp / f"proof-{cli.archive.name}.json"
    cli("prove", "--from", old, "--to", cli.tmp / "now.txt", "-o", proof, check=True)
    cli("verify-proof", proof, "--archive-key", cli.verifier_key, check=True)  # type: ignore[attr-defined]


@pytest.mark.parametrize("ledger", sorted(LEDGER_TARGETS))
def test_migrate_folder_to_s3_and_back_keeps_every_entry_object_and_checkpoint(
    source: Cli, s3_services: dict[str, str], ledger: str, request: pytest.FixtureRequest
) -> None:
    if ledger == "postgresql":
        request.getfixturevalue("pg_services")  # the server, or the skip saying why not
    before = snapshot(source.archive)
    old = source.tmp / "auditor-cp1.txt"
    on_s3 = source.tmp / f"on-s3-{ledger}"
    bucket = new_bucket()
    done = migrate(source, on_s3, "--ledger", LEDGER_TARGETS[ledger](),
                   "--objects", f"s3://{bucket}/evidence", "--retention-days", "1")
    assert done.code == 0, done.stderr  # type: ignore[attr-defined]
    assert snapshot(source.archive) == before  # the source was only read
    summary = done.json()  # type: ignore[attr-defined]
    size = same_record(source.archive, on_s3)
    assert summary["entries"] == size and summary["objects"] == BLOBS + 3
    assert summary["checkpoints"] == 2 and summary["checkpoint_extras"] == 1
    config = json.loads((on_s3 / "custody.json").read_text())
    assert config["objects"]["bucket"] == bucket and not (on_s3 / "objects").exists()
    assert not (on_s3 / "migration.json").exists()
    moved = Cli(source.tmp, on_s3, source.key)
    moved.verifier_key = source.verifier_key  # type: ignore[attr-defined]
    report = moved("verify", "--json", check=True).json()
    assert report["ok"] and report["objects_checked"] == BLOBS + 3
    assert all(r["mode"] == "COMPLIANCE" for r in report["retention"].values())
    auditor_proves_consistency(moved, old)
    same = moved("migrate", "--to", source.tmp / "same", "--objects", f"s3://{bucket}/evidence")
    assert same.code == 2 and "own object store" in one_line_error(same)
    # ... and back to a folder: the S3 archive is now the source
    back = source.tmp / f"back-{ledger}"
    returned = migrate(moved, back, "--ledger", LEDGER_TARGETS[ledger]())
    assert returned.code == 0, returned.stderr  # type: ignore[attr-defined]
    same_record(on_s3, back)
    home = Cli(source.tmp, back, source.key)
    home.verifier_key = source.verifier_key  # type: ignore[attr-defined]
    assert home("verify", "--json", check=True).json()["objects_checked"] == BLOBS + 3
    auditor_proves_consistency(home, old)
    found = home("search", "--case", "C1", "--json", check=True).json()
    assert found["count"] == BLOBS + 2


def test_a_migration_killed_midway_resumes_and_verifies(source: Cli) -> None:
    target = source.tmp / "killed"
    stored = target / "objects" / "sha256"
    proc = subprocess.Popen([sys.executable, "-m", "custody", "migrate", "--to", str(target)],
                            env=source.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if stored.is_dir() and next(stored.glob("*/*"), None) is not None:
            break  # the first object is in: the other 32 are still to come
        time.sleep(0.002)
    running = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert running, "the kill should land inside the object copy"
    assert not (target / "custody.json").exists()  # not an archive until it is sealed
    assert (target / "migration.json").exists()
    assert source("verify", env={"CUSTODY_ARCHIVE": str(target)}).code != 0
    again = migrate(source, target)
    assert again.code == 0, again.stderr  # type: ignore[attr-defined]
    summary = again.json()  # type: ignore[attr-defined]
    assert summary["resumed"] and summary["objects_copied"] < BLOBS + 3
    same_record(source.archive, target)  # no entry twice
    moved = Cli(source.tmp, target, source.key)
    assert moved("verify", "--json", check=True).json()["ok"]
    once_more = migrate(source, target)
    assert once_more.code == 3  # type: ignore[attr-defined]
    assert "already holds an archive" in one_line_error(once_more)  # type: ignore[arg-type]


def test_migrate_refuses_bad_input_and_changes_nothing(
    source: Cli, s3_services: dict[str, str], tmp_path: Path
) -> None:
    before = snapshot(source.archive)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("someone's files")
    other = tmp_path / "other"
    source("init", other, "--name", "Another Centre", check=True)
    other_before = snapshot(other)
    fresh = tmp_path / "fresh"
    cases = [
        (["--to", fresh], {"CUSTODY_ARCHIVE": str(tmp_path / "none")}, "no archive at"),
        (["--to", busy], {}, "exists and is not empty"),
        (["--to", other], {}, "already holds an archive"),
        (["--to", fresh, "--objects", f"s3://{new_bucket(lock=False)}/x"], {},
         "has no Object Lock"),
        (["--to", fresh, "--objects", f"s3://{new_bucket()}/x", "--s3-endpoint",
          "http://127.0.0.1:9"], {}, "cannot be reached"),
        (["--to", fresh, "--ledger", "mysql://x"], {}, "give sqlite or a postgresql"),
        (["--to", source.archive / "copy"], {}, "must be outside the source"),
        (["--to", fresh], {"CUSTODY_KEY": str(source.bob)}, "only an admin"),  # type: ignore[attr-defined]
    ]
    for args, env, said in cases:
        result = source("migrate", *args, env=env)
        assert result.code in (2, 3) and said in one_line_error(result), (args, result.stderr)
        assert not fresh.exists() and not (source.archive / "copy").exists()
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    assert snapshot(other) == other_before
    assert snapshot(source.archive) == before


def test_a_corrupt_source_object_stops_the_migration_and_is_named(
    source: Cli, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(source.archive, damaged)
    victim = sorted((damaged / "objects" / "sha256").glob("*/*"))[5]
    victim.chmod(0o600)
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    src = Cli(tmp_path, damaged, source.key)
    target = tmp_path / "target"
    result = src("migrate", "--to", target)
    assert result.code == 1 and victim.name in one_line_error(result), result.stderr
    assert "is corrupt" in one_line_error(result)
    assert not (target / "custody.json").exists()
    assert not list(target.glob(f"objects/sha256/*/{victim.name}"))  # never copied


def test_set_aside_metadata_is_copied_with_the_document_that_replaced_it(
    source: Cli, tmp_path: Path
) -> None:
    """An unsigned metadata row planted before an item's first ingest was set aside, kept as
    found: the copy keeps it too (evidence of the attempt), beside the signed document."""
    import sqlite3

    copy = tmp_path / "copy"
    shutil.copytree(source.archive, copy)
    photo = DATA / "media" / "clock-no-offset.jpg"
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    with sqlite3.connect(copy / "ledger.db") as conn:  # an insider, no passphrase
        conn.execute("INSERT INTO metadata (sha256, doc) VALUES (?, ?)", (sha, b'{"planted":1}'))
    src = Cli(tmp_path, copy, source.key)
    src("ingest", photo, check=True)
    target = tmp_path / "target"
    assert src("migrate", "--to", target, "--json", check=True).json()["metadata_set_aside"] == 1
    ledger = Archive.open(target).ledger
    assert [(s, d) for s, d, _ in ledger.set_aside_metadata()] == [(sha, b'{"planted":1}')]
    ledger.close()
    assert Cli(tmp_path, target, source.key)("verify", "--json", check=True).json()["ok"]


def test_a_migrated_entry_stating_a_wrong_root_or_place_fails_verify(archive, alice) -> None:
    """verify checks what a `migrated` entry states: the root of the entries before it."""
    from custody.core import merkle
    from custody.ops.archive import Draft
    from custody.ops.verify import audit

    size = archive.ledger.size()
    true_root = merkle.root_hash(size, archive.ledger.get_node).hex()
    moved = {"from": {}, "to": {}, "entries": size, "root": true_root, "objects": 0}
    archive.append(alice, [Draft("migrated", None, moved)])
    assert audit(archive, objects=False).ok
    archive.append(alice, [Draft("migrated", None, dict(moved, entries=size + 1,
                                                        root="00" * 32))])
    archive.append(alice, [Draft("migrated", None, moved)])  # not right after what it copied
    problems = audit(archive, objects=False).problems
    assert problems == [
        f"entry {size + 1}: the Merkle root of the {size + 1} entries it says it copied is not "
        "the one it states",
        f"entry {size + 2}: a migrated entry must follow the {size + 2} entries it copied "
        f"(it says {size})",
    ], problems
