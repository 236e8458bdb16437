"""Store errors said once, at the port boundary (issue 11, item 7), through the real command: a
missing or corrupt object and a missing or destroyed ledger are verification problems (exit 1), one
line naming what is wrong, never "unexpected error"."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import DATA, Cli, one_line_error


@pytest.fixture
def stored(cli_archive: Cli, tmp_path: Path) -> tuple[Cli, str]:
    src = tmp_path / "photo.jpg"
    src.write_bytes((DATA / "media" / "aleppo-gps.jpg").read_bytes())
    cli_archive("ingest", src, check=True)
    sha = cli_archive("list", "--json", check=True).json()[0]["sha256"]
    return cli_archive, sha


def _object(cli: Cli, sha: str) -> Path:
    return cli.archive / "objects" / "sha256" / sha[:2] / sha


def _is_named_problem(cli: Cli, args: list[str], *named: str) -> str:
    r = cli(*args)
    message = one_line_error(r)
    assert r.code == 1, (args, r.code, r.stderr)
    assert "unexpected" not in message and "Error:" not in message, message
    for word in named:
        assert word in message, (word, message)
    return message


def test_get_of_a_missing_object_is_a_verification_problem(stored, tmp_path):
    cli, sha = stored
    _object(cli, sha).unlink()
    out = tmp_path / "copy.jpg"
    _is_named_problem(cli, ["get", sha, "--purpose", "court copy", "-o", out], sha, "missing")
    assert not out.exists() and list(tmp_path.glob(".copy.jpg*")) == []
    r = cli("get", sha, "--purpose", "court copy", "-o", out, "--json")
    assert r.code == 1 and r.json()["error"]["kind"] == "verification-failed", r.stdout


def test_get_of_a_corrupt_object_is_a_verification_problem_and_copies_nothing(stored, tmp_path):
    cli, sha = stored
    path = _object(cli, sha)
    os.chmod(path, 0o600)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    out = tmp_path / "copy.jpg"
    _is_named_problem(cli, ["get", sha, "--purpose", "court copy", "-o", out], sha, "corrupt")
    assert not out.exists() and list(tmp_path.glob(".copy.jpg*")) == []


@pytest.mark.parametrize("how", ["missing", "junk"])
def test_verify_of_a_missing_or_junk_ledger_is_a_verification_problem(stored, how):
    cli, sha = stored
    ledger = cli.archive / "ledger.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    ledger.unlink()
    if how == "junk":
        ledger.write_bytes(os.urandom(16384))
    r = cli("verify")
    assert r.code == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "ledger.db" in r.stdout
    _is_named_problem(cli, ["verify", sha], "ledger.db")  # naming the item reads the ledger first
    _is_named_problem(cli, ["verify", "--ledger-only"], "problem")
    assert cli("verify", "--json").json()["ok"] is False
    _is_named_problem(cli, ["get", sha, "--purpose", "court copy", "-o", cli.tmp / "c.jpg"],
                      "ledger.db")
