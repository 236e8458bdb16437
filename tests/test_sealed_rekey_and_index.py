"""A sealed archive re-keyed after a lost key, read by a key that lacks a later epoch, and its
sealed search index checked and rebuilt (docs/FORMAT.md §12.5, §12.6; round 25's review).

One sealed archive per module (Alice admin, Bob field, Carol investigator; a real camera JPEG with
GPS and a note); each test works on a copy.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pyrage
import pytest

from custody.core import entry as entries
from custody.ops import verify as verify_ops
from custody.ops.archive import Archive, Draft, custodian_json
from custody.ops.keyfiles import load_key
from tests.conftest import DATA, PASSPHRASE, Cli, copy_archive, one_line_error, sealed_team

JPEG = DATA / "media" / "aleppo-gps.jpg"  # GPS 36.2021 N, 37.1343 E; a samsung SM-G935F
LATER = DATA / "media" / "carbon-south-west.jpg"  # another camera JPEG, ingested after a re-key
NOTE = "witness Rami Haddad, ambulance depot basement"
LATER_NOTE = "second witness Layla Nasser at the bakery"
OFFER_PURPOSE = "handover to investigator Carol for the Hama dossier"
ITEM = hashlib.sha256(JPEG.read_bytes()).hexdigest()
LATER_ITEM = hashlib.sha256(LATER.read_bytes()).hexdigest()
NO_KEY = {"CUSTODY_KEY": "", "CUSTODY_PASSPHRASE": "", "CUSTODY_ARCHIVE_PASSPHRASE": ""}


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory, session_made_key: Any) -> Cli:
    tmp = tmp_path_factory.mktemp("sealed-rekey")
    cli = sealed_team(tmp, session_made_key)
    cli("ingest", JPEG, "--note", NOTE, check=True)
    return cli


def _content_keys(archive: Path, key_path: Path) -> list[pyrage.x25519.Identity]:
    """Every content key a key file opens: each wrapped file for its key id, in any epoch
    folder (what a thief holding that key and a copy of the archive could open)."""
    key = load_key(key_path, PASSPHRASE)
    return [pyrage.x25519.Identity.from_str(
        pyrage.decrypt(f.read_bytes(), [key.age_identity()]).decode())
        for f in (archive / "keys" / "content").rglob(f"{key.key_id}.age")]


def _sealed_parts(archive: Path, item: str) -> dict[str, bytes]:
    """An item's stored age files: its object and its metadata document."""
    opened = Archive.open(archive)
    first = entries.parse(opened.ledger.rows_for_item(item)[0].body)
    cipher = first.details["ciphertext"]["sha256"]
    (obj,) = list((archive / "objects").rglob(cipher))
    doc = opened.ledger.metadata(item)
    assert doc is not None
    return {"content": obj.read_bytes(), "metadata": doc}


def _logged(cli: Cli, seq: int) -> dict[str, Any]:
    return next(e for e in map(json.loads, cli("log", "--json", check=True).stdout.splitlines())
                if e["seq"] == seq)


# A. a key rotated after a loss re-keys the archive ----------------------------------------------


def test_a_key_rotated_after_a_loss_opens_nothing_sealed_afterwards_and_its_successor_does(
        sealed: Cli, tmp_path: Path, made_key: Any) -> None:
    cli = copy_archive(sealed, tmp_path)
    made_key(tmp_path / "keys" / "carol-new.key", "Carol Replacement")
    rotated = cli("key", "rotate", "--custodian", "Carol Investigator", "--new-key",
                  tmp_path / "keys" / "carol-new.key.pub", "--reason", "phone lost at a checkpoint",
                  "--json", check=True).json()
    entry = _logged(cli, rotated["seq"])
    assert entry["details"]["sealing"]["epoch"] == 1  # the rotation signed a new content key
    cli("ingest", LATER, "--note", LATER_NOTE, check=True)
    lost = _content_keys(cli.archive, tmp_path / "keys" / "carol.key")
    assert len(lost) == 1  # epoch 0 only: what the lost key could open
    for blob in _sealed_parts(cli.archive, LATER_ITEM).values():
        with pytest.raises(pyrage.DecryptError):
            pyrage.decrypt(blob, lost)
    assert pyrage.decrypt(_sealed_parts(cli.archive, ITEM)["content"], lost) == \
        JPEG.read_bytes()  # sealed before the loss: stays under the old key (FORMAT.md §12.5)
    new = ("--key", str(tmp_path / "keys" / "carol-new.key"))
    for item, source in ((ITEM, JPEG), (LATER_ITEM, LATER)):
        cli(*new, "get", item, "--purpose", "review", "-o", tmp_path / f"{item}.jpg", check=True)
        assert (tmp_path / f"{item}.jpg").read_bytes() == source.read_bytes()
    shown = cli(*new, "show", LATER_ITEM, "--json", check=True).json()
    assert [n["text"] for n in shown["notes"]] == [LATER_NOTE]
    report = cli("verify", "--json", env=NO_KEY)
    assert report.code == 0, report.stdout
    assert f"epoch 1 from entry {rotated['seq']}" in " ".join(report.json()["notices"])
    # an admin rotating their own key this way signs with it: not lost, no epoch (rule
    # sealing-epoch refuses one on a rotation the old key signs)
    made_key(tmp_path / "keys" / "alice-new.key", "Alice Replacement")
    own = cli("key", "rotate", "--custodian", "Alice Admin", "--new-key",
              tmp_path / "keys" / "alice-new.key.pub", "--reason", "yearly", "--json",
              check=True).json()
    assert "sealing" not in _logged(cli, own["seq"])["details"]
    assert cli("verify", env=NO_KEY).code == 0


def test_a_planned_rotation_starts_no_epoch_and_old_rotations_without_one_still_verify(
        sealed: Cli, tmp_path: Path, made_key: Any) -> None:
    """The docs' decision (FORMAT.md §12.5): a key rotated by itself was never out of its
    holder's hands, so it starts no epoch; an epoch on a key-rotate the old key signed is
    refused. An admin's rotation written before epochs on rotations (no `sealing`) verifies."""
    cli = copy_archive(sealed, tmp_path)
    bob = ("--key", str(tmp_path / "keys" / "bob.key"))
    planned = cli(*bob, "key", "rotate", "--reason", "yearly", "--json",
                  env={"CUSTODY_NEW_PASSPHRASE": "bob's next passphrase, long"},
                  check=True).json()
    assert "sealing" not in _logged(cli, planned["seq"])["details"]
    archive = Archive.open(cli.archive)
    alice = load_key(cli.key, PASSPHRASE)
    carol = load_key(tmp_path / "keys" / "carol.key", PASSPHRASE)
    lost = made_key(tmp_path / "keys" / "carol-new.key", "Carol Replacement")
    archive.append(alice, [Draft("key-rotate", None, {  # as round 25 wrote an admin's rotation
        "old_key_id": carol.key_id, "custodian": custodian_json(lost.public),
        "reason": "phone lost"})])
    assert cli("verify", env=NO_KEY).code == 0
    dana = made_key(tmp_path / "keys" / "dana.key", "Dana Reviewer")
    cli("enroll", tmp_path / "keys" / "dana.key.pub", "--role", "investigator", check=True)
    forged = {"scheme": "age-v1-x25519", "epoch": 1,
              "recipient": str(pyrage.x25519.Identity.generate().to_public())}
    archive.append(load_key(tmp_path / "keys" / "dana.key", PASSPHRASE), [Draft(
        "key-rotate", None, {"old_key_id": dana.key_id, "reason": None, "sealing": forged,
                             "custodian": custodian_json(made_key(
                                 tmp_path / "keys" / "dana2.key", "Dana Two").public)})])
    report = cli("verify", "--json", env=NO_KEY)
    assert report.code == 1
    assert any("sealing-epoch" in p and "old key itself" in p for p in report.json()["problems"])


# B. a key without a later epoch reads the rest -------------------------------------------------


def test_a_reader_without_a_later_epoch_gets_show_and_transfers_with_that_member_sealed(
        sealed: Cli, tmp_path: Path) -> None:
    """Bob's copied key holds epoch 0 only (he was revoked): the offer's purpose and the later
    item, sealed in epoch 1, stay sealed; everything else is shown, exit 0."""
    cli = copy_archive(sealed, tmp_path)
    cli("revoke", "Bob Field", "--reason", "laptop seized", check=True)
    carol = load_key(tmp_path / "keys" / "carol.key", PASSPHRASE)
    cli("transfer", ITEM, "--to", carol.key_id, "--purpose", OFFER_PURPOSE, check=True)
    cli("ingest", LATER, "--note", LATER_NOTE, check=True)
    bob = ("--key", str(tmp_path / "keys" / "bob.key"))
    runs = {args: cli(*bob, *args) for args in (
        ("show", ITEM, "--json"), ("show", ITEM), ("transfers", "--json"), ("transfers",),
        ("show", LATER_ITEM, "--json"), ("list", "--json"))}
    for args, run in runs.items():
        assert run.code == 0 and "Traceback" not in run.stderr, (args, run.stderr)
    shown = runs[("show", ITEM, "--json")].json()
    assert [n["text"] for n in shown["notes"]] == [NOTE]  # epoch 0: opened
    assert shown["pending_offers"][0]["purpose"] is None  # epoch 1: sealed
    offer = next(h for h in shown["history"] if h["action"] == "transfer-offer")
    assert "sealed" in offer["details"] and "purpose" not in offer["details"]
    (row,) = runs[("transfers", "--json")].json()
    assert row["purpose"] is None and row["to"] == carol.key_id
    assert "(sealed)" in runs[("transfers",)].stdout
    later = runs[("show", LATER_ITEM, "--json")].json()
    assert later["sealing"] == "sealed" and later["gps"] is None
    assert LATER_NOTE not in json.dumps(later)
    assert sorted(i["sha256"] for i in runs[("list", "--json")].json()) == sorted([ITEM,
                                                                                   LATER_ITEM])
    # a custodian holding every epoch still reads it all
    (row,) = cli("--key", tmp_path / "keys" / "carol.key", "transfers", "--json",
                 check=True).json()
    assert row["purpose"] == OFFER_PURPOSE


# C and D. the sealed search index: verified with a key, rebuilt by --reindex --------------------


def _content_key(cli: Cli) -> pyrage.x25519.Identity:
    (identity,) = _content_keys(cli.archive, cli.key)
    return identity


def _alter_index(cli: Cli, item: str) -> None:
    """What anyone can do without a key (the recipient is public): seal a doctored index, here
    one that hides an item from search, in place of index.age."""
    path = cli.archive / "index.age"
    conn = sqlite3.connect(":memory:")
    conn.deserialize(pyrage.decrypt(path.read_bytes(), [_content_key(cli)]))
    assert conn.execute("DELETE FROM items WHERE sha256 = ?", (item,)).rowcount == 1
    conn.commit()
    path.write_bytes(pyrage.encrypt(conn.serialize(), [_content_key(cli).to_public()]))


def _found(cli: Cli, *filters: str) -> list[str]:
    return [i["sha256"] for i in cli("search", *filters, "--json", check=True).json()["items"]]


def test_verify_with_a_key_checks_the_sealed_index_and_without_one_says_it_was_not_checked(
        sealed: Cli, tmp_path: Path) -> None:
    cli = copy_archive(sealed, tmp_path)
    assert _found(cli, "--text", "haddad") == [ITEM]  # writes index.age
    keyed = cli("verify", "--json")
    assert keyed.code == 0 and not [n for n in keyed.json()["notices"] if "index" in n]
    _alter_index(cli, ITEM)
    assert _found(cli, "--text", "haddad") == []  # the doctored index is believed by search
    keyed = cli("verify", "--json")
    assert keyed.code == 1
    assert any(f"search index: item {ITEM}" in p for p in keyed.json()["problems"])
    keyless = cli("verify", "--json", env=NO_KEY)
    assert keyless.code == 0
    assert any("index.age is sealed and was NOT checked" in n
               for n in keyless.json()["notices"])
    assert "NOT checked" in cli("verify", env=NO_KEY).stdout
    # a key that does not open: verify goes on, and says the index was not checked
    unopened = cli("verify", "--json", env={"CUSTODY_PASSPHRASE": "not the passphrase at all"})
    assert unopened.code == 0 and "sealed search index is not checked" in unopened.stderr


def _doctor_index(cli: Cli, *statements: str) -> None:
    """Seal index.age again after running `statements` on it (as _alter_index)."""
    path = cli.archive / "index.age"
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.deserialize(pyrage.decrypt(path.read_bytes(), [_content_key(cli)]))
    for statement in statements:
        conn.execute(statement)
    path.write_bytes(pyrage.encrypt(conn.serialize(), [_content_key(cli).to_public()]))


def test_verify_reads_a_sealed_index_as_it_is_never_remade_first(sealed: Cli,
                                                                 tmp_path: Path) -> None:
    """verify opened index.age as search does, which remakes a file of another version (and
    would remake a dropped trigger) in memory before the comparison: an older index was then
    compared empty, with nothing said. Now it is taken as it is."""
    cli = copy_archive(sealed, tmp_path)
    assert _found(cli, "--text", "haddad") == [ITEM]
    _doctor_index(cli, "DROP TRIGGER items_stale")
    keyed = cli("verify", "--json")
    assert keyed.code == 1
    assert any("triggers that keep its listed rows current are missing" in p
               for p in keyed.json()["problems"]), keyed.json()
    _doctor_index(cli, "UPDATE state SET value = '5' WHERE key = 'schema'")
    keyed = cli("verify", "--json")
    assert any("index.age was NOT checked" in n and "not a search index of version" in n
               for n in keyed.json()["notices"]), keyed.json()
    assert _found(cli, "--text", "haddad") == [ITEM]  # search rebuilds it
    assert cli("verify").code == 0


def test_verify_on_workers_checks_the_sealed_index_with_the_key_it_holds(
        sealed: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify hands the index check to a forked worker on a long log: the worker checks with
    the content keys verify holds, not with none (it opens the archive afresh)."""
    cli = copy_archive(sealed, tmp_path)
    _found(cli, "--text", "haddad")
    _alter_index(cli, ITEM)
    monkeypatch.setattr(verify_ops, "PARALLEL_FROM", 0)  # workers for a log of any length
    archive = Archive.open(cli.archive)
    archive.unlock(load_key(cli.key, PASSPHRASE))
    report = verify_ops.audit(archive)
    assert any(f"search index: item {ITEM}" in p for p in report.problems), report.notices


def test_reindex_of_a_sealed_archive_rewrites_an_altered_index(
        sealed: Cli, tmp_path: Path) -> None:
    cli = copy_archive(sealed, tmp_path)
    assert _found(cli, "--text", "haddad") == [ITEM]
    _alter_index(cli, ITEM)
    altered = (cli.archive / "index.age").read_bytes()
    cli("search", "--reindex", "--json", check=True)
    assert (cli.archive / "index.age").read_bytes() != altered
    assert _found(cli, "--text", "haddad") == [ITEM]  # from the rewritten file
    assert _found(cli, "--near", "36.20,37.13", "--within-km", "5") == [ITEM]
    assert cli("verify").code == 0


def test_a_damaged_sealed_document_is_an_error_not_shown_as_sealed(sealed: Cli,
                                                                   tmp_path: Path) -> None:
    """A reader who holds the epoch's key and meets a sealed metadata document whose payload no
    longer authenticates gets a one-line error naming it (damage), not the quiet "sealed" view
    meant for another epoch's content; search still works and verify names the damage."""
    cli = copy_archive(sealed, tmp_path)
    with sqlite3.connect(cli.archive / "ledger.db") as db:
        (doc,) = db.execute("SELECT doc FROM metadata WHERE sha256 = ?", (ITEM,)).fetchone()
        damaged = bytearray(doc)
        damaged[-3] ^= 0x01  # inside the last payload chunk: its authentication fails
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                     "AND tbl_name = 'metadata'").fetchall():
            db.execute(f"DROP TRIGGER {trigger}")  # an insider with the file can
        db.execute("UPDATE metadata SET doc = ? WHERE sha256 = ?", (bytes(damaged), ITEM))
    shown = cli("show", ITEM, "--json")
    assert shown.code != 0
    assert "does not open" in one_line_error(shown)
    assert cli("search", "--json").code == 0  # the index skips it, with a warning
    assert cli("verify").code == 1


def test_age_still_says_no_matching_keys_for_another_recipients_file() -> None:
    """encryption._not_for_these_keys tells another epoch's content from damage by age's own
    words: if pyrage rewords them, every item of another epoch would become an error; this says
    so first."""
    mine, theirs = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    with pytest.raises(pyrage.DecryptError, match="No matching keys found"):
        pyrage.decrypt(pyrage.encrypt(b"sealed", [theirs.to_public()]), [mine])
