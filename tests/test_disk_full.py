"""A full disk, for real: objects and the ledger on small tmpfs mounts (issue 10, items 1 and 11).

Mounting needs root (CI runs as root); where it is impossible the tests skip and say why.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import one_line_error


def _resize(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def _objects_on(mount_tmpfs, archive: Path, size: str) -> Path:
    objects = mount_tmpfs(archive / "objects", size)
    (objects / "sha256").mkdir()
    (objects / "tmp").mkdir()
    return objects


def _random_files(folder: Path, count: int, size: int) -> dict[str, bytes]:
    folder.mkdir()
    files = {}
    for i in range(count):
        data = os.urandom(size)
        (folder / f"f{i}.bin").write_bytes(data)
        files[hashlib.sha256(data).hexdigest()] = data
    return files


def _fill(disk: Path) -> Path:
    """Write a filler file until the disk refuses another byte."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == 28, exc  # ENOSPC
    finally:
        os.close(fd)
    return filler


def _stored_lines(stdout: str) -> list[tuple[str, str]]:
    return [(ln.split()[0], ln.split()[1]) for ln in stdout.splitlines() if ln.strip()]


def test_full_disk_never_stores_a_truncated_object(cli_archive, tmp_path, mount_tmpfs):
    objects = _objects_on(mount_tmpfs, cli_archive.archive, "3m")
    files = _random_files(tmp_path / "src", 8, 700_000)

    r = cli_archive("ingest", tmp_path / "src")
    assert r.code == 3, r.stderr
    message = one_line_error(r)
    assert "the disk holding the archive is full" in message
    assert "nothing was recorded for" in message and "free space" in message
    stored = _stored_lines(r.stdout)
    assert 1 <= len(stored) < 8
    for status, sha in stored:  # every file said to be stored is stored whole
        assert status == "new"
        assert (objects / "sha256" / sha[:2] / sha).read_bytes() == files[sha]
    for path in (objects / "sha256").rglob("*"):  # no partial object anywhere, recorded or not
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    assert list((objects / "tmp").iterdir()) == []
    assert cli_archive("verify").code == 0

    _resize(objects, "3800k")  # room for one more file: --json still reports what was recorded
    (tmp_path / "src2").mkdir()
    for i, data in enumerate(list(files.values())[:3]):
        (tmp_path / "src2" / f"g{i}.bin").write_bytes(data + b"!")
    r = cli_archive("ingest", tmp_path / "src2", "--json")
    assert r.code == 3 and "disk holding the archive is full" in one_line_error(r)
    partial = r.json()
    assert 1 <= partial["summary"]["new"] < 3
    assert all(f["status"] == "new" and f["seq"] is not None for f in partial["files"])

    _resize(objects, "16m")  # space again: the same ingest records the rest
    r = cli_archive("ingest", tmp_path / "src")
    assert r.code == 0, r.stderr
    statuses = dict((sha, status) for status, sha in _stored_lines(r.stdout))
    assert set(statuses) == set(files)
    # recorded before the stop: already recorded from the same path, not recorded again
    assert [statuses[sha] for _, sha in stored] == ["unchanged"] * len(stored)
    assert cli_archive("verify").code == 0


@pytest.fixture
def archive_on_small_disk(cli, mount_tmpfs):
    """The archive folder on a 3 MB tmpfs, its objects on a roomy one: only the ledger fills."""
    mount_tmpfs(cli.archive, "3m")
    cli("key", "new", "--name", "Alice Admin", check=True)
    cli("init", "--name", "Test Documentation Centre", check=True)
    _objects_on(mount_tmpfs, cli.archive, "32m")
    return cli


def test_full_ledger_disk_records_no_ingest_and_says_so(archive_on_small_disk, tmp_path):
    cli = archive_on_small_disk
    files = _random_files(tmp_path / "src", 3, 20_000)
    entries_before = len(cli("log", "--json", check=True).stdout.splitlines())
    filler = _fill(cli.archive)

    r = cli("ingest", tmp_path / "src")
    assert r.code == 3, r.stderr
    message = one_line_error(r)
    assert "disk holding the archive" in message and "full" in message, message
    assert "unexpected" not in message and "OperationalError" not in message
    assert r.stdout.strip() == ""  # nothing printed as stored: nothing was

    filler.unlink()
    assert len(cli("log", "--json", check=True).stdout.splitlines()) == entries_before
    r = cli("ingest", tmp_path / "src")
    assert r.code == 0, r.stderr
    assert sorted(sha for _, sha in _stored_lines(r.stdout)) == sorted(files)
    assert cli("verify").code == 0


def test_full_ledger_disk_refuses_note_and_checkpoint_clearly(archive_on_small_disk, tmp_path):
    cli = archive_on_small_disk
    _random_files(tmp_path / "src", 1, 1000)
    sha = _stored_lines(cli("ingest", tmp_path / "src", check=True).stdout)[0][1]
    entries_before = len(cli("log", "--json", check=True).stdout.splitlines())
    filler = _fill(cli.archive)

    for args in (("note", sha, "--text", "seen at the scene"), ("checkpoint",)):
        r = cli(*args)
        assert r.code == 3, (args, r.stderr)
        message = one_line_error(r)
        assert "disk holding the archive" in message and "full" in message, message
        assert "nothing was recorded" in message, message
        assert "unexpected" not in message

    filler.unlink()
    assert len(cli("log", "--json", check=True).stdout.splitlines()) == entries_before
    first = cli("checkpoint", "--json", check=True).json()
    assert first["new"] and first["id"] == 1  # the refused checkpoint was never kept
    assert cli("verify").code == 0
