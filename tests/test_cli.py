"""The command line as a field team uses it: real commands, exit codes, JSON, one-line errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from .conftest import DATA, PASSPHRASE, one_line_error


def media_folder(tmp: Path) -> Path:
    """A field folder: a few real media files from tests/data plus nested and duplicate files."""
    folder = tmp / "field" / "day1"
    (folder / "sub").mkdir(parents=True)
    media = sorted(p for p in (DATA / "media").iterdir() if p.is_file())[:4]
    assert media, "tests/data/media must hold sample media"
    for p in media:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "sub" / "copy-of-first").write_bytes(media[0].read_bytes())  # same content twice
    (folder / "sub" / "notes.txt").write_text("witness statement, 3 Oct 2016\n")
    return tmp / "field"


def test_key_new_prints_key_id_and_writes_0600(cli):
    r = cli("key", "new", "--name", "Alice Admin", "--json", check=True)
    info = r.json()
    assert re.fullmatch(r"[0-9a-f]{32}", info["key_id"])
    assert Path(info["path"]).stat().st_mode & 0o777 == 0o600
    assert PASSPHRASE not in r.stdout + r.stderr
    again = cli("key", "new", "--name", "Alice Admin")
    assert again.code != 0 and "already exists" in one_line_error(again)


def test_init_ingest_list_show_log_verify(cli_archive, tmp_path):
    cli = cli_archive
    field = media_folder(tmp_path)
    r = cli("ingest", field, "--case", "CASE-1", "--note", "first batch", check=True)
    lines = r.stdout.strip().splitlines()
    files = sorted(p for p in field.rglob("*") if p.is_file())
    assert len(lines) == len(files)
    assert sum(line.startswith("new ") for line in lines) == len(files) - 1
    assert sum(line.startswith("present ") for line in lines) == 1  # the duplicate: a sighting
    assert "1 already present" in r.stderr

    items = cli("list", "--json", check=True).json()
    assert len(items) == len(files) - 1
    first = items[0]
    shown = cli("show", first["sha256"][:10], "--json", check=True).json()
    for key in ("sha256", "size", "mime", "names", "captured_at", "gps", "device", "metadata",
                "metadata_errors", "history"):
        assert key in shown, key
    assert shown["sha256"] == first["sha256"]
    assert shown["history"][0]["action"] == "ingest"
    assert shown["history"][0]["details"]["case"] == "CASE-1"
    assert shown["history"][0]["details"]["note"] == "first batch"
    assert isinstance(shown["metadata_errors"], list)

    log = [json.loads(line) for line in cli("log", "--json", check=True).stdout.splitlines()]
    assert [e["seq"] for e in log] == list(range(len(log)))
    assert log[0]["action"] == "init"
    assert [e["action"] for e in log[1:]].count("sighting") == 1

    v = cli("verify", "--json", check=True).json()
    assert v["ok"] and v["objects_checked"] == len(files) - 1 and v["problems"] == []


def test_reingest_records_a_sighting_without_a_second_copy(cli_archive, tmp_path):
    cli = cli_archive
    f = tmp_path / "IMG_0001.JPG"
    f.write_bytes((DATA / "media" / sorted(os.listdir(DATA / "media"))[0]).read_bytes())
    cli("ingest", f, check=True)
    renamed = tmp_path / "elsewhere" / "renamed.jpg"
    renamed.parent.mkdir()
    renamed.write_bytes(f.read_bytes())
    r = cli("ingest", renamed, "--json", check=True).json()
    assert r["summary"] == {"new": 0, "present": 1, "failed": 0, "skipped": 0,
                            "bytes": f.stat().st_size, "unchanged": 0, "junk": 0, "excluded": 0,
                            "refused": 0}
    sha = r["files"][0]["sha256"]
    shown = cli("show", sha, "--json", check=True).json()
    assert shown["names"] == ["IMG_0001.JPG", "renamed.jpg"]
    assert [h["action"] for h in shown["history"]] == ["ingest", "sighting"]
    objects = list((cli.archive / "objects" / "sha256").rglob("*"))
    assert len([p for p in objects if p.is_file()]) == 1


def test_json_output_is_only_json(cli_archive, tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"\x00\x01 not media")
    r = cli_archive("ingest", f, "--json", check=True)
    doc = json.loads(r.stdout)  # nothing else on stdout
    assert doc["files"][0]["mime"] == "application/octet-stream"


@pytest.mark.slow
def test_enroll_lets_a_second_custodian_ingest(cli_archive, tmp_path):
    cli = cli_archive
    bob_key = tmp_path / "keys" / "bob.key"
    cli("key", "new", "--name", "Bob Field", "-o", bob_key, check=True)
    f = tmp_path / "photo.bin"
    f.write_bytes(b"bob's evidence")
    refused = cli("ingest", f, env={"CUSTODY_KEY": str(bob_key)})
    assert refused.code == 3 and "not enrolled" in one_line_error(refused)
    cli("enroll", str(bob_key) + ".pub", "--role", "field", check=True)
    cli("ingest", f, env={"CUSTODY_KEY": str(bob_key)}, check=True)
    log = [json.loads(x) for x in cli("log", "--json", check=True).stdout.splitlines()]
    assert log[-1]["actor_name"] == "Bob Field" and log[-1]["action"] == "ingest"
    assert log[-2]["action"] == "enroll" and log[-2]["details"]["role"] == "field"
    # a field custodian cannot enrol others
    r = cli("enroll", str(bob_key) + ".pub", "--role", "admin", env={"CUSTODY_KEY": str(bob_key)})
    assert r.code == 3 and "role 'field'" in one_line_error(r)
    cli("verify", check=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["list"], {"CUSTODY_ARCHIVE": "/nonexistent/archive"}, 3, "no archive at"),
        (["ingest", "/nonexistent/file.jpg"], {}, 3, "no such file or folder"),
        (["ingest", "."], {"CUSTODY_PASSPHRASE": "wrong"}, 3, "wrong passphrase"),
        (["show", "abc"], {}, 2, "not an item"),
        (["show", "deadbeefdeadbeef"], {}, 3, "no item deadbeefdeadbeef"),
        (["enroll", "/nonexistent.pub", "--role", "field"], {}, 3, "no public key file"),
        (["enroll", "x.pub", "--role", "king"], {}, 2, "unknown role"),
        (["frobnicate"], {}, 2, "No such command"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(cli_archive, args, env, code, message):
    before = sorted(p.name for p in (cli_archive.archive / "objects" / "sha256").iterdir())
    size_before = len(cli_archive("log", "--json", check=True).stdout.splitlines())
    r = cli_archive(*args, env=env)
    assert r.code == code, r.stderr
    assert message.lower() in one_line_error(r).lower()
    assert r.stdout == ""
    after = sorted(p.name for p in (cli_archive.archive / "objects" / "sha256").iterdir())
    assert before == after
    assert len(cli_archive("log", "--json", check=True).stdout.splitlines()) == size_before


def test_missing_passphrase_without_terminal_is_a_clear_error(cli):
    env = {k: v for k, v in cli.env.items() if k != "CUSTODY_PASSPHRASE"}
    cli.env = env
    r = cli("key", "new", "--name", "X")
    assert r.code == 2 and "CUSTODY_PASSPHRASE" in one_line_error(r)


def test_every_command_is_documented():
    doc = (Path(__file__).parent.parent / "docs" / "CLI.md").read_text()
    import typer.main

    from custody.cli.app import app

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            for sub in cmd.commands:
                assert f"custody {name} {sub}" in doc, f"{name} {sub} undocumented"
        else:
            assert f"custody {name}" in doc, f"{name} undocumented"
