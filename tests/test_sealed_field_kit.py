"""A sealed archive's remaining field-kit gaps (issue 19, docs/FORMAT.md §12.5-§12.7): migrated
still sealed; re-keyed when a custodian is revoked; searched with a key, and only with one.

One sealed archive per module (Alice admin, Bob field, Carol investigator; a real camera JPEG with
GPS and a note); tests that change it work on a copy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pyrage
import pytest

from custody.core import entry as entries
from custody.errors import ArchiveError
from custody.metadata import MetadataReader
from custody.ops.archive import Archive, Draft
from custody.ops.ingest import Claims, ingest_stream
from custody.ops.keyfiles import load_key
from tests.conftest import DATA, PASSPHRASE, Cli, copy_archive, one_line_error, sealed_team

JPEG = DATA / "media" / "aleppo-gps.jpg"  # GPS 36.2021 N, 37.1343 E, 379 m; a samsung SM-G935F
LATER = DATA / "media" / "carbon-south-west.jpg"  # another camera JPEG, ingested after a revoke
NOTE = "witness Rami Haddad, ambulance depot basement"
LATER_NOTE = "second witness Layla Nasser at the bakery"
NAME = "depot-strike-secret.jpg"
ITEM = hashlib.sha256(JPEG.read_bytes()).hexdigest()
LATER_ITEM = hashlib.sha256(LATER.read_bytes()).hexdigest()
NO_KEY = {"CUSTODY_KEY": "", "CUSTODY_PASSPHRASE": "", "CUSTODY_ARCHIVE_PASSPHRASE": ""}


def secrets_of(image: bytes) -> dict[str, bytes]:
    """What a seized copy must not show: content, place, device, note, file name."""
    return {
        "the JPEG's first bytes": image[:64],
        "the JPEG's middle bytes": image[len(image) // 2:len(image) // 2 + 64],
        "the JPEG's last bytes": image[-64:],
        "latitude as decimal": b"36.2021",
        "longitude as decimal": b"37.1343",
        "latitude as EXIF text": b"[36, 12, 189/25]",
        "the device": b"SM-G935F",
        "the note": b"Rami Haddad",
        "the file name": b"depot-strike",
    }


def found_in_files(folder: Path, needles: dict[str, bytes]) -> list[tuple[str, str]]:
    return [(what, str(f)) for f in folder.rglob("*") if f.is_file()
            for what, needle in needles.items() if needle in f.read_bytes()]


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory, session_made_key: Any) -> Cli:
    tmp = tmp_path_factory.mktemp("sealed-kit")
    cli = sealed_team(tmp, session_made_key)
    shutil.copy(JPEG, tmp / NAME)
    cli("ingest", tmp / NAME, "--note", NOTE, check=True)
    return cli


# 1. migrate ------------------------------------------------------------------------------------


def _database_bytes(url: str) -> bytes:
    """Every row of every table of the ledger's schema, as the server holds it."""
    import psycopg

    out = []
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "'custody_ledger'")]
        assert tables
        for table in tables:
            for row in conn.execute(f"SELECT * FROM custody_ledger.{table}"):
                out += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    return b"\n".join(out)


@pytest.mark.parametrize("ledger", ["sqlite", "postgresql"])
def test_a_sealed_archive_migrates_still_sealed_and_reads_back_with_a_key(
        sealed: Cli, tmp_path: Path, ledger: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if ledger == "postgresql" else "sqlite"
    target = tmp_path / "moved"
    done = sealed("migrate", "--to", target, "--ledger", url, "--json")
    assert done.code == 0, done.stderr
    assert done.json()["objects"] == 1 and done.json()["objects_copied"] == 1
    needles = secrets_of(JPEG.read_bytes())
    assert found_in_files(target, needles) == []
    if ledger == "postgresql":
        held = _database_bytes(url)
        assert b"ciphertext" in held  # the entries are there, sealed
        assert [what for what, needle in needles.items() if needle in held] == []
    # the same age files, sealed metadata and wrapped keys; the same signed entries
    src, dst = Archive.open(sealed.archive).ledger, Archive.open(target).ledger
    assert dict(dst.all_metadata()) == dict(src.all_metadata())
    assert [r.body for r in dst.rows()][:src.size()] == [r.body for r in src.rows()]
    assert sorted(p.name for p in (target / "keys" / "content").rglob("*.age")) == \
        sorted(p.name for p in (sealed.archive / "keys" / "content").rglob("*.age"))
    moved = ("--archive", str(target))
    keyless = sealed(*moved, "verify", env=NO_KEY)
    assert keyless.code == 0 and "OK: 5 entries and 1 objects verified" in keyless.stdout
    sealed(*moved, "--key", sealed.tmp / "keys" / "carol.key", "get", ITEM, "--purpose",
           "court bundle", "-o", tmp_path / "back.jpg", check=True)
    assert (tmp_path / "back.jpg").read_bytes() == JPEG.read_bytes()
    shown = sealed(*moved, "show", ITEM, "--json", check=True).json()
    assert shown["gps"] == {"lat": 36.2021, "lon": 37.1343, "alt": 379}
    assert [n["text"] for n in shown["notes"]] == [NOTE]


# 3. re-keying after a revocation --------------------------------------------------------------


def _revoked_identities(archive: Path, key_path: Path) -> list[pyrage.x25519.Identity]:
    """Every content key a revoked custodian could still open: each wrapped file for their key
    id, in any epoch folder (what they could have copied, or find on a seized copy)."""
    key = load_key(key_path, PASSPHRASE)
    return [pyrage.x25519.Identity.from_str(
        pyrage.decrypt(f.read_bytes(), [key.age_identity()]).decode())
        for f in (archive / "keys" / "content").rglob(f"{key.key_id}.age")]


def _sealed_parts(archive: Path, item: str) -> dict[str, bytes]:
    """An item's stored age files: its object, its metadata document, its ingest note."""
    opened = Archive.open(archive)
    first = next(entries.parse(r.body) for r in opened.ledger.rows_for_item(item)
                 if entries.parse(r.body).action == "ingest")
    cipher = first.details["ciphertext"]["sha256"]
    (obj,) = [p for p in (archive / "objects").rglob(cipher)]
    doc = opened.ledger.metadata(item)
    assert doc is not None
    return {"content": obj.read_bytes(), "metadata": doc,
            "note": base64.b64decode(first.details["sealed"])}


def test_a_revoked_custodian_cannot_open_what_is_sealed_after_the_revocation(
        sealed: Cli, tmp_path: Path) -> None:
    cli = copy_archive(sealed, tmp_path)
    revoked = cli("revoke", "Bob Field", "--reason", "laptop seized at a checkpoint", "--json",
                  check=True).json()
    shutil.copy(LATER, tmp_path / "bakery.jpg")
    cli("ingest", tmp_path / "bakery.jpg", "--note", LATER_NOTE, check=True)
    bob = tmp_path / "keys" / "bob.key"
    stolen = _revoked_identities(cli.archive, bob)
    assert len(stolen) == 1  # the old epoch's key: wrapped for him before the revocation
    for what, blob in _sealed_parts(cli.archive, LATER_ITEM).items():
        with pytest.raises(pyrage.DecryptError):
            pyrage.decrypt(blob, stolen)
        assert what  # each of content, metadata and note refused
    old = _sealed_parts(cli.archive, ITEM)
    assert pyrage.decrypt(old["content"], stolen) == JPEG.read_bytes()  # kept: said in KEYS.md
    # the remaining custodians read old and new
    carol = ("--key", str(tmp_path / "keys" / "carol.key"))
    for item, source in ((ITEM, JPEG), (LATER_ITEM, LATER)):
        cli(*carol, "get", item, "--purpose", "review", "-o", tmp_path / f"{item}.jpg",
            check=True)
        assert (tmp_path / f"{item}.jpg").read_bytes() == source.read_bytes()
    shown = cli(*carol, "show", LATER_ITEM, "--json", check=True).json()
    assert [n["text"] for n in shown["notes"]] == [LATER_NOTE]
    assert shown["sealing"] == "opened" and shown["metadata"]
    # the revoke entry signs the new recipient; verify follows the epochs without a key
    entry = next(json.loads(line) for line in cli("log", "--json", check=True).stdout.splitlines()
                 if json.loads(line)["seq"] == revoked["entries"][0])
    assert entry["details"]["sealing"]["epoch"] == 1
    assert entry["details"]["sealing"]["recipient"].startswith("age1")
    report = cli("verify", "--json", env=NO_KEY)
    assert report.code == 0, report.stdout
    assert f"epoch 1 from entry {revoked['entries'][0]}" in " ".join(report.json()["notices"])
    # Bob's key signs nothing any more, and a stranger's read is refused as before
    refused = cli("--key", str(bob), "get", LATER_ITEM, "--purpose", "x", "-o", tmp_path / "b")
    assert refused.code == 3 and "revoked" in one_line_error(refused)


def test_a_custodian_enrolled_after_a_revocation_reads_every_epoch(
        sealed: Cli, tmp_path: Path, made_key: Any) -> None:
    cli = copy_archive(sealed, tmp_path)
    cli("revoke", "Bob Field", "--reason", "left the team", check=True)
    cli("ingest", LATER, check=True)
    made_key(tmp_path / "keys" / "dana.key", "Dana Reviewer")
    cli("enroll", tmp_path / "keys" / "dana.key.pub", "--role", "investigator", check=True)
    dana = ("--key", str(tmp_path / "keys" / "dana.key"))
    for item, source in ((ITEM, JPEG), (LATER_ITEM, LATER)):
        cli(*dana, "get", item, "--purpose", "review", "-o", tmp_path / f"{item}.jpg",
            check=True)
        assert (tmp_path / f"{item}.jpg").read_bytes() == source.read_bytes()


# 2. search over sealed fields ------------------------------------------------------------------


def _index_secrets() -> dict[str, bytes]:
    """What a plaintext index would hold: text as SQLite stores it, coordinates as its REALs."""
    return {"the note": b"Rami Haddad", "the later note": b"Layla Nasser",
            "the device": b"SM-G935F", "the other device": b"Canon EOS 5D",
            "the file name": b"depot-strike", "the capture time": b"2016-10-03T11:22:05",
            "the latitude": struct.pack(">d", 36.2021), "the longitude": struct.pack(">d", 37.1343),
            "the other latitude": struct.pack(">d", -49.5783)}


def test_search_of_a_sealed_archive_needs_a_key_finds_by_every_field_and_leaves_no_plaintext(
        sealed: Cli, tmp_path: Path) -> None:
    cli = copy_archive(sealed, tmp_path)
    cli("tag", ITEM, "strike", check=True)
    cli("ingest", LATER, "--note", LATER_NOTE, check=True)  # from outside tmp_path, searched

    def found(*filters: str) -> list[str]:
        return [i["sha256"] for i in cli("search", *filters, "--json", check=True).json()["items"]]

    assert found("--near", "36.20,37.13", "--within-km", "5") == [ITEM]
    assert found("--bbox", "-69,-50,-68,-49") == [LATER_ITEM]
    assert found("--since", "2016-10-03", "--until", "2016-10-03") == [ITEM]
    assert found("--device", "sm-g935") == [ITEM] and found("--device", "canon") == [LATER_ITEM]
    assert found("--tag", "strike") == [ITEM]
    assert found("--text", "haddad") == [ITEM] and found("--text", "nasser") == [LATER_ITEM]
    assert found("--text", "depot-strike") == [ITEM]  # the file name, sealed in the ledger
    # without a key: one line, nothing built
    locked = cli("search", "--near", "36.20,37.13", "--within-km", "5", env=NO_KEY)
    assert locked.code == 2 and "needs a custodian's key" in one_line_error(locked)
    # nothing of it in clear on the device: not the archive, not the spool, not the home folder
    needles = _index_secrets()
    assert found_in_files(tmp_path, needles) == []
    sealed_index = cli.archive / "index.age"
    key = load_key(cli.key, PASSPHRASE)
    content = pyrage.x25519.Identity.from_str(pyrage.decrypt(
        (cli.archive / "keys" / "content" / f"{key.key_id}.age").read_bytes(),
        [key.age_identity()]).decode())
    opened = pyrage.decrypt(sealed_index.read_bytes(), [content])
    assert [w for w, n in needles.items() if n not in opened] == []  # the check would see them
    cli("lock", check=True)
    assert found_in_files(tmp_path, needles) == []
    assert found("--near", "36.20,37.13", "--within-km", "5") == [ITEM]  # reopened after lock


def test_a_revoked_custodian_cannot_open_the_search_index_built_after_the_revocation(
        sealed: Cli, tmp_path: Path) -> None:
    cli = copy_archive(sealed, tmp_path)
    cli("revoke", "Bob Field", "--reason", "left the team", check=True)
    cli("ingest", LATER, "--note", LATER_NOTE, check=True)
    assert cli("search", "--text", "nasser", "--json", check=True).json()["count"] == 1
    stolen = _revoked_identities(cli.archive, tmp_path / "keys" / "bob.key")
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt((cli.archive / "index.age").read_bytes(), stolen)


def test_an_object_sealed_to_the_old_key_before_a_revocation_committed_is_not_recorded(
        sealed: Cli, tmp_path: Path) -> None:
    """An ingest seals its object before it takes the write lock; a revocation committed in
    between (another process) makes that batch refused, nothing recorded; run again, the object
    is sealed to the new key."""
    cli = copy_archive(sealed, tmp_path)
    archive = Archive.open(cli.archive)
    alice = load_key(cli.key, PASSPHRASE)
    with LATER.open("rb") as stream:
        archive.objects.put(stream)  # sealed to epoch 0, as an ingest does before the lock
    cli("revoke", "Bob Field", "--reason", "laptop seized", check=True)
    before = archive.ledger.size()
    with MetadataReader() as reader, LATER.open("rb") as stream, \
            pytest.raises(ArchiveError, match="content key changed"):
        ingest_stream(archive, alice, reader, stream, Claims(name=LATER.name))
    assert Archive.open(cli.archive).ledger.size() == before
    cli("ingest", LATER, check=True)
    stolen = _revoked_identities(cli.archive, tmp_path / "keys" / "bob.key")
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(_sealed_parts(cli.archive, LATER_ITEM)["content"], stolen)


def test_verify_refuses_a_content_key_epoch_out_of_order_or_outside_a_revoke(
        sealed: Cli, tmp_path: Path) -> None:
    cli = copy_archive(sealed, tmp_path)
    archive = Archive.open(cli.archive)
    alice = load_key(cli.key, PASSPHRASE)
    bob = load_key(tmp_path / "keys" / "bob.key", PASSPHRASE)

    def epoch(n: int) -> dict[str, Any]:
        return {"scheme": "age-v1-x25519", "epoch": n,
                "recipient": str(pyrage.x25519.Identity.generate().to_public())}

    archive.append(alice, [Draft("revoke", None, {"key_id": bob.key_id, "name": "Bob Field",
                                                  "reason": "x", "sealing": epoch(3)})])
    archive.append(alice, [Draft("tag", ITEM, {"tag": "t", "sealing": epoch(1)})])
    report = cli("verify", "--json", env=NO_KEY)
    assert report.code == 1
    problems = [p for p in report.json()["problems"] if "sealing-epoch" in p]
    assert len(problems) == 2 and "next epoch is 1" in problems[0]
    assert "only a revoke may" in problems[1]
