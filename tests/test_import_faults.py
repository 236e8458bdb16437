"""Import meets the same store faults as ingest (issue 10, items 2 and 11): a damaged file at an
object's name is set aside and named in the `received` entry; a full disk is one clear line."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import DATA, one_line_error
from .test_disk_full import _fill

PHOTO = DATA / "media" / "aleppo-gps.jpg"


@pytest.fixture
def package(cli_archive, tmp_path):
    """A one-photo package exported from Alice's archive, and a second archive to import into."""
    cli = cli_archive
    out = cli("ingest", PHOTO, "--json", check=True).json()
    sha = out["files"][0]["sha256"]
    cli("export", sha, "--purpose", "handover", "-o", tmp_path / "pkg", check=True)
    receiver = cli.__class__(tmp_path, tmp_path / "receiver", cli.key)
    receiver("init", "--name", "Receiving Centre", check=True)
    return receiver, tmp_path / "pkg", sha


def test_junk_at_an_imported_objects_name_is_set_aside_and_named(package):
    receiver, pkg, sha = package
    shard = receiver.archive / "objects" / "sha256" / sha[:2]
    shard.mkdir(parents=True, exist_ok=True)
    (shard / sha).write_bytes(b"junk")
    receiver("import", pkg, check=True)
    received = [json.loads(line) for line in receiver("log", "--json", check=True).stdout.split("\n")
                if line.strip()]
    entry = next(e for e in received if e["action"] == "received")
    kept = entry["details"]["replaced"]["kept_at"]
    assert (receiver.archive / kept).read_bytes() == b"junk"
    assert (shard / sha).read_bytes() == PHOTO.read_bytes()
    receiver("verify", check=True)


def test_import_onto_a_full_disk_says_so_and_records_nothing(package, mount_tmpfs):  # noqa: F811
    receiver, pkg, sha = package
    before = receiver("log", "--json", check=True).stdout
    objects = receiver.archive / "objects"
    saved = receiver.archive.parent / "objects-saved"
    os.rename(objects, saved)
    disk = mount_tmpfs(objects, "1m")
    subprocess.run(["cp", "-a", f"{saved}/.", str(objects)], check=True)
    _fill(disk)
    result = receiver("import", pkg)
    assert result.code == 3
    assert "disk holding the archive's objects is full: nothing was imported" in one_line_error(result)
    assert receiver("log", "--json", check=True).stdout == before
