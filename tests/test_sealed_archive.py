"""Sealed field archives (issue 19, docs/FORMAT.md §12): a seized copy reveals nothing without a
key and still verifies; custodians read back the exact bytes; panic and travel modes.

One sealed archive is built per module (real keys, the real command, a real camera JPEG with
GPS); tests that change an archive work on a copy of its folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from custody.ops.keyfiles import write_new_key
from tests.conftest import DATA, PASSPHRASE, Cli, one_line_error

JPEG = DATA / "media" / "aleppo-gps.jpg"  # GPS 36.2021 N, 37.1343 E, 379 m; a samsung SM-G935F
NOTE = "witness Rami Haddad, ambulance depot basement"
PURPOSE = "prosecutor Karim review of the depot strike"
NAME = "depot-strike-secret.jpg"
OFFER_PURPOSE = "handover to investigator Layla Mansour for the Hama dossier"
REFUSED_PURPOSE = "copy for the Qasr al-Nil liaison"


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    tmp = tmp_path_factory.mktemp("sealed")
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    write_new_key(cli.key, "Alice Admin", PASSPHRASE)
    cli("init", "--name", "Field Team North", "--encrypt", check=True)
    shutil.copy(JPEG, tmp / NAME)
    cli("ingest", tmp / NAME, "--note", NOTE, check=True)
    item = hashlib.sha256(JPEG.read_bytes()).hexdigest()
    cli("get", item, "--purpose", PURPOSE, "-o", tmp / "back.jpg", check=True)
    # a transfer offer and a refused transfer, each with a purpose that must stay sealed
    layla = write_new_key(tmp / "keys" / "layla.key", "Layla Investigator", PASSPHRASE)
    cli("enroll", tmp / "keys" / "layla.key.pub", "--role", "investigator", check=True)
    write_new_key(tmp / "keys" / "rita.key", "Rita Reviewer", PASSPHRASE)
    cli("enroll", tmp / "keys" / "rita.key.pub", "--role", "reviewer", check=True)
    cli("transfer", item, "--to", layla.key_id, "--purpose", OFFER_PURPOSE, check=True)
    refused = cli("--key", tmp / "keys" / "rita.key", "transfer", item, "--to", layla.key_id,
                  "--purpose", REFUSED_PURPOSE)
    assert refused.code != 0
    return cli


def _copy(cli: Cli, to: Path) -> Path:
    shutil.copytree(cli.archive, to)
    return to


def _keyless(cli: Cli, archive: Path, *args: str | Path) -> tuple[int, str, str]:
    r = cli("--archive", str(archive), *map(str, args),
            env={"CUSTODY_KEY": "", "CUSTODY_PASSPHRASE": "", "CUSTODY_ARCHIVE_PASSPHRASE": ""})
    return r.code, r.stdout, r.stderr


def test_seized_copy_of_a_sealed_archive_yields_no_content_gps_or_text(
        sealed: Cli, tmp_path: Path) -> None:
    seized = _copy(sealed, tmp_path / "seized")
    image = JPEG.read_bytes()
    secrets = {
        "the JPEG's first bytes": image[:64],
        "the JPEG's middle bytes": image[len(image) // 2:len(image) // 2 + 64],
        "the JPEG's last bytes": image[-64:],
        "latitude as decimal": b"36.2021",
        "longitude as decimal": b"37.1343",
        "latitude as EXIF text": b"[36, 12, 189/25]",
        "the device": b"SM-G935F",
        "the note": b"Rami Haddad",
        "the purpose": b"Karim",
        "the transfer offer's purpose": b"Layla Mansour",
        "the refused transfer's purpose": b"Qasr al-Nil",
        "the file name": b"depot-strike",
    }
    found = [(what, str(f.relative_to(seized))) for f in seized.rglob("*") if f.is_file()
             for what, needle in secrets.items() if needle in f.read_bytes()]
    assert found == []
    assert list((sealed.tmp / "run" / "custody-spool").iterdir()) == []  # no plaintext left


def test_seized_sealed_archive_verifies_without_any_key(sealed: Cli, tmp_path: Path) -> None:
    code, out, err = _keyless(sealed, _copy(sealed, tmp_path / "seized"), "verify")
    assert code == 0, err
    assert "OK: 7 entries and 1 objects verified" in out


def test_custodian_gets_the_exact_bytes_and_places_back(sealed: Cli) -> None:
    back = (sealed.tmp / "back.jpg").read_bytes()
    assert hashlib.sha256(back).digest() == hashlib.sha256(JPEG.read_bytes()).digest()
    shown = sealed("show", hashlib.sha256(back).hexdigest()[:16], "--json", check=True).json()
    assert shown["sealing"] == "opened"
    assert shown["gps"] == {"lat": 36.2021, "lon": 37.1343, "alt": 379}
    assert [n["text"] for n in shown["notes"]] == [NOTE] and shown["names"] == [NAME]
    assert shown["accesses"][0]["purpose"] == PURPOSE
    code, out, _ = _keyless(sealed, sealed.archive, "show", shown["sha256"], "--json")
    assert code == 0 and '"sealing": "sealed"' in out and "36.2021" not in out


def test_wrong_passphrase_or_a_non_custodian_key_reads_nothing_and_touches_nothing(
        sealed: Cli, tmp_path: Path) -> None:
    archive = _copy(sealed, tmp_path / "copy")
    before = (archive / "ledger.db").read_bytes()
    item = hashlib.sha256(JPEG.read_bytes()).hexdigest()
    wrong = sealed("--archive", archive, "get", item, "--purpose", "x", "-o", tmp_path / "a",
                   env={"CUSTODY_PASSPHRASE": "not the passphrase at all"})
    assert wrong.code != 0 and "wrong passphrase" in one_line_error(wrong)
    write_new_key(tmp_path / "mallory.key", "Mallory", PASSPHRASE)
    stranger = sealed("--archive", archive, "--key", tmp_path / "mallory.key", "get", item,
                      "--purpose", "x", "-o", tmp_path / "b")
    assert stranger.code != 0 and "not" in one_line_error(stranger)
    assert (archive / "ledger.db").read_bytes() == before
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_enrolled_and_rotated_custodian_reads_a_sealed_archive(
        sealed: Cli, tmp_path: Path) -> None:
    archive = _copy(sealed, tmp_path / "copy")
    bob = write_new_key(tmp_path / "bob.key", "Bob Investigator", PASSPHRASE)
    sealed("--archive", archive, "enroll", f"{tmp_path / 'bob.key'}.pub", "--role",
           "investigator", check=True)
    assert (archive / "keys" / "content" / f"{bob.key_id}.age").is_file()
    item = hashlib.sha256(JPEG.read_bytes()).hexdigest()
    sealed("--archive", archive, "--key", tmp_path / "bob.key", "get", item, "--purpose",
           "case review", "-o", tmp_path / "bob.jpg", check=True)
    assert (tmp_path / "bob.jpg").read_bytes() == JPEG.read_bytes()
    new_pass = {"CUSTODY_NEW_PASSPHRASE": "bob's next passphrase, long"}
    sealed("--archive", archive, "--key", tmp_path / "bob.key", "key", "rotate", "--reason",
           "routine", env=new_pass, check=True)
    sealed("--archive", archive, "--key", tmp_path / "bob.key", "get", item, "--purpose",
           "case review", "-o", tmp_path / "bob2.jpg", check=True,
           env={"CUSTODY_PASSPHRASE": new_pass["CUSTODY_NEW_PASSPHRASE"]})
    assert (tmp_path / "bob2.jpg").read_bytes() == JPEG.read_bytes()


def test_tampered_ciphertext_is_caught_by_verify_without_a_key(
        sealed: Cli, tmp_path: Path) -> None:
    archive = _copy(sealed, tmp_path / "copy")
    (obj,) = [f for f in (archive / "objects").rglob("*") if f.is_file()
              and len(f.name) == 64]
    obj.chmod(0o600)
    data = bytearray(obj.read_bytes())
    data[-20] ^= 0x01
    obj.write_bytes(bytes(data))
    code, out, err = _keyless(sealed, archive, "verify")
    assert code == 1 and "corrupt" in out + err


def test_lock_removes_plaintext_a_killed_command_left(sealed: Cli) -> None:
    spool = sealed.tmp / "run" / "custody-spool"
    left = spool / "plain-killed"
    left.write_bytes(JPEG.read_bytes())
    r = sealed("lock", "--json", check=True)
    assert str(left) in r.json()["removed"] and not left.exists()


def test_travel_empty_keeps_verify_passing_and_refuses_content_held_nowhere(
        sealed: Cli, tmp_path: Path) -> None:
    archive = _copy(sealed, tmp_path / "copy")
    run = ("--archive", archive)
    item = hashlib.sha256(JPEG.read_bytes()).hexdigest()
    sealed(*run, "export", item, "--purpose", "handover to the centre", "-o",
           tmp_path / "pkg", check=True)
    other = tmp_path / "second.jpg"
    shutil.copy(DATA / "media" / "carbon-south-west.jpg", other)
    sealed(*run, "ingest", other, check=True)
    objects = sorted(p for p in (archive / "objects").rglob("*") if p.is_file())
    refused = sealed(*run, "travel", "empty", "--held-in", tmp_path / "pkg")
    assert refused.code != 0 and "not held in" in one_line_error(refused)
    assert sorted(p for p in (archive / "objects").rglob("*") if p.is_file()) == objects
    second = hashlib.sha256(other.read_bytes()).hexdigest()
    sealed(*run, "export", item, second, "--purpose", "handover to the centre", "-o",
           tmp_path / "pkg2", check=True)
    assert sealed("verify-package", tmp_path / "pkg2").code == 0
    assert (tmp_path / "pkg2" / "data").is_dir()  # the court's copy: opened content
    sealed(*run, "travel", "empty", "--held-in", tmp_path / "pkg2", check=True)
    assert not [p for p in (archive / "objects").rglob("*") if p.is_file()
                and len(p.name) == 64]
    code, out, err = _keyless(sealed, archive, "verify")
    assert code == 0, out + err
    assert "held elsewhere" in out + err


def test_a_statement_signed_elsewhere_is_refused_by_a_sealed_archive(
    sealed: Cli, tmp_path: Path
) -> None:
    """A statement is signed as its custodian wrote it, so a sealed archive could only store its
    note in clear: it refuses it in one line and appends nothing (FORMAT.md §12.3)."""
    import json
    import secrets
    from datetime import UTC, datetime

    from custody.core import entry as entries
    from custody.ops.keyfiles import load_key
    from custody.ops.statements import statement_file

    archive = _copy(sealed, tmp_path / "copy")
    origin = json.loads((archive / "custody.json").read_text())["origin"]
    key = load_key(sealed.key, PASSPHRASE)
    statement = entries.Statement(
        log=origin, actor=key.key_id, action="note", item=hashlib.sha256(JPEG.read_bytes())
        .hexdigest(), details={"text": "a note that would lie in clear"},
        time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), nonce=secrets.token_hex(16))
    path = tmp_path / "statement.json"
    path.write_text(json.dumps(statement_file(entries.sign_statement(statement, key))))
    before = (archive / "ledger.db").read_bytes()
    r = sealed("--archive", str(archive), "submit", path)
    assert r.code != 0 and "sealed" in one_line_error(r)
    assert (archive / "ledger.db").read_bytes() == before
    assert b"would lie in clear" not in before


def test_transfer_purposes_are_sealed_and_a_custodian_reads_them(sealed: Cli) -> None:
    """The offer's and the refused attempt's purposes are sealed like notes (FORMAT.md §12.2):
    the log shows `sealed`, a custodian's key opens them, and no key shows none."""
    logged = [json.loads(line) for line in sealed("log", "--json", check=True).stdout
              .splitlines() if line.strip()]
    offer = [e for e in logged if e["action"] == "transfer-offer"][0]
    refusal = [e for e in logged if e["action"] == "refused"][0]
    assert "purpose" not in offer["details"] and "sealed" in offer["details"]
    assert "purpose" not in refusal["details"] and "sealed" in refusal["details"]
    (row,) = sealed("transfers", "--json", check=True).json()
    assert row["purpose"] == OFFER_PURPOSE
    item = hashlib.sha256(JPEG.read_bytes()).hexdigest()
    shown = sealed("show", item, "--json", check=True).json()
    assert shown["refusals"][0]["details"]["purpose"] == REFUSED_PURPOSE
    assert shown["pending_offers"][0]["purpose"] == OFFER_PURPOSE
    code, out, _ = _keyless(sealed, sealed.archive, "transfers", "--json")
    assert code == 0 and json.loads(out)[0]["purpose"] is None


def test_an_incidents_place_and_description_and_a_case_removal_reason_are_sealed(
        sealed: Cli, tmp_path: Path) -> None:
    """An incident's place is a GPS position: a seized copy must not show it (issue 19)."""
    archive = _copy(sealed, tmp_path / "incident")
    item = hashlib.sha256(JPEG.read_bytes()).hexdigest()
    sealed("--archive", archive, "incident", "new", "M10-2016-10-03", "--date", "2016-10-03",
           "--place", "36.19862,37.16317,Al-Sakhour clinic",
           "--description", "Barrel bomb near the clinic, witness Huda Saleh", check=True)
    sealed("--archive", archive, "case", "add", item, "--case", "ALEPPO-2016", check=True)
    sealed("--archive", archive, "case", "remove", item, "--case", "ALEPPO-2016",
           "--reason", "duplicate of Omar's copy", check=True)
    secrets = [b"36.19862", b"37.16317", b"Al-Sakhour", b"Huda Saleh", b"Omar's copy"]
    found = [(needle, str(f.relative_to(archive))) for f in archive.rglob("*") if f.is_file()
             for needle in secrets if needle in f.read_bytes()]
    assert found == []
    opened = sealed("--archive", archive, "incident", "list", "--json", check=True).json()
    assert [(i["place"]["lat"], i["description"]) for i in opened] == [
        (36.19862, "Barrel bomb near the clinic, witness Huda Saleh")]
    code, out, err = _keyless(sealed, archive, "verify")
    assert code == 0, err
