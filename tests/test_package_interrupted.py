"""Exports and imports that are cut short: a full disk, a killed process. A clear one-line message,
nothing half-written left under any name, and nothing left over that blocks the next attempt."""

from __future__ import annotations

import fcntl
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from .conftest import one_line_error

FORMATS = ["pkg", "pkg.zip", "pkg.tar"]


@pytest.fixture
def sender(cli_archive, tmp_path):
    """An archive holding one 2 MB item (more than the small disk below can take)."""
    blob = tmp_path / "evidence.bin"
    blob.write_bytes(os.urandom(2 << 20))
    item = cli_archive("ingest", blob, "--json", check=True).json()["files"][0]["sha256"]
    cli_archive.item = item
    return cli_archive


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (tests run as root in CI); skipped, saying why, where mounting is refused."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here ({done.stderr.strip() or 'not root'})")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("name", FORMATS)
def test_export_to_a_full_disk_says_so_leaves_nothing_and_a_retry_elsewhere_works(
        sender, small_disk, tmp_path, name):
    r = sender("export", sender.item, "--purpose", "handover", "-o", small_disk / name)
    assert r.code == 3, r.stderr
    line = one_line_error(r)
    assert "No space left on device" in line and name in line, line
    assert "unexpected" not in line
    assert os.listdir(small_disk) == [], "a partial package was left on the full disk"
    roomy = tmp_path / "roomy"
    roomy.mkdir()
    sender("export", sender.item, "--purpose", "handover", "-o", roomy / name, check=True)
    sender("verify-package", roomy / name, check=True)
    sender("verify", check=True)


@pytest.mark.parametrize("name", FORMATS)
def test_a_partial_package_a_killed_export_left_does_not_block_a_retry(sender, tmp_path, name):
    out = tmp_path / name
    partial = tmp_path / f".{name}.custody-partial"
    if name == "pkg":  # what a SIGKILL mid-export leaves: a half-written bag, nobody holding it
        (partial / "data").mkdir(parents=True)
        (partial / "data" / "half.bin").write_bytes(b"x" * 1000)
    else:
        partial.write_bytes(b"PK\x03\x04 half a package")
    sender("export", sender.item, "--purpose", "retry", "-o", out, check=True)
    assert not os.path.lexists(partial)
    sender("verify-package", out, check=True)


def test_an_export_still_writing_its_partial_is_not_disturbed(sender, tmp_path):
    partial = tmp_path / ".pkg.zip.custody-partial"
    partial.write_bytes(b"being written")
    with open(partial, "rb") as held:  # a live export holds this lock while it writes
        fcntl.flock(held, fcntl.LOCK_EX)
        r = sender("export", sender.item, "--purpose", "p", "-o", tmp_path / "pkg.zip")
        assert r.code == 3 and "another export is writing" in one_line_error(r), r.stderr
        assert partial.read_bytes() == b"being written"
    assert not (tmp_path / "pkg.zip").exists()


def _zip_package(sender, tmp_path) -> Path:
    path = tmp_path / "incoming" / "pkg.zip"
    path.parent.mkdir()
    sender("export", sender.item, "--purpose", "p", "-o", path, check=True)
    return path


def test_unpack_folders_a_killed_import_left_are_removed_by_the_next_one(sender, tmp_path):
    package = _zip_package(sender, tmp_path)
    stale = [package.parent / f".custody-unpack-{n}" for n in ("k1l2ed", "x9y8z7")]
    for folder in stale:  # what a SIGKILL mid-unpack leaves: a 62 MB folder nobody holds
        (folder / "pkg" / "data").mkdir(parents=True)
        (folder / "pkg" / "data" / "big.bin").write_bytes(bytes(1 << 20))
    live = package.parent / ".custody-unpack-running"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # an import unpacking right now
        sender("verify-package", package, check=True)
        assert not any(f.exists() for f in stale)
        assert live.is_dir(), "an unpack folder in use was removed"
    finally:
        os.close(fd)
    assert sorted(p.name for p in package.parent.iterdir()) == [live.name, "pkg.zip"]
    sender("verify-package", package, check=True)
    assert sorted(p.name for p in package.parent.iterdir()) == ["pkg.zip"]


def test_the_unpack_folder_is_locked_while_in_use(sender, tmp_path):
    """What makes the clean-up above safe: a running unpack holds a lock on its folder."""
    from custody.package.bagsafe import opened

    package = _zip_package(sender, tmp_path)
    with opened(package) as listing:
        work = next(package.parent.glob(".custody-unpack-*"))
        assert listing.root.is_relative_to(work)
        fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert not list(package.parent.glob(".custody-unpack-*"))
    assert zipfile.is_zipfile(package)
