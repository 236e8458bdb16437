"""An archive on the server backends a deployment runs on: the ledger in PostgreSQL, the objects in
S3 with Object Lock (issue 15 item 5), every command unchanged above the ports. One archive for
the module; the tests only read it or append to it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.pg_ledger import PostgresLedger

from .conftest import DATA, Cli
from .s3_services import drop_database, new_bucket, new_database

PHOTO = DATA / "media" / "aleppo-gps.jpg"
PHOTO2 = DATA / "media" / "carbon-south-west.jpg"
VIDEO = DATA / "media" / "homs-loci.mp4"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def server_archive(tmp: Path, name: str, databases: list[str]) -> Cli:
    cli = Cli(tmp, tmp / name, tmp / "keys" / "alice.key")
    if not cli.key.exists():
        cli("key", "new", "--name", "Alice Admin", check=True)
    databases.append(new_database())
    cli("init", "--name", "Documentation Centre", "--ledger", databases[-1],
        "--objects", f"s3://{new_bucket()}/evidence", "--retention-days", "1", check=True)
    return cli


@pytest.fixture(scope="module")
def databases(pg_services: dict[str, str], s3_services: dict[str, str]) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for url in made:
        drop_database(url)


@pytest.fixture(scope="module")
def story(databases: list[str], tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """Alice ingests two photos and a video; Bob is enrolled."""
    tmp = tmp_path_factory.mktemp("servers")
    cli = server_archive(tmp, "archive", databases)
    bob = tmp / "keys" / "bob.key"
    cli("key", "new", "--name", "Bob Investigator", "-o", bob, check=True)
    cli("enroll", f"{bob}.pub", "--role", "investigator", check=True)
    cli("ingest", PHOTO, PHOTO2, VIDEO, "--case", "C1", check=True)
    cli.bob = {"CUSTODY_KEY": str(bob)}  # type: ignore[attr-defined]
    return cli


def test_ingest_search_verify_with_the_ledger_in_postgresql(story: Cli) -> None:
    config = json.loads((story.archive / "custody.json").read_text())
    assert config["ledger"]["backend"] == "postgresql" and config["objects"]["backend"] == "s3"
    assert not (story.archive / "ledger.db").exists() and not (story.archive / "objects").exists()
    ledger = PostgresLedger(config["ledger"]["url"])
    assert set(ledger.items()) == {sha(PHOTO), sha(PHOTO2), sha(VIDEO)}
    ledger.close()
    shown = story("show", sha(PHOTO)[:12], "--json", check=True).json()
    assert shown["gps"] is not None and shown["mime"] == "image/jpeg"
    assert story("search", "--case", "C1", "--json", check=True).json()["count"] == 3
    report = story("verify", "--json", check=True).json()
    assert report["ok"] and report["objects_checked"] == 3


def test_transfer_export_import_and_report_with_the_ledger_in_postgresql(
    story: Cli, databases: list[str], tmp_path: Path
) -> None:
    video = sha(VIDEO)
    offer = story("transfer", video[:12], "--to", "Bob Investigator", "--purpose", "handover",
                  "--json", check=True).json()[0]["offer"]
    story("accept", str(offer), env=story.bob, check=True)  # type: ignore[attr-defined]
    story("export", video[:12], "--purpose", "court", "-o", tmp_path / "pkg.zip", check=True)
    story("verify-package", tmp_path / "pkg.zip", check=True)
    receiver = server_archive(tmp_path, "receiver", databases)
    receiver("import", tmp_path / "pkg.zip", check=True)
    assert video in receiver("list", "--json", check=True).stdout
    story("report", video[:12], "-o", tmp_path / "report.html", check=True)
    assert "Bob Investigator" in (tmp_path / "report.html").read_text()
    story("checkpoint", check=True)
    assert story("verify", "--ledger-only", "--json", check=True).json()["ok"]
