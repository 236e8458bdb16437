"""An archive whose ledger is in PostgreSQL: bad input refused in one line with nothing changed,
the owner/writer roles, and several writers at once (issue 15 items 3 and 6)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.core import entry as entries
from custody.core import merkle, note
from store.pg_ledger import PostgresLedger
from tests.conftest import ARCHIVE_PASSPHRASE, DATA, PASSPHRASE, Cli, one_line_error
from tests.s3_services import (
    drop_database,
    drop_role,
    new_database,
    new_role,
    passwords_enforced,
    url_as,
)


@pytest.fixture
def databases(pg_services: dict[str, str]) -> Iterator[list[str]]:
    """databases.append(new_database()) style: every database a test makes is dropped after."""
    made: list[str] = []
    yield made
    for url in made:
        drop_database(url)


def _db(made: list[str]) -> str:
    made.append(new_database())
    return made[-1]


def _init(cli: Cli, where: Path, url: str, **env: str) -> object:
    return cli("init", str(where), "--name", f"Centre {where.name}", "--ledger", url,
               env=env or None)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bad_ledger_urls_are_refused_in_one_line_and_make_nothing(
    cli: Cli, made_key, databases: list[str]
) -> None:
    made_key(cli.key, "Alice Admin")
    good = _db(databases)
    host = good.split("@", 1)[1].split("/", 1)[0]
    cases = [
        (f"postgresql://custody@127.0.0.1:{_closed_port()}/x", 3, "cannot be reached"),
        ("postgresql://[::1", 2, "malformed PostgreSQL URL"),
        ("mysql://custody@127.0.0.1/x", 2, "not a postgresql:// URL"),
        (f"postgresql://custody:secret@{host}/x", 2, "carries a password"),
        (f"{good}?password=secret", 2, "carries a password"),
        (good.rsplit("/", 1)[0] + "/custody_test_no_such_database", 3, "no database"),
    ]
    for url, code, said in cases:
        result = cli("init", str(cli.tmp / "new"), "--name", "X", "--ledger", url)
        line = one_line_error(result)
        assert result.code == code and said in line, (url, result.stderr)
        assert "secret" not in result.stderr
        assert not (cli.tmp / "new").exists()  # nothing made


def test_init_on_a_ledger_database_and_another_archives_database_are_refused(
    cli: Cli, made_key, databases: list[str]
) -> None:
    made_key(cli.key, "Alice Admin")
    first, second = _db(databases), _db(databases)
    a, b = cli.tmp / "a", cli.tmp / "b"
    assert _init(cli, a, first).code == 0  # type: ignore[attr-defined]
    config = json.loads((a / "custody.json").read_text())
    assert config["ledger"] == {"backend": "postgresql", "url": first}
    assert not (a / "ledger.db").exists()

    again = cli("init", str(b), "--name", "B", "--ledger", first)
    assert again.code == 3 and "already holds a ledger" in one_line_error(again)
    assert not b.exists() and PostgresLedger(first).size() == 1

    assert _init(cli, b, second).code == 0  # type: ignore[attr-defined]
    config = json.loads((b / "custody.json").read_text())
    config["ledger"]["url"] = first  # B's custody.json now names A's database
    (b / "custody.json").write_text(json.dumps(config))
    for command in (["list"], ["verify"], ["note", "0" * 64, "--text", "x"]):
        result = cli("--archive", str(b), *command)
        line = one_line_error(result)
        assert result.code == 3 and "belongs to another archive" in line, result.stderr
    assert PostgresLedger(first).size() == 1 and PostgresLedger(second).size() == 1
    empty = _db(databases)
    PostgresLedger(empty).create()  # a ledger with no entry 0: as a missing ledger.db
    config["ledger"]["url"] = empty
    (b / "custody.json").write_text(json.dumps(config))
    result = cli("--archive", str(b), "verify")
    assert result.code == 1 and "holds no entries" in result.stdout + result.stderr


def test_the_archive_runs_as_a_writer_role_and_a_wrong_password_is_refused(
    cli: Cli, made_key, databases: list[str]
) -> None:
    if not passwords_enforced():
        if os.environ.get("CUSTODY_REQUIRE_SERVICES"):
            pytest.fail("this PostgreSQL does not ask custody_scram's members for a password")
        pytest.skip("this PostgreSQL does not ask custody_scram's members for a password "
                    "(run: bash scripts/services.sh pg-passwords)")
    made_key(cli.key, "Alice Admin")
    url = _db(databases)
    writer = new_role(password="right horse")
    try:
        made = subprocess.run([sys.executable, "-m", "store.pg_ledger", url, "--writer", writer],
                              capture_output=True, text=True, env=cli.env)
        assert made.returncode == 0, made.stderr  # the owner makes the schema (docs/BACKENDS.md)
        as_writer = url_as(url, writer)
        wrong = cli("init", str(cli.tmp / "a"), "--name", "A", "--ledger", as_writer,
                    env={"PGPASSWORD": "wrong horse"})
        assert wrong.code == 3 and "refuses these credentials" in one_line_error(wrong)
        assert not (cli.tmp / "a").exists()
        right = {"PGPASSWORD": "right horse"}
        assert _init(cli, cli.tmp / "a", as_writer, **right).code == 0  # type: ignore[attr-defined]
        cli("--archive", str(cli.tmp / "a"), "ingest", str(DATA / "media" / "aleppo-gps.jpg"),
            env=right, check=True)
        cli("--archive", str(cli.tmp / "a"), "verify", env=right, check=True)
        result = cli("--archive", str(cli.tmp / "a"), "list", env={"PGPASSWORD": "wrong horse"})
        assert result.code == 3 and "refuses these credentials" in one_line_error(result)
        assert "horse" not in (cli.tmp / "a" / "custody.json").read_text()
    finally:
        drop_database(url)
        drop_role(writer)


# Concurrency ----------------------------------------------------------------------------------

APPENDS, WRITERS = 500, 4


def _writer(root: str, key_path: str, number: int) -> None:
    """One intake station: its own process and connections, 500 appends through the real
    append path (signed), a checkpoint after every 100."""
    from custody.ops import annotate, checkpoints
    from custody.ops.archive import Archive
    from custody.ops.keyfiles import load_key

    archive = Archive.open(Path(root))
    key = load_key(Path(key_path), PASSPHRASE)
    archive_key = archive.load_archive_key(ARCHIVE_PASSPHRASE)
    for i in range(APPENDS):
        annotate.incident_new(archive, key, f"w{number}-{i}", case=None, date="2016-12-01",
                              place=None, description=f"writer {number}, append {i}")
        if i % 100 == 99:
            checkpoints.issue(archive, archive_key)
    archive.ledger.close()


def test_four_writers_and_two_ingests_at_once_lose_and_duplicate_nothing(
    cli: Cli, made_key, databases: list[str]
) -> None:
    made_key(cli.key, "Alice Admin")
    url = _db(databases)
    root = cli.tmp / "archive"
    assert _init(cli, root, url).code == 0  # type: ignore[attr-defined]
    media = cli.tmp / "shared"
    shutil.copytree(DATA / "media", media)

    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(str(root), str(cli.key), n))
               for n in range(WRITERS)]
    for w in writers:
        w.start()
    ingests = [subprocess.Popen([sys.executable, "-m", "custody", "ingest", str(media), "--json"],
                                env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL) for _ in range(2)]
    for p in ingests:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    for w in writers:
        w.join(300)
        assert w.exitcode == 0

    ledger = PostgresLedger(url)
    rows = list(ledger.rows())
    assert [r.seq for r in rows] == list(range(len(rows)))  # no gap, no duplicate
    parsed = [entries.parse(r.body) for r in rows]
    incidents = {e.details["incident"] for e in parsed if e.action == "incident"}
    assert incidents == {f"w{n}-{i}" for n in range(WRITERS) for i in range(APPENDS)}
    files = sorted(p.name for p in media.iterdir())
    first = [e for e in parsed if e.action == "ingest"]
    assert len(first) == len({e.item for e in first}) == len({(media / f).read_bytes()
                                                               for f in files})
    for prev, row in zip(rows, rows[1:], strict=False):  # one chain: each entry names the last
        assert entries.parse(row.body).prev == prev.leaf_hash.hex()
    builder = merkle.TreeBuilder()
    roots = {}
    for row in rows:
        builder.append(row.leaf_hash)
        roots[builder.size] = builder.root()
    kept = ledger.checkpoints()
    assert len(kept) >= WRITERS * APPENDS // 100 // 2
    for cp in kept:  # every checkpoint signs the root of the tree at its size
        assert note.parse_checkpoint(note.split_note(cp.note)[0]).root_hash == roots[cp.size]
    assert merkle.root_hash(len(rows), ledger.get_node) == builder.root()
    ledger.close()
    cli("verify", check=True, timeout=300)
