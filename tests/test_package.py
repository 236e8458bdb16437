"""Evidence packages through the real command line: export a case of real photos and videos,
verify it offline (with custody, the bagit library and plain tools), import it elsewhere, and a
tamper matrix in which every damaged package is refused and nothing is imported."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import bagit
import pytest

from custody.core import note
from custody.core.signing import SigningKey
from custody.ops.archive import Archive

from .conftest import DATA, Cli, one_line_error

MEDIA = [DATA / "media" / n for n in ("aleppo-gps.jpg", "carbon-south-west.jpg",
                                      "homs-loci.mp4", "douma-xyz.mov", "damascus-apple-keys.mov")]
CASE = "ALEPPO-2016"
REPO = Path(__file__).parent.parent


def _log(cli, *args):
    return [json.loads(x) for x in cli("log", "--json", *args, check=True).stdout.splitlines()]


def make_sender(tmp: Path) -> Cli:
    """Archive A: Alice (admin) enrols Farah (field), Ivan (investigator) and Rami (reviewer);
    Farah ingests the media under a case; Ivan takes one item into custody; a note."""
    cli = Cli(tmp, tmp / "A", tmp / "keys" / "alice.key")
    cli("key", "new", "--name", "Alice Admin", check=True)
    cli("init", "--name", "Syrian Documentation Centre", check=True)
    keys = {}
    for name, role in [("Farah Field", "field"), ("Ivan Investigator", "investigator"),
                       ("Rami Reviewer", "reviewer")]:
        path = tmp / "keys" / (name.split()[0].lower() + ".key")
        info = cli("key", "new", "--name", name, "-o", path, "--json", check=True).json()
        cli("enroll", str(path) + ".pub", "--role", role, check=True)
        keys[name.split()[0].lower()] = (path, info["key_id"])
    cli.keys = keys
    cli.as_ = lambda who: {"CUSTODY_KEY": str(keys[who][0])}
    card = tmp / "card"
    card.mkdir()
    for m in MEDIA:
        shutil.copy(m, card / m.name.upper())  # names as a camera writes them
    cli("ingest", card, "--case", CASE, env=cli.as_("farah"), check=True)
    video = hashlib.sha256(MEDIA[2].read_bytes()).hexdigest()
    offer = cli("transfer", video[:12], "--to", "Ivan Investigator", "--purpose", "analysis",
                "--json", check=True).json()
    cli("accept", str(offer[0]["offer"]), env=cli.as_("ivan"), check=True)
    cli("note", video[:12], "--text", "second strike, 11:22 local", env=cli.as_("ivan"),
        check=True)
    return cli


@pytest.fixture(scope="module")
def sender(tmp_path_factory) -> Cli:
    return make_sender(tmp_path_factory.mktemp("sender"))


@pytest.fixture(scope="module")
def package(sender) -> Path:
    out = sender.tmp / "packages" / "aleppo"
    out.parent.mkdir()
    sender("export", "--case", CASE, "--purpose", "hand-over to the UN mechanism", "-o", out,
           env=sender.as_("ivan"), check=True)
    return out


@pytest.fixture(scope="module")
def verifier_key(sender) -> str:
    return sender("checkpoint", "--json", check=True).json()["verifier_key"]


@pytest.fixture(scope="module")
def receiver(tmp_path_factory) -> Cli:
    tmp = tmp_path_factory.mktemp("receiver")
    cli = Cli(tmp, tmp / "B", tmp / "keys" / "bob.key")
    cli("key", "new", "--name", "Bob Investigator", check=True)
    cli("init", "--name", "UN Mechanism", check=True)
    return cli


def state(archive_path: Path) -> tuple[int, list[str], list[str]]:
    """What an import may change: the ledger's size, the stored objects, temp files."""
    a = Archive.open(archive_path)
    return a.ledger.size(), sorted(a.objects), a.objects.unfinished_writes()


def offline(cli: Cli, *args) -> object:
    """Run custody with no archive anywhere near (verify-package needs none)."""
    return cli(*args, env={"CUSTODY_ARCHIVE": str(cli.tmp / "no-such-archive")})


# Export ------------------------------------------------------------------------------------------


@pytest.mark.quick  # the quick suite's smoke test of this area
def test_export_writes_a_bagit_1_0_bag_that_bagit_python_validates(package, sender):
    assert (package / "bagit.txt").read_text() == (
        "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    bag = bagit.Bag(str(package))
    assert bag.version_info == (1, 0)
    assert set(bag.algorithms) == {"sha256", "sha512"}
    bag.validate()  # the library's own validator: fixity, completeness, Payload-Oxum
    proc = subprocess.run([sys.executable, "-m", "bagit", "--validate", str(package)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # the files are named so a person finds them; the manifest maps them to their digests
    names = sorted(p.name for p in (package / "data" / CASE).iterdir())
    assert names == sorted(m.name.upper() for m in MEDIA)
    manifest = (package / "manifest-sha256.txt").read_text().splitlines()
    assert sorted(manifest) == sorted(
        f"{hashlib.sha256(m.read_bytes()).hexdigest()}  data/{CASE}/{m.name.upper()}"
        for m in MEDIA)
    info = (package / "bag-info.txt").read_text()
    assert "Custody-Exported-By: Ivan Investigator" in info
    assert "Custody-Purpose: hand-over to the UN mechanism" in info
    assert "Source-Organization: Syrian Documentation Centre" in info


def test_the_export_is_an_access_entry_per_item_in_the_sending_archive(package, sender):
    log = _log(sender)
    exports = [e for e in log if e["action"] == "access" and e["details"]["kind"] == "export"]
    assert len(exports) == len(MEDIA)
    assert {e["actor"] for e in exports} == {sender.keys["ivan"][1]}
    assert {e["details"]["purpose"] for e in exports} == {"hand-over to the UN mechanism"}
    assert {e["details"]["destination"] for e in exports} == {str(package.absolute())}
    sender("verify", check=True)


def test_an_exports_access_entries_land_in_one_transaction_before_any_content_is_read(
        package, sender):
    """One transaction (one fsync), not one per item: the entries are consecutive and carry the
    one time their transaction read; and they precede the package's checkpoint."""
    exports = [e for e in _log(sender)
               if e["action"] == "access" and e["details"]["kind"] == "export"]
    assert [e["seq"] for e in exports] == list(range(exports[0]["seq"],
                                                     exports[0]["seq"] + len(MEDIA)))
    assert len({e["time"] for e in exports}) == 1
    statement = json.loads((package / "custody" / "package.json").read_text())
    assert exports[-1]["seq"] < statement["checkpoint"]["size"]


def test_a_wrong_archive_passphrase_stops_the_export_before_any_access_is_logged(sender,
                                                                                 tmp_path):
    """The archive key opens in a child process beside the custodian's: still before any access
    is logged, and its error is the one-line error of opening it in place."""
    size = len(_log(sender))
    r = sender("export", "--case", CASE, "--purpose", "p", "-o", tmp_path / "bag",
               env={**sender.as_("ivan"), "CUSTODY_ARCHIVE_PASSPHRASE": "not the archive's"})
    assert r.code == 3 and "wrong passphrase" in one_line_error(r)
    assert len(_log(sender)) == size and not list(tmp_path.iterdir())


def test_the_package_carries_each_items_full_history_with_proofs_and_keys(package, sender):
    statement = json.loads((package / "custody" / "package.json").read_text())
    ledger = [json.loads(x) for x in (package / "custody" / "ledger.jsonl").read_text().splitlines()]
    carried = {row["seq"] for row in ledger}
    for item in statement["items"]:
        history = [e["seq"] for e in _log(sender, item["sha256"])]
        assert item["entries"] == [s for s in history if s in carried]
        assert set(history) <= carried  # the whole history, export accesses included
    registry = [e["seq"] for e in _log(sender) if e["action"] in ("init", "enroll", "revoke")]
    assert statement["registry"] == registry
    proofs = json.loads((package / "custody" / "proofs.json").read_text())
    assert {p["leaf_index"] for p in proofs["proofs"]} == carried
    keys = json.loads((package / "custody" / "keys.json").read_text())
    assert {c["name"] for c in keys["custodians"]} >= {"Alice Admin", "Farah Field",
                                                       "Ivan Investigator"}
    assert all("PRIVATE" not in p.read_text(errors="replace")
               for p in package.rglob("*") if p.is_file())


def test_zip_and_tar_exports_verify_and_unpack_into_one_folder(sender, tmp_path):
    import tarfile
    import zipfile

    for suffix in (".zip", ".tar"):
        out = tmp_path / f"aleppo{suffix}"
        sender("export", "--case", CASE, "--purpose", "court copy", "-o", out,
               env=sender.as_("ivan"), check=True)
        names = (zipfile.ZipFile(out).namelist() if suffix == ".zip"
                 else tarfile.open(out).getnames())
        assert {n.split("/")[0] for n in names} == {"aleppo"}
        r = offline(sender, "verify-package", out, "--json")
        assert r.code == 0, r.stderr
        assert r.json()["ok"] and len(r.json()["items"]) == len(MEDIA)
    assert not list(tmp_path.glob(".custody-unpack-*"))


def test_export_refusals(sender, tmp_path):
    item = hashlib.sha256(MEDIA[0].read_bytes()).hexdigest()
    before = len(_log(sender))
    r = sender("export", item[:12], "--purpose", "curious", "-o", tmp_path / "p",
               env=sender.as_("rami"))
    assert r.code == 3 and "may not export" in one_line_error(r)
    log = _log(sender)
    assert len(log) == before + 1 and log[-1]["action"] == "refused"
    assert log[-1]["details"]["attempted"] == "export"
    r = sender("export", item[:12], "--purpose", "x", "-o", tmp_path / "q", env=sender.as_("farah"))
    assert r.code == 3 and "may not" in one_line_error(r)
    r = sender("export", item[:12], "--purpose", " ", "-o", tmp_path / "p", env=sender.as_("ivan"))
    assert r.code == 2 and "purpose" in one_line_error(r)
    (tmp_path / "exists").mkdir()
    r = sender("export", item[:12], "--purpose", "p", "-o", tmp_path / "exists",
               env=sender.as_("ivan"))
    assert r.code == 3 and "already exists" in one_line_error(r)
    r = sender("export", "--case", "NO-SUCH-CASE", "--purpose", "p", "-o", tmp_path / "n",
               env=sender.as_("ivan"))
    assert r.code == 3 and "no items" in one_line_error(r)
    assert not (tmp_path / "p").exists() and not list(tmp_path.glob(".*partial*"))
    r = sender("import", tmp_path / "whatever", env=sender.as_("rami"))
    assert r.code == 3 and "may not import" in one_line_error(r)


def test_a_corrupt_object_aborts_the_export_and_leaves_no_package(tmp_path):
    cli = Cli(tmp_path, tmp_path / "A", tmp_path / "alice.key")
    cli("key", "new", "--name", "Alice Admin", check=True)
    cli("init", "--name", "Org", check=True)
    cli("ingest", MEDIA[0], check=True)
    item = hashlib.sha256(MEDIA[0].read_bytes()).hexdigest()
    obj = tmp_path / "A" / "objects" / "sha256" / item[:2] / item
    obj.chmod(0o644)
    data = bytearray(obj.read_bytes())
    data[100] ^= 1
    obj.write_bytes(bytes(data))
    r = cli("export", item[:12], "--purpose", "p", "-o", tmp_path / "out.zip")
    assert r.code == 1 and "corrupt" in one_line_error(r)
    assert not (tmp_path / "out.zip").exists() and not list(tmp_path.glob(".out.zip*"))


# Offline verification ------------------------------------------------------------------------------


def test_verify_package_needs_no_archive_and_pinning_says_where_it_is_from(package, sender,
                                                                          verifier_key):
    r = offline(sender, "verify-package", package, "--json")
    assert r.code == 0, r.stderr
    report = r.json()
    assert report["ok"] and not report["pinned"] and "internally consistent" in report["verdict"]
    assert report["exported_by"]["name"] == "Ivan Investigator"
    assert report["archive"]["verifier_key"] == verifier_key
    digest = hashlib.sha256((package / "tagmanifest-sha256.txt").read_bytes()).hexdigest()
    assert report["package_sha256"] == digest
    r = offline(sender, "verify-package", package, "--archive-key", verifier_key)
    assert r.code == 0 and "from the archive whose key you pinned" in r.stdout


def test_a_package_from_another_archive_fails_only_when_the_key_is_pinned(tmp_path, verifier_key):
    """Someone rebuilds the same evidence in an archive of their own: internally consistent,
    but not from the archive the receiver trusts."""
    other = Cli(tmp_path, tmp_path / "X", tmp_path / "mallory.key")
    other("key", "new", "--name", "Mallory", check=True)
    other("init", "--name", "Syrian Documentation Centre", check=True)
    other("ingest", *MEDIA, "--case", CASE, check=True)
    other("export", "--case", CASE, "--purpose", "p", "-o", tmp_path / "fake", check=True)
    assert offline(other, "verify-package", tmp_path / "fake").code == 0
    r = offline(other, "verify-package", tmp_path / "fake", "--archive-key", verifier_key)
    assert r.code == 1 and "not the pinned one" in one_line_error(r)


def test_an_outsider_checks_the_package_with_standard_tools(package, tmp_path):
    """docs/VERIFYING.md, followed literally: sha256sum -c, its Python script, openssl."""
    proc = subprocess.run(["sha256sum", "--quiet", "-c", "manifest-sha256.txt"], cwd=package,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = (REPO / "docs" / "VERIFYING.md").read_text()
    script = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "check.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "check.py"), str(package)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all entries are in the checkpoint" in proc.stdout
    if shutil.which("openssl") is None:
        pytest.skip("no openssl")
    shell = re.search(r"```sh\n# openssl: one entry's signature\n(.*?)```", doc, re.S).group(1)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", shell], cwd=package,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "Signature Verified Successfully" in proc.stdout, (
        proc.stdout + proc.stderr)


# Import ------------------------------------------------------------------------------------------


def test_round_trip_export_verify_import_and_the_history_travels(package, sender, receiver):
    assert offline(sender, "verify-package", package).code == 0
    r = receiver("import", package, "--case", "UN-2024-7", "--json")
    assert r.code == 0, r.stderr
    done = r.json()
    assert done["received"] == len(MEDIA) and done["present"] == 0
    receiver("verify", check=True)
    r = receiver("verify", "--json", check=True)
    assert r.json()["notices"] == []  # the kept evidence objects are accounted for

    video = hashlib.sha256(MEDIA[2].read_bytes()).hexdigest()
    shown = receiver("show", video, "--json", check=True).json()
    assert shown["history"][0]["action"] == "received"
    assert shown["history"][0]["actor_name"] == "Bob Investigator"
    assert shown["names"] == ["HOMS-LOCI.MP4"] and "UN-2024-7" in shown["cases"]
    assert shown["mime"] == "video/mp4" and shown["gps"] is not None
    source = shown["history"][0]["details"]["source"]
    assert source["archive"] == "Syrian Documentation Centre"
    assert source["package_sha256"] == done["package_sha256"]
    assert source["checkpoint"] == (package / "custody" / "checkpoint.txt").read_text()

    # the sender's history, kept as evidence, re-verified, entry for entry as A signed it
    prov = receiver("provenance", video[:12], "--json", check=True).json()
    (receipt,) = prov["receipts"]
    assert receipt["verified"] and receipt["problems"] == []
    theirs = {e["seq"]: e["signature"] for e in _log(sender, video)}
    kept = {h["seq"]: h["signature"] for h in receipt["sender_history"]}
    assert kept == {s: sig for s, sig in theirs.items() if s in kept}
    actions = [h["action"] for h in receipt["sender_history"]]
    assert actions[:4] == ["ingest", "transfer-offer", "transfer-accept", "note"]
    assert "access" in actions

    # the received object is the sender's byte for byte, readable with a logged get
    out = receiver.tmp / "copy.mp4"
    receiver("get", video[:12], "--purpose", "analysis", "-o", out, check=True)
    assert out.read_bytes() == MEDIA[2].read_bytes()

    # a received item travels on: B's own package verifies, its first record the receipt
    onward = receiver.tmp / "onward.tar"
    receiver("export", video[:12], "--purpose", "to the prosecutor", "-o", onward, check=True)
    r = offline(receiver, "verify-package", onward, "--json")
    assert r.code == 0, r.stdout
    assert r.json()["items"][0]["first_record"] == "received"

    # importing the same package again records sightings, not second receipts
    again = receiver("import", package, "--json", check=True).json()
    assert again["received"] == 0 and again["present"] == len(MEDIA)
    receiver("verify", check=True)


def test_kept_evidence_is_checked_by_verify_and_provenance(package, tmp_path):
    b = Cli(tmp_path, tmp_path / "B", tmp_path / "bob.key")
    b("key", "new", "--name", "Bob Admin", check=True)
    b("init", "--name", "Receiver", check=True)
    done = b("import", package, "--json", check=True).json()
    item = done["items"][0]["sha256"]
    shown = b("show", item, "--json", check=True).json()
    kept = shown["history"][0]["details"]["evidence"]["custody/ledger.jsonl"]
    obj = tmp_path / "B" / "objects" / "sha256" / kept[:2] / kept
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes().replace(b'"seq":1', b'"seq":2', 1))
    r = b("verify")
    assert r.code == 1 and "evidence kept by entry" in r.stdout
    r = b("provenance", item[:12])
    assert r.code == 1 and "corrupt" in one_line_error(r)


def test_import_pinned_to_another_key_imports_nothing(package, receiver, tmp_path):
    other = SigningKey.generate("other")
    vkey = str(note.make_verifier("custody.archive/" + "0" * 32, other.public.raw))
    before = state(receiver.archive)
    r = receiver("import", package, "--archive-key", vkey)
    assert r.code == 1 and "not the pinned one" in one_line_error(r)
    assert state(receiver.archive) == before


# Tamper matrix -------------------------------------------------------------------------------------


def rebag(bag: Path, payload: bool = False) -> None:
    """What a careful forger does after a change: recompute the BagIt manifests, so only the
    signatures and proofs can tell."""
    for alg in ("sha256", "sha512"):
        if payload:
            files = sorted(p for p in (bag / "data").rglob("*") if p.is_file())
            (bag / f"manifest-{alg}.txt").write_text("".join(
                f"{hashlib.new(alg, p.read_bytes()).hexdigest()}  {p.relative_to(bag)}\n"
                for p in files))
    for alg in ("sha256", "sha512"):
        tags = sorted(p for p in bag.rglob("*") if p.is_file() and "data" not in
                      p.relative_to(bag).parts[:1] and not p.name.startswith("tagmanifest-"))
        (bag / f"tagmanifest-{alg}.txt").write_text("".join(
            f"{hashlib.new(alg, p.read_bytes()).hexdigest()} {p.relative_to(bag)}\n"
            for p in tags))


def _flip_payload_byte(bag: Path) -> None:
    f = next((bag / "data" / CASE).glob("HOMS*"))
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))


def _change_metadata(bag: Path) -> None:
    f = next((bag / "custody" / "metadata").glob("*.json"))
    f.write_text(re.sub(r'"lat":[-0-9.]+', '"lat":12.3456', f.read_text(), count=1))
    assert '"lat":12.3456' in f.read_text()
    rebag(bag)


def _remove_ledger_entry(bag: Path) -> None:
    f = bag / "custody" / "ledger.jsonl"
    lines = f.read_text().splitlines(keepends=True)
    victim = next(i for i, x in enumerate(lines)
                  if b'"action":"access"' in base64.b64decode(json.loads(x)["entry"]))
    f.write_text("".join(lines[:victim] + lines[victim + 1:]))
    rebag(bag)


def _swap_proofs(bag: Path) -> None:
    f = bag / "custody" / "proofs.json"
    doc = json.loads(f.read_text())
    a, b = doc["proofs"][3], doc["proofs"][4]
    a["proof"], b["proof"] = b["proof"], a["proof"]
    f.write_text(json.dumps(doc, indent=2))
    rebag(bag)


def _resign_checkpoint(bag: Path) -> None:
    f = bag / "custody" / "checkpoint.txt"
    body = f.read_text().split("\n\n", 1)[0] + "\n"
    origin = body.splitlines()[0]
    forger = SigningKey.generate("forger")
    f.write_text(note.sign_note(body, origin, forger))
    rebag(bag)


TAMPER = {
    "payload-byte": (_flip_payload_byte, "sha256 mismatch"),
    "payload-byte-rebagged": (lambda b: (_flip_payload_byte(b), rebag(b, payload=True)),
                              "SHA-256 is not the item's"),
    "metadata-file": (_change_metadata, "does not match the metadata digest"),
    "ledger-entry-removed": (_remove_ledger_entry, "differs from what the exporter signed"),
    "proofs-swapped": (_swap_proofs, "inclusion proof does not verify"),
    "checkpoint-resigned": (_resign_checkpoint, "no signature by a known key"),
}


@pytest.mark.parametrize("damage", sorted(TAMPER))
def test_tamper_matrix_verify_fails_and_import_writes_nothing(damage, package, receiver, tmp_path):
    bag = tmp_path / "bag"
    shutil.copytree(package, bag)
    harm, expected = TAMPER[damage]
    harm(bag)
    r = offline(receiver, "verify-package", bag, "--json")
    assert r.code == 1, r.stdout
    problems = r.json()["problems"]
    assert any(expected in p for p in problems), problems
    assert "verification failed" in one_line_error(r)
    before = state(receiver.archive)
    r = receiver("import", bag)
    assert r.code == 1 and "verification failed" in one_line_error(r)
    assert state(receiver.archive) == before


def test_every_new_command_is_in_the_cli_docs():
    doc = (REPO / "docs" / "CLI.md").read_text()
    for name in ("export", "verify-package", "import", "provenance"):
        assert f"custody {name}" in doc


def test_payload_names_are_safe_readable_and_never_collide():
    from custody.package.layout import payload_paths, safe_name

    a, b, c, d = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    paths = payload_paths([(a, "ALEPPO/2016", "IMG_0001.JPG"), (b, "ALEPPO/2016", "img_0001.jpg"),
                           (c, None, "../../etc/passwd"), (d, None, None)])
    assert paths[a] == "data/ALEPPO_2016/IMG_0001.JPG"
    assert paths[b] == f"data/ALEPPO_2016/img_0001.{b[:12]}.jpg"  # same name but for case
    assert paths[c] == "data/_.._etc_passwd"  # one harmless component, no traversal
    assert paths[d] == f"data/{d}"
    assert safe_name("CON.txt", "x") == "_CON.txt" and safe_name("100%.jpg", "x") == "100_.jpg"
    assert safe_name("e\u0301.jpg", "x") == "\u00e9.jpg"  # NFC
    assert safe_name(" .hidden. ", "x") == "hidden"
    long = safe_name("ب" * 300 + ".mp4", "x")
    assert long.endswith(".mp4") and len(long.encode()) <= 180


def test_tag_file_json_is_byte_for_byte_what_json_dumps_writes():
    """keys.json, items.json and proofs.json are written by orjson for speed; their bytes stay
    json.dumps(indent=2, ensure_ascii=False, sort_keys=True)'s for every value, those orjson
    writes otherwise included (exponents, tiny floats, integers beyond 64 bits)."""
    import datetime

    from custody.package.layout import json_bytes

    values = [
        {"proofs": [{"leaf_index": 7, "proof": ["q83vEjRWeJA=", "AA=="]}], "tree_size": 9,
         "b": [], "a": {}, "é": "naïve \u2028 \x1f \x7f \"quoted\" \\ back"},
        {"gps": [51.507351, -0.1277583, 0.0, -0.0, 12345678.9, 0.1]},
        {"tiny": 1e-05}, {"huge": 1e16}, {"exp": [1.5e300, 2.5e-300]}, {"big": 2 ** 70},
        {"text mentions 1e5 and 0.00001": "1e-07"}, [], {}, "plain", 3, None, True,
        {"nan": float("nan")}, {"inf": [float("inf"), -float("inf")]}, {1: "int key"},
    ]
    for value in values:
        expected = (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
        assert json_bytes(value) == expected.encode()
    with pytest.raises(TypeError):  # a type json cannot write (orjson would): refused as before
        json_bytes({"when": datetime.date(2016, 10, 4)})
