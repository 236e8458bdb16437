"""Secrets and exposure (issue 10, items 15-17): parsers never see a passphrase, key files resist
guessing and need a strong passphrase of their own, and an archive is readable by its owner only."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from custody.core import pkcs8
from custody.core.signing import SigningKey
from custody.errors import WeakPassphrase, WrongPassphrase
from custody.metadata import MetadataReader
from custody.metadata.isolation import reader_environment
from custody.ops.archive import Archive
from custody.ops.ingest import Ingest, find_files
from custody.ops.keyfiles import load_key, write_new_key
from custody.search.indexer import open_index, refresh

from .conftest import ARCHIVE_PASSPHRASE, DATA, PASSPHRASE, one_line_error

MEDIA = DATA / "media"
SECRETS = {
    "CUSTODY_PASSPHRASE": PASSPHRASE,
    "CUSTODY_ARCHIVE_PASSPHRASE": ARCHIVE_PASSPHRASE,
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value-0123456789",
    "GITHUB_TOKEN": "ghp_token_value_0123456789",
}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(v.split("=", 1) for v in raw.decode(errors="replace").split("\0") if "=" in v)


def _assert_no_secret(env: dict[str, str], where: str) -> None:
    for name, value in SECRETS.items():
        assert name not in env, f"{name} reached {where}"
        assert all(value not in v for v in env.values()), f"the value of {name} reached {where}"
    assert not [n for n in env if n.startswith("CUSTODY_")], where


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# 15. Parsers run without the passphrases ----------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.skipif(shutil.which("exiftool") is None, reason="ExifTool not installed")
def test_ingest_workers_and_their_exiftools_never_see_a_passphrase(cli_archive, tmp_path):
    # A stand-in `exiftool` first in PATH records, as the kernel shows them, the environment of
    # the worker that started it (its parent) and its own, then runs the real ExifTool.
    seen = tmp_path / "seen"
    seen.mkdir()
    wrapper = tmp_path / "bin" / "exiftool"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        f'cat /proc/$PPID/environ > "{seen}/worker-$$.environ"\n'
        f'cat /proc/$PPID/cmdline > "{seen}/worker-$$.cmdline"\n'
        f'cat /proc/$$/environ > "{seen}/exiftool-$$.environ"\n'
        f'exec {shutil.which("exiftool")} "$@"\n'
    )
    wrapper.chmod(0o700)
    env = {**SECRETS, "PATH": f"{wrapper.parent}:{os.environ['PATH']}"}
    r = cli_archive("ingest", MEDIA, "--json", env=env)
    assert r.code == 0, r.stderr
    assert r.json()["summary"]["new"] >= 10  # the passphrase did reach the command itself
    exiftools = sorted(seen.glob("exiftool-*.environ"))
    assert exiftools, "no ExifTool was started"
    for path in exiftools:
        worker = path.with_name(path.name.replace("exiftool-", "worker-"))
        assert b"child_main" in worker.with_suffix(".cmdline").read_bytes()  # the worker
        for where in (path, worker):
            env_seen = dict(
                v.split("=", 1) for v in where.read_text().split("\0") if "=" in v
            )
            _assert_no_secret(env_seen, where.name)
            assert env_seen["HOME"] == "/nonexistent"
            assert env_seen["PATH"].startswith(str(wrapper.parent))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_metadata_worker_starts_clean_even_when_the_caller_holds_secrets(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    with MetadataReader(timeout=30.0) as reader:
        md = reader.read(MEDIA / "homs-loci.mp4")
        assert md["errors"] == [] and md["gps"] is not None  # ExifTool worked without HOME
        worker = reader._worker.pid
        env = _environ(worker)
        _assert_no_secret(env, "the worker")
        assert env["LC_ALL"] == "C.UTF-8" and env["HOME"] == "/nonexistent"
        children = [
            int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and _ppid(p) == worker
        ]
        assert children, "the worker has no ExifTool"
        for child in children:
            _assert_no_secret(_environ(child), "ExifTool")
        # Beyond the standard three: its end of the pipe and ExifTool's pipes, no file.
        fds = Path(f"/proc/{worker}/fd")
        targets = [os.readlink(f) for f in fds.iterdir() if int(f.name) > 2]
        assert targets and all(t.startswith(("socket:", "pipe:")) for t in targets), targets


def _ppid(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_reader_environment_is_an_allow_list():
    env = reader_environment({
        **SECRETS, "PATH": "/usr/bin", "LANG": "ar_SY.UTF-8", "LC_TIME": "C", "TZ": "UTC",
        "HOME": "/home/alice", "CUSTODY_KEY": "/home/alice/k", "PYTHONPATH": "/x",
        "LD_PRELOAD": "/evil.so", "SSH_AUTH_SOCK": "/tmp/agent", "LC_SECRET_TOKEN": "x",
    })
    assert env == {"PATH": "/usr/bin", "LANG": "ar_SY.UTF-8", "LC_TIME": "C", "TZ": "UTC",
                   "HOME": "/nonexistent", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl")
def test_the_command_holding_keys_is_not_dumpable_and_owner_only():
    code = (
        "import ctypes, os; from custody.metadata.isolation import harden_process; harden_process(); "
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0), oct(os.umask(0)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["0", "0o77"]  # PR_GET_DUMPABLE: 0; umask 077
    assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 1  # (the test itself is untouched)


# 16. Key files: a costly KDF, strong passphrases, the archive key's own ---------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_new_key_files_use_scrypt_and_openssl_still_reads_them(tmp_path):
    path = tmp_path / "k.key"
    key = write_new_key(path, "Ruba", PASSPHRASE)
    found = pkcs8.protection(path.read_bytes())
    assert (found.kdf, found.n, found.r, found.p) == ("scrypt", 1 << 14, 8, 5)
    parsed = subprocess.run(["openssl", "asn1parse", "-in", str(path)], capture_output=True,
                            text=True, check=True).stdout
    assert ":scrypt" in parsed and ":aes-256-cbc" in parsed and ":PBES2" in parsed
    out = subprocess.run(["openssl", "pkey", "-in", str(path), "-passin", f"pass:{PASSPHRASE}",
                          "-pubout", "-outform", "DER"], capture_output=True, check=True).stdout
    assert out[-32:] == key.public.raw
    with pytest.raises(WrongPassphrase):
        load_key(path, PASSPHRASE + " ")


@pytest.mark.parametrize("weak", ["x", "12345678901", "aaaaaaaaaaaaaaaa", "abababababababab",
                                  "            a"])
def test_a_weak_passphrase_is_refused_with_the_rule(cli, weak):
    r = cli("key", "new", "--name", "Farah", env={"CUSTODY_PASSPHRASE": weak})
    assert r.code == 2
    assert "too weak: use at least 12 characters" in one_line_error(r)
    assert not cli.key.exists() and not Path(str(cli.key) + ".pub").exists()
    with pytest.raises(WeakPassphrase):
        write_new_key(cli.tmp / "lib.key", "Farah", weak)


def test_init_gives_the_archive_key_its_own_passphrase(cli):
    cli("key", "new", "--name", "Alice Admin", check=True)
    without = {k: v for k, v in cli.env.items() if k != "CUSTODY_ARCHIVE_PASSPHRASE"}
    cli.env = without
    r = cli("init", "--name", "Centre")
    assert r.code == 2 and "CUSTODY_ARCHIVE_PASSPHRASE" in one_line_error(r)
    assert not cli.archive.exists()
    r = cli("init", "--name", "Centre", env={"CUSTODY_ARCHIVE_PASSPHRASE": PASSPHRASE})
    assert r.code == 2 and "its own passphrase" in one_line_error(r)
    assert not cli.archive.exists()
    r = cli("init", "--name", "Centre", env={"CUSTODY_ARCHIVE_PASSPHRASE": "short"})
    assert r.code == 2 and "archive key is too weak" in one_line_error(r)
    assert not cli.archive.exists()
    cli("init", "--name", "Centre", env={"CUSTODY_ARCHIVE_PASSPHRASE": ARCHIVE_PASSPHRASE},
        check=True)
    archive = Archive.open(cli.archive)
    assert archive.load_archive_key(ARCHIVE_PASSPHRASE).key_id == archive.config.archive_key.key_id
    with pytest.raises(WrongPassphrase):
        archive.load_archive_key(PASSPHRASE)
    # Signing a checkpoint needs the archive's passphrase; the custodian's is never tried for it.
    r = cli("checkpoint")
    assert r.code == 2 and "CUSTODY_ARCHIVE_PASSPHRASE" in one_line_error(r)
    r = cli("checkpoint", env={"CUSTODY_ARCHIVE_PASSPHRASE": ARCHIVE_PASSPHRASE})
    assert r.code == 0, r.stderr


def _old_style_key(path: Path, name: str, passphrase: str) -> SigningKey:
    """A key file as custody wrote them before: cryptography's PKCS#8 default (PBKDF2, 2,048)."""
    private = serialization.load_pem_private_key(
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519"], capture_output=True,
                       check=True).stdout, None)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(passphrase.encode()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem)
    path.chmod(0o600)
    key = SigningKey.from_encrypted_pem(pem, passphrase, name)
    Path(str(path) + ".pub").write_text(key.public.openssh_line() + "\n")
    return key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_old_pbkdf2_keys_still_open_with_a_warning_and_key_passwd_upgrades_them(cli, tmp_path):
    old = _old_style_key(cli.key, "Alice Admin", "old one")  # short, as was allowed then
    assert pkcs8.protection(cli.key.read_bytes()).iterations == 2048
    # An archive made the old way: the archive key under the admin's own passphrase.
    Archive.create(cli.archive, "Centre", old, PASSPHRASE)
    r = cli("ingest", MEDIA / "empty.bin", env={"CUSTODY_PASSPHRASE": "old one"})
    assert r.code == 0, r.stderr
    assert "PBKDF2 with 2,048 iterations only" in r.stderr and "custody key passwd" in r.stderr

    r = cli("key", "passwd", env={"CUSTODY_PASSPHRASE": "old one", "CUSTODY_NEW_PASSPHRASE": "x"})
    assert r.code == 2 and "too weak" in one_line_error(r)
    assert load_key(cli.key, "old one").key_id == old.key_id  # untouched
    r = cli("key", "passwd", env={"CUSTODY_PASSPHRASE": "old one",
                                  "CUSTODY_NEW_PASSPHRASE": PASSPHRASE})
    assert r.code == 0, r.stderr
    assert pkcs8.protection(cli.key.read_bytes()).kdf == "scrypt"
    assert cli.key.stat().st_mode & 0o777 == 0o600
    assert load_key(cli.key, PASSPHRASE).key_id == old.key_id  # the same key, so the same id
    with pytest.raises(WrongPassphrase):
        load_key(cli.key, "old one")

    # The archive key, still under the admin's passphrase, gets its own.
    r = cli("key", "passwd", "--archive-key",
            env={"CUSTODY_ARCHIVE_PASSPHRASE": PASSPHRASE, "CUSTODY_NEW_PASSPHRASE": PASSPHRASE})
    assert r.code == 2 and "its own passphrase" in one_line_error(r)
    r = cli("key", "passwd", "--archive-key",
            env={"CUSTODY_ARCHIVE_PASSPHRASE": PASSPHRASE,
                 "CUSTODY_NEW_PASSPHRASE": ARCHIVE_PASSPHRASE})
    assert r.code == 0, r.stderr
    assert cli("checkpoint").code == 0  # with the conftest's ARCHIVE_PASSPHRASE
    assert cli("verify").code == 0


# 17. Owner-only archives -----------------------------------------------------------------------


def _exposed(root: Path) -> list[str]:
    """Every path under root that anyone but its owner may read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(root.parent)} {oct(stat.S_IMODE(mode))}")
    return found


def test_under_umask_022_nothing_the_commands_write_is_readable_by_others(cli, tmp_path):
    out = tmp_path / "out"
    with _umask(0o022):
        out.mkdir()
        cli("key", "new", "--name", "Alice Admin", check=True)
        cli("init", "--name", "Test Documentation Centre", check=True)
        items = cli("ingest", MEDIA, "--case", "C-1", "--json", check=True).json()["files"]
        photo = next(f["sha256"] for f in items if f["path"].endswith("aleppo-gps.jpg"))
        cli("checkpoint", "-o", out / "checkpoint.txt", check=True)
        cli("search", "--case", "C-1", check=True)
        cli("get", photo[:12], "--purpose", "court copy", "-o", out / "copy.jpg", check=True)
        cli("export", photo[:12], "--purpose", "handover", "-o", out / "bag.zip", check=True)
        cli("verify", check=True)
    archive = cli.archive
    assert (archive / "ledger.db-wal").exists() or (archive / "ledger.db").exists()
    assert (archive / "index.db").exists()
    assert _exposed(archive) == []
    assert _exposed(cli.key.parent) == []
    assert _exposed(out) == [f"out {oct(0o755)}"]  # the folder the test made; what custody wrote
    obj = next((archive / "objects" / "sha256").rglob(photo))
    assert stat.S_IMODE(obj.stat().st_mode) == 0o400


def test_the_library_creates_an_owner_only_archive_whatever_the_umask(tmp_path):
    with _umask(0o022):
        alice = write_new_key(tmp_path / "keys" / "alice.key", "Alice Admin", PASSPHRASE)
        archive = Archive.create(tmp_path / "archive", "Centre", alice, ARCHIVE_PASSPHRASE)
        with MetadataReader(timeout=30.0) as reader:
            Ingest(archive, alice, [reader]).run(find_files([MEDIA / "aleppo-gps.jpg"], []))
        index = open_index(archive)
        refresh(archive, index)
        index.close()
        archive.ledger.close()
    assert _exposed(tmp_path / "archive") == []
    assert _exposed(tmp_path / "keys") == []
