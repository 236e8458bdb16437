"""Faults and insider edits verify must name (issue 10, items 4, 5, 8, 9, 10 and 19).

Tests run as root, and root ignores file modes: an "unreadable" file is made real by running the
command without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (setpriv), and a write-blocked copy is a
read-only bind mount, exactly what a forensic write blocker gives.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from custody.ops.keyfiles import write_new_key

from .conftest import ARCHIVE_PASSPHRASE, DATA, Cli, Result, one_line_error

GPS_JPEG = "aleppo-gps.jpg"  # 36.2N 37.13E, with a capture time


@pytest.fixture
def filled(cli_archive: Cli, tmp_path: Path) -> Cli:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in (GPS_JPEG, "homs-loci.mp4", "random-4k.bin"):
        (folder / name).write_bytes((DATA / "media" / name).read_bytes())
    cli_archive("ingest", folder, "--case", "C-1", check=True)
    cli_archive("verify", check=True)
    return cli_archive


def _items(cli: Cli) -> dict[str, str]:
    return {r["name"]: r["sha256"] for r in cli("list", "--json", check=True).json()}


def _object(cli: Cli, sha: str) -> Path:
    return cli.archive / "objects" / "sha256" / sha[:2] / sha


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with the SHA-256 of its bytes: what "nothing written" means."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# Item 4: every stored Merkle node, not only the root ------------------------------------------------

def test_a_tampered_interior_merkle_node_fails_verify_not_only_later_proofs(filled):
    conn = sqlite3.connect(filled.archive / "ledger.db", isolation_level=None)
    conn.execute("DROP TRIGGER nodes_no_update")
    conn.execute("UPDATE merkle_nodes SET hash = ? WHERE level = 0 AND idx = 2", (b"\x13" * 32,))
    conn.close()
    r = filled("verify", "--ledger-only", "--json")
    assert r.code == 1
    assert any("stored Merkle tree node (0, 2) does not match" in p for p in r.json()["problems"])


def test_prove_refuses_to_hand_out_a_proof_made_from_a_tampered_node(filled):
    filled("checkpoint", check=True)
    conn = sqlite3.connect(filled.archive / "ledger.db", isolation_level=None)
    conn.execute("DROP TRIGGER nodes_no_update")
    conn.execute("UPDATE merkle_nodes SET hash = ? WHERE level = 0 AND idx = 1", (b"\x13" * 32,))
    conn.close()
    r = filled("prove", "--entry", "0")
    assert r.code == 1 and r.stdout == ""
    assert "does not hold" in one_line_error(r) and "custody verify" in one_line_error(r)


# Item 5: names and keys outside the signed record -----------------------------------------------------

def test_export_takes_the_archive_name_from_entry_0_not_custody_json(filled, tmp_path):
    config_path = filled.archive / "custody.json"
    config = json.loads(config_path.read_text())
    config["name"] = "Ministry of Truth"
    config_path.write_text(json.dumps(config))
    r = filled("verify")
    assert r.code == 1 and "custody.json: name 'Ministry of Truth' differs" in r.stdout
    sha = _items(filled)[GPS_JPEG]
    filled("export", sha, "--purpose", "court", "-o", tmp_path / "bag", check=True)
    checked = filled("verify-package", tmp_path / "bag", "--json")
    assert checked.code == 0, checked.stdout + checked.stderr
    assert checked.json()["archive"]["name"] == "Test Documentation Centre"
    assert "Ministry of Truth" not in (tmp_path / "bag" / "bag-info.txt").read_text()


def test_a_foreign_archive_key_file_is_refused_by_name(filled, tmp_path):
    # An insider swaps in a key of their own, .pub and all, under the archive key's name.
    keys = filled.archive / "keys"
    write_new_key(tmp_path / "foreign.key", "Test Documentation Centre archive", ARCHIVE_PASSPHRASE)
    shutil.copy(tmp_path / "foreign.key", keys / "archive.key")
    shutil.copy(tmp_path / "foreign.key.pub", keys / "archive.key.pub")
    r = filled("checkpoint")
    assert r.code == 1
    assert "keys/archive.key is not the archive key signed in entry 0" in one_line_error(r)
    # verify needs no passphrase: the .pub names the swap (the private key is encrypted).
    v = filled("verify")
    assert v.code == 1 and "keys/archive.key.pub is not the archive key signed in entry 0" in v.stdout


def test_the_checkpoint_time_is_labelled_unsigned_in_reports(filled, tmp_path):
    sha = _items(filled)[GPS_JPEG]
    filled("report", sha, "-o", tmp_path / "r.html", check=True)
    html = (tmp_path / "r.html").read_text()
    assert "not signed" in html and "archive's own clock" in html
    info = filled("checkpoint", "--json", check=True).json()
    assert info["created_basis"] == "unsigned: the archive's local clock"


# Item 8: every problem reported, then exit 1 (verification) or 3 (could not read) ----------------

def _without_override(cli: Cli, *args: str) -> Result:
    """Run as root without the capabilities that let root ignore file modes."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop CAP_DAC_OVERRIDE")
    proc = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--",
         sys.executable, "-m", "custody", *map(str, args)],
        env=cli.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if "setpriv:" in proc.stderr:
        pytest.skip(f"cannot drop capabilities here: {proc.stderr.strip()}")
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_verify_reports_an_unreadable_object_and_a_corrupt_one_then_exits_1(filled):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop capabilities")
    sha = _items(filled)
    unreadable, corrupt = _object(filled, sha[GPS_JPEG]), _object(filled, sha["homs-loci.mp4"])
    os.chmod(corrupt, 0o644)
    corrupt.write_bytes(b"not the video")
    os.chmod(unreadable, 0)
    r = _without_override(filled, "verify", "--json")
    assert r.code == 1, r.stderr
    report = r.json()
    assert any("cannot read" in u and sha[GPS_JPEG] in u for u in report["unreadable"])
    assert any(sha["homs-loci.mp4"] in p and "corrupt" in p for p in report["problems"])
    assert "Traceback" not in r.stderr


def test_verify_with_only_unreadable_objects_exits_3(filled):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop capabilities")
    os.chmod(_object(filled, _items(filled)[GPS_JPEG]), 0)
    r = _without_override(filled, "verify")
    assert r.code == 3, r.stdout + r.stderr
    assert "CANNOT READ" in r.stdout and "could not be read" in one_line_error(r)


def test_ingest_reports_an_unreadable_subfolder_and_exits_3_after_storing_the_rest(
        cli_archive, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop capabilities")
    card = tmp_path / "card"
    (card / "DCIM" / "locked").mkdir(parents=True)
    (card / "DCIM" / "locked" / "hidden.jpg").write_bytes(b"never read")
    (card / "DCIM" / "a.jpg").write_bytes((DATA / "media" / GPS_JPEG).read_bytes())
    (card / "b.bin").write_bytes(b"second file")
    os.chmod(card / "DCIM" / "locked", 0)
    try:
        r = _without_override(cli_archive, "ingest", card, "--json")
    finally:
        os.chmod(card / "DCIM" / "locked", 0o755)
    assert r.code == 3, r.stderr
    assert "locked" in r.stderr and "could not be read" in one_line_error(r)
    assert r.json()["summary"]["new"] == 2
    assert len(cli_archive("list", "--json", check=True).json()) == 2


# Item 9: a write-blocked copy ---------------------------------------------------------------------

@contextlib.contextmanager
def _read_only_mount(source: Path, target: Path):
    target.mkdir()
    try:
        subprocess.run(["mount", "--bind", str(source), str(target)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        target.rmdir()
        pytest.skip(f"cannot bind-mount here (needs root and CAP_SYS_ADMIN): {exc}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True,
                       capture_output=True)
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False, capture_output=True)
        target.rmdir()


READ_ONLY_COMMANDS = [
    ("verify",), ("verify", "--json"), ("list",), ("list", "--json"), ("log",),
    ("log", "--format", "csv"), ("transfers",), ("incident", "list"),
    ("search", "--case", "C-1", "--json"), ("search", "--near", "36.2,37.13", "--within-km", "50"),
]


def test_a_write_blocked_copy_can_be_verified_listed_shown_and_searched(filled, tmp_path):
    filled("search", "--case", "C-1", check=True)  # the copy carries an index.db too
    copy = tmp_path / "copy"
    shutil.copytree(filled.archive, copy)
    before = _snapshot(copy)
    sha = _items(filled)[GPS_JPEG]
    with _read_only_mount(copy, tmp_path / "blocked") as blocked:
        env = {"CUSTODY_ARCHIVE": str(blocked)}
        for args in [*READ_ONLY_COMMANDS, ("show", sha), ("show", sha[:12], "--json"),
                     ("log", sha), ("verify", sha), ("provenance", sha),
                     ("report", sha, "--json")]:  # no checkpoint can be signed: a warning
            r = filled(*args, env=env)
            assert r.code == 0, f"{args}: {r.stderr}"
        assert filled("search", "--case", "C-1", "--json", env=env).json()["count"] == 3
        # A command that must write says so in one line, and exit 3.
        refused = filled("note", sha, "--text", "x", env=env)
        assert refused.code == 3 and "read-only" in one_line_error(refused)
    assert _snapshot(copy) == before


def test_a_write_blocked_copy_taken_mid_use_still_reads_the_entries_in_its_wal(filled, tmp_path):
    sha = _items(filled)[GPS_JPEG]
    holder = sqlite3.connect(filled.archive / "ledger.db")  # keeps the WAL from being folded in
    holder.execute("SELECT COUNT(*) FROM entries").fetchone()
    filled("note", sha, "--text", "written just before the copy", check=True)
    copy = tmp_path / "copy"
    shutil.copytree(filled.archive, copy)
    holder.close()
    assert (copy / "ledger.db-wal").stat().st_size > 0
    with _read_only_mount(copy, tmp_path / "blocked") as blocked:
        env = {"CUSTODY_ARCHIVE": str(blocked)}
        log = filled("log", sha, "--json", env=env)
        assert log.code == 0, log.stderr
        assert "written just before the copy" in log.stdout
        assert filled("verify", env=env).code == 0


def test_a_write_blocked_copy_whose_wal_cannot_be_read_is_refused_not_read_short(filled,
                                                                                tmp_path):
    holder = sqlite3.connect(filled.archive / "ledger.db")
    holder.execute("SELECT COUNT(*) FROM entries").fetchone()
    filled("note", _items(filled)[GPS_JPEG], "--text", "only in the WAL", check=True)
    copy = tmp_path / "copy"
    shutil.copytree(filled.archive, copy)
    holder.close()
    (copy / "ledger.db-shm").unlink()
    with _read_only_mount(copy, tmp_path / "blocked") as blocked:
        r = filled("verify", env={"CUSTODY_ARCHIVE": str(blocked)})
    assert r.code == 3, r.stdout + r.stderr
    assert "verify a writable copy" in r.stdout and "could not be read" in one_line_error(r)


def test_read_only_commands_leave_no_file_behind_in_a_writable_archive(filled):
    before = sorted(p.name for p in filled.archive.iterdir())
    sha = _items(filled)[GPS_JPEG]
    for args in [("verify",), ("list",), ("show", sha), ("log",), ("transfers",)]:
        filled(*args, check=True)
    assert sorted(p.name for p in filled.archive.iterdir()) == before


# Item 10: a destroyed ledger ----------------------------------------------------------------------

def _destroy(ledger: Path, how: str) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    if how == "deleted":
        ledger.unlink()
    elif how == "zero-bytes":
        ledger.write_bytes(b"")
    else:
        ledger.write_bytes(os.urandom(8192))


@pytest.mark.parametrize("how", ["zero-bytes", "deleted", "random-bytes"])
def test_a_destroyed_ledger_is_a_verification_failure_and_verify_writes_nothing(filled, how):
    ledger = filled.archive / "ledger.db"
    _destroy(ledger, how)
    before = _snapshot(filled.archive)
    r = filled("verify")
    assert r.code == 1, r.stdout + r.stderr
    assert "ledger.db" in r.stdout and "Traceback" not in r.stderr
    assert filled("verify", "--json").json()["ok"] is False
    for args in (("list",), ("log",)):
        other = filled(*args)
        assert other.code == 1 and "ledger.db" in one_line_error(other)
    assert _snapshot(filled.archive) == before


# Item 19: the derived search index ----------------------------------------------------------------

def test_an_edited_search_index_is_named_by_verify_and_rebuilt_by_reindex(filled):
    sha = _items(filled)[GPS_JPEG]
    near = ("--near", "36.2,37.13", "--within-km", "50", "--json")
    assert filled("search", "--case", "C-1", "--json", check=True).json()["count"] == 3
    assert filled("search", *near, check=True).json()["count"] == 1
    conn = sqlite3.connect(filled.archive / "index.db", isolation_level=None)
    conn.execute("DELETE FROM item_cases WHERE sha256 = ?", (sha,))
    conn.execute("UPDATE items SET lat = NULL, lon = NULL WHERE sha256 = ?", (sha,))
    other = _items(filled)[next(n for n in _items(filled) if n != GPS_JPEG)]
    conn.execute("UPDATE items SET c2pa = 'trusted' WHERE sha256 = ?", (other,))  # a forged verdict
    conn.close()
    assert filled("search", "--case", "C-1", "--json", check=True).json()["count"] == 2
    r = filled("verify", "--json")
    assert r.code == 1
    named = [p for p in r.json()["problems"] if "search index" in p]
    assert any(sha in p and "case" in p for p in named), named
    assert any(sha in p and "position" in p for p in named), named
    assert any(other in p and "C2PA verdict" in p for p in named), named
    filled("search", "--reindex", "--case", "C-1", check=True)
    assert filled("search", "--case", "C-1", "--json", check=True).json()["count"] == 3
    assert filled("search", *near, check=True).json()["count"] == 1
    assert filled("verify").code == 0
