"""A sealed field archive handed in to the centre and emptied by the centre's receipt (issue 19,
docs/FORMAT.md §12.4): `custody sync` from an `init --encrypt` archive to a real `custody serve`
gives the centre the exact plaintext, and `custody travel empty --handed-in` then removes only
what the centre's signed receipts prove it holds; verify passes without a key.

One centre, served, and one sealed field archive synced once per module; tests that change the
field archive work on a copy of its folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from custody.ops.keyfiles import load_key
from tests.conftest import DATA, PASSPHRASE, Cli
from tests.service_server import Subprocess

PHOTOS = {"market-strike-secret.jpg": "aleppo-gps.jpg", "roof-view-secret.jpg":
          "carbon-south-west.jpg"}
NOTE = "witness Rami Haddad, ambulance depot basement"


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory):
    """The centre (Alice, clear archive) served; Farah's sealed field laptop with two camera
    JPEGs and a note, synced once; Farah enrolled at the centre as an investigator."""
    tmp = tmp_path_factory.mktemp("handin")
    centre = Cli(tmp, tmp / "centre", tmp / "keys" / "alice.key")
    centre("key", "new", "--name", "Alice Admin", check=True)
    centre("init", "--name", "Documentation Centre", check=True)
    farah = tmp / "keys" / "farah.key"
    cli = Cli(tmp, tmp / "field", farah)
    cli("key", "new", "--name", "Farah Field", check=True)
    cli("init", "--name", "Farah's laptop", "--encrypt", check=True)
    centre("enroll", f"{farah}.pub", "--role", "investigator", check=True)
    card = tmp / "DCIM"
    card.mkdir()
    for name, source in PHOTOS.items():
        shutil.copy(DATA / "media" / source, card / name)
    cli("ingest", card, "--note", NOTE, check=True)
    cli.items = sorted(hashlib.sha256((card / n).read_bytes()).hexdigest() for n in PHOTOS)
    cli.centre_key = centre("checkpoint", "--json", check=True).json()["verifier_key"]
    cli.env["XDG_CACHE_HOME"] = str(tmp / "farah-cache")
    cli.centre = centre
    server = Subprocess(centre.archive, tmp / "serve.log", "--checkpoint-every", "1",
                        "--rate", "1000", "--burst", "1000")
    try:
        cli.synced = cli("sync", "--server", server.base, "--centre-key", cli.centre_key,
                         "--json", check=True).json()
    finally:
        server.stop()
    yield cli


def _log(cli: Cli, *args: str | Path) -> list[dict]:
    out = cli(*args, "log", "--json", check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _keyless(cli: Cli, archive: Path, *args: str) -> tuple[int, str]:
    r = cli("--archive", str(archive), *args,
            env={"CUSTODY_KEY": "", "CUSTODY_PASSPHRASE": "", "CUSTODY_ARCHIVE_PASSPHRASE": ""})
    return r.code, r.stdout + r.stderr


def _objects(archive: Path) -> list[Path]:
    return sorted(p for p in (archive / "objects").rglob("*") if p.is_file()
                  and len(p.name) == 64)


def test_a_sealed_field_archive_hands_in_the_exact_plaintext_and_keeps_the_receipt(
        field: Cli, tmp_path: Path) -> None:
    assert field.synced["status"] == "new"
    assert sorted(e["item"] for e in field.synced["items"]) == field.items
    for sha, (_, source) in zip(field.items, sorted(
            (hashlib.sha256((DATA / "media" / s).read_bytes()).hexdigest(), s)
            for s in PHOTOS.values()), strict=True):
        out = tmp_path / f"{sha}.jpg"
        field.centre("get", sha, "--purpose", "check the hand-in", "-o", out, check=True)
        assert out.read_bytes() == (DATA / "media" / source).read_bytes()
    assert field.centre("verify", check=True).code == 0
    # the centre reads what the field laptop sealed: place, device, capture time (FORMAT §12.3)
    shown = field.centre("show", hashlib.sha256((DATA / "media" / "aleppo-gps.jpg")
                                                .read_bytes()).hexdigest(), "--json",
                         check=True).json()
    assert shown["gps"] == {"lat": 36.2021, "lon": 37.1343, "alt": 379}
    assert shown["device"] == {"make": "samsung", "model": "SM-G935F"}
    receipts = [r for r in _log(field) if r["action"] == "handed_in"]
    assert sorted(r["item"] for r in receipts) == field.items
    assert all(r["details"]["entry"] and r["details"]["inclusion"] is not None
               for r in receipts)
    code, said = _keyless(field, field.archive, "verify")
    assert code == 0, said
    # the receipt names no file, place or note: the seized laptop still reveals none of them
    decoded = b"".join(base64.b64decode(r["details"]["entry"]) for r in receipts)
    for needle in (b"secret", b"Rami Haddad", b"36.2021", b"SM-G935F"):
        assert needle not in decoded
        assert not [f for f in field.archive.rglob("*") if f.is_file()
                    and needle in f.read_bytes()]


def test_travel_empty_by_the_centre_receipt_removes_only_what_the_centre_holds(
        field: Cli, tmp_path: Path) -> None:
    archive = tmp_path / "field"
    shutil.copytree(field.archive, archive)
    run = ("--archive", archive)
    later = tmp_path / "after-the-sync.jpg"
    later.write_bytes((DATA / "media" / "aleppo-gps.jpg").read_bytes() + b"later")
    field(*run, "ingest", later, check=True)
    kept_sha = hashlib.sha256(later.read_bytes()).hexdigest()
    before = _objects(archive)
    other = field(*run, "checkpoint", "--json", check=True).json()["verifier_key"]
    wrong = field(*run, "travel", "empty", "--handed-in", "--centre-key", other, "--json",
                  check=True).json()
    assert wrong["emptied"] == [] and wrong["entry"] is None
    assert {k["item"] for k in wrong["kept"]} == {*field.items, kept_sha}
    assert _objects(archive) == before
    done = field(*run, "travel", "empty", "--handed-in", "--centre-key", field.centre_key,
                 "--json", check=True).json()
    assert sorted(done["emptied"]) == field.items
    assert [k["item"] for k in done["kept"]] == [kept_sha]
    assert "not handed in" in done["kept"][0]["reason"]
    assert len(_objects(archive)) == len(before) - 2
    code, said = _keyless(field, archive, "verify")
    assert code == 0, said
    assert said.count("held elsewhere (at the centre") == 2
    record = [r for r in _log(field, *run) if r["action"] == "held-elsewhere"]
    assert len(record) == 1 and sorted(record[0]["details"]["items"]) == field.items
    assert record[0]["details"]["centre"]["key"] == field.centre_key
    # any other missing object is still a problem
    (left,) = _objects(archive)
    left.chmod(0o600)
    left.unlink()
    code, said = _keyless(field, archive, "verify")
    assert code == 1 and f"object {kept_sha}" in said and "missing" in said


def test_a_forged_receipt_for_an_item_ingested_after_the_sync_empties_nothing(
        field: Cli, tmp_path: Path) -> None:
    """A handed_in entry for an item the centre never received, its receipt copied from a real
    one: the centre's entry it carries is another item's, so the item stays, and verify fails."""
    from custody.ops.archive import Archive, Draft

    archive = tmp_path / "field"
    shutil.copytree(field.archive, archive)
    later = tmp_path / "never-sent.jpg"
    later.write_bytes((DATA / "media" / "carbon-south-west.jpg").read_bytes() + b"later")
    field("--archive", archive, "ingest", later, check=True)
    sha = hashlib.sha256(later.read_bytes()).hexdigest()
    real = [r for r in _log(field, "--archive", archive) if r["action"] == "handed_in"][0]
    opened = Archive.open(archive)
    opened.append(load_key(field.key, PASSPHRASE), [Draft("handed_in", sha, real["details"])],
                  check_signer=False)
    done = field("--archive", archive, "travel", "empty", "--handed-in", "--centre-key",
                 field.centre_key, "--json", check=True).json()
    assert sha not in done["emptied"]
    assert [k for k in done["kept"] if k["item"] == sha and "is not the received" in k["reason"]]
    assert len(_objects(archive)) == 1  # its ciphertext stays; the two handed in went
    code, said = _keyless(field, archive, "verify")
    assert code == 1 and "rule handed-in" in said


@pytest.mark.parametrize("damage", ["entry-byte", "proof-hash", "proof-dropped", "other-item"])
def test_a_receipt_whose_centre_entry_or_proof_is_altered_covers_nothing(
        field: Cli, damage: str) -> None:
    """The pure check of a real receipt (core/handin.py), each alteration named."""
    from custody.core import handin

    real = [r for r in _log(field) if r["action"] == "handed_in"][0]
    details, item = dict(real["details"]), real["item"]
    assert handin.covers(details, item, field.centre_key) is None
    if damage == "entry-byte":
        body = bytearray(base64.b64decode(details["entry"]))
        body[body.index(b'"received"') + 1] ^= 0x20  # "Received": still JSON, another leaf
        details["entry"] = base64.b64encode(bytes(body)).decode()
    elif damage == "proof-hash":
        first = bytearray(base64.b64decode(details["inclusion"][0]))
        first[0] ^= 1
        details["inclusion"] = [base64.b64encode(bytes(first)).decode(),
                                *details["inclusion"][1:]]
    elif damage == "proof-dropped":
        details["inclusion"] = details["inclusion"][1:]
    else:
        item = "0" * 64
    assert handin.covers(details, item, field.centre_key) is not None
    assert handin.receipt_problems(details, item)
