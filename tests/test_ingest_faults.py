"""Ingest meets a damaged store, a planted metadata row, undecodable names and a swapped-in FIFO
(issue 10, items 2, 3, 6 and 7): nothing lost, nothing misrepresented, the batch goes on."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from custody.core import canonical

from .conftest import DATA


def _log(cli) -> list[dict]:
    return [json.loads(line) for line in cli("log", "--json", check=True).stdout.splitlines()]


def _object(cli, sha: str):
    return cli.archive / "objects" / "sha256" / sha[:2] / sha


def test_junk_at_an_objects_name_before_its_first_ingest_is_set_aside(cli_archive, tmp_path):
    data = (DATA / "media" / "aleppo-gps.jpg").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    planted = _object(cli_archive, sha)
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"junk\n")  # an insider, or a crash of old code, left this at the name
    src = tmp_path / "photo.jpg"
    src.write_bytes(data)

    r = cli_archive("ingest", src)
    assert r.code == 0, r.stderr
    assert r.stdout.split()[:2] == ["new", sha]
    assert planted.read_bytes() == data  # the real bytes are stored now
    ingest = _log(cli_archive)[-1]
    replaced = ingest["details"]["replaced"]
    assert ingest["action"] == "ingest"
    assert replaced["sha256"] == hashlib.sha256(b"junk\n").hexdigest() and replaced["size"] == 5
    kept = cli_archive.archive / replaced["kept_at"]
    assert replaced["kept_at"].startswith("objects/quarantine/" + sha)
    assert kept.read_bytes() == b"junk\n"  # set aside, never deleted, named in the log
    assert replaced["kept_at"] in r.stderr
    assert cli_archive("verify").code == 0


def test_a_damaged_object_is_repaired_by_ingesting_its_file_again(cli_archive, tmp_path):
    src = tmp_path / "video.mp4"
    src.write_bytes((DATA / "media" / "homs-loci.mp4").read_bytes())
    sha = cli_archive("ingest", src, check=True).stdout.split()[1]
    obj = _object(cli_archive, sha)
    os.chmod(obj, 0o644)
    obj.write_bytes(src.read_bytes()[:4096])  # truncated, as a full disk once left objects
    damaged = cli_archive("verify")
    assert damaged.code == 1 and "corrupt" in damaged.stdout + damaged.stderr

    r = cli_archive("ingest", src, "--json")
    assert r.code == 0, r.stderr
    result = r.json()["files"][0]
    assert result["status"] == "present" and result["replaced"].startswith("objects/quarantine/")
    assert obj.read_bytes() == src.read_bytes()
    sighting = _log(cli_archive)[-1]
    assert sighting["action"] == "sighting"
    assert sighting["details"]["replaced"] == {
        "kept_at": result["replaced"],
        "sha256": hashlib.sha256(src.read_bytes()[:4096]).hexdigest(),
        "size": 4096,
    }
    assert (cli_archive.archive / result["replaced"]).read_bytes() == src.read_bytes()[:4096]
    verified = cli_archive("verify", "--json")
    assert verified.code == 0
    assert any(n.startswith(result["replaced"]) for n in verified.json()["notices"])


def test_an_intact_object_is_trusted_and_kept_as_it_is(cli_archive, tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"intact evidence")
    sha = cli_archive("ingest", src, check=True).stdout.split()[1]
    inode = _object(cli_archive, sha).stat().st_ino
    r = cli_archive("ingest", src, "--json", check=True).json()
    # the same path again: already recorded (nothing appended), the object checked and kept
    assert r["files"][0]["status"] == "unchanged" and r["files"][0]["replaced"] is None
    assert _object(cli_archive, sha).stat().st_ino == inode
    assert not (cli_archive.archive / "objects" / "quarantine").exists()


PLANTED = {"mime": "image/jpeg", "captured_at": "2001-09-09T01:46:40Z",
           "gps": {"lat": 51.5007, "lon": -0.1246, "alt": 0.0},
           "device": {"make": "Planted", "model": "Forged"}, "errors": []}


def test_a_planted_metadata_row_is_never_signed_as_extracted(cli_archive, tmp_path):
    data = (DATA / "media" / "aleppo-gps.jpg").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    planted = canonical.encode(PLANTED)
    with sqlite3.connect(cli_archive.archive / "ledger.db") as conn:  # an insider, no passphrase
        conn.execute("INSERT INTO metadata (sha256, doc) VALUES (?, ?)", (sha, planted))
    before = cli_archive("verify")
    assert before.code == 1 and f"metadata row for {sha} belongs to no recorded item" in before.stdout
    src = tmp_path / "photo.jpg"
    src.write_bytes(data)
    cli_archive("ingest", src, check=True)

    shown = cli_archive("show", sha, "--json", check=True).json()
    assert shown["device"] != PLANTED["device"] and shown["gps"] != PLANTED["gps"]
    assert shown["captured_at"] != PLANTED["captured_at"]
    assert 35 < shown["gps"]["lat"] < 37  # what the photo itself says: Aleppo
    details = shown["history"][0]["details"]
    assert details["metadata_set_aside"] == hashlib.sha256(planted).hexdigest()
    assert details["metadata_sha256"] == hashlib.sha256(canonical.encode(shown["metadata"])).hexdigest()
    with sqlite3.connect(cli_archive.archive / "ledger.db") as conn:
        kept = conn.execute("SELECT doc FROM metadata_set_aside WHERE sha256 = ?", (sha,)).fetchall()
        assert [bytes(k[0]) for k in kept] == [planted]  # kept as found, out of the record
        with pytest.raises(sqlite3.DatabaseError, match="write-once"):  # now it is signed for
            conn.execute("UPDATE metadata SET doc = ? WHERE sha256 = ?", (planted, sha))
    assert cli_archive("verify").code == 0


def test_an_undecodable_file_name_is_kept_and_the_batch_goes_on(cli_archive, tmp_path):
    src = tmp_path / "card"
    src.mkdir()
    for i in range(11):
        (src / f"IMG_{i:04d}.JPG").write_bytes(f"photo {i}".encode())
    raw = b"caf\xe9 \xff.jpg"  # Latin-1 and a stray byte: not UTF-8
    with open(os.fsencode(src) + b"/" + raw, "wb") as f:
        f.write(b"the odd one")

    r = cli_archive("ingest", src)
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 12 and all(line.startswith("new ") for line in lines)
    assert any(line.endswith("caf\\xe9 \\xff.jpg") for line in lines)
    odd = next(e for e in _log(cli_archive) if "name_b64" in e["details"].get("source", {}))
    source = odd["details"]["source"]
    assert source["name"] == "caf\\xe9 \\xff.jpg"
    assert base64.b64decode(source["name_b64"]) == raw
    assert base64.b64decode(source["path_b64"]).endswith(b"/card/" + raw)
    assert len(cli_archive("list", "--json", check=True).json()) == 12
    again = cli_archive("ingest", src, "--json", check=True).json()  # stdout JSON still works
    assert again["summary"]["unchanged"] == 12  # the same names, already recorded
    assert cli_archive("verify").code == 0


FIFO_AFTER_WALK = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from custody.ops.archive import Archive
    from custody.ops.ingest import Ingest, find_files
    from custody.ops.keyfiles import load_key
    from custody.metadata import MetadataReader

    archive = Archive.open(Path(sys.argv[1]))
    key = load_key(Path(sys.argv[2]), os.environ["CUSTODY_PASSPHRASE"])
    src = Path(sys.argv[3])
    files = find_files([src], [])
    os.unlink(src / "b.bin")
    os.mkfifo(src / "b.bin")  # swapped in after the walk, before the file is opened
    with MetadataReader() as reader:
        said = lambda s: print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
        report = Ingest(archive, key, [reader], on_skip=said).run(files)
    print(json.dumps(report.to_json()))
""")


def test_a_fifo_swapped_in_after_the_walk_is_skipped_not_waited_on(cli_archive, tmp_path):
    # The swap must fall between the walk and the open, so this drives the library as the CLI
    # does (find_files, then Ingest.run) with the real archive, key and metadata reader.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (src / name).write_bytes(name.encode() * 100)
    try:
        done = subprocess.run(
            [sys.executable, "-c", FIFO_AFTER_WALK, str(cli_archive.archive),
             str(cli_archive.key), str(src)],
            env=cli_archive.env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("ingest blocked in open() on a FIFO")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(f["path"].rsplit("/", 1)[1], f["status"]) for f in report["files"]] == [
        ("a.bin", "new"), ("c.bin", "new")]
    assert report["summary"]["skipped"] == 1 and report["summary"]["failed"] == 0
    assert report["skipped"][0]["path"].endswith("b.bin")
    assert "not a regular file when opened (a FIFO)" in report["skipped"][0]["reason"]
    assert "skipped" in done.stderr and "FIFO" in done.stderr
    assert cli_archive("verify").code == 0
