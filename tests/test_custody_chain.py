"""Logged access, roles, custody transfer, cases and the per-item chain of custody, walked as a
real story through the real command line."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from custody.ops import access
from custody.ops.archive import Archive, Draft
from custody.ops.keyfiles import load_key
from custody.ops.verify import audit

from .conftest import DATA, PASSPHRASE, Cli, copy_archive, one_line_error

PHOTO = DATA / "media" / "aleppo-gps.jpg"
VIDEO = DATA / "media" / "homs-loci.mp4"


@pytest.fixture(scope="module")
def _team(tmp_path_factory, session_made_key):
    """Made once per module: Alice (admin) enrols Farah (field), Ivan and Jana (investigators),
    Rami (reviewer)."""
    tmp = tmp_path_factory.mktemp("team")
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    session_made_key(cli.key, "Alice Admin")
    cli("init", "--name", "Test Documentation Centre", check=True)
    for name, role in TEAM:
        path = tmp / "keys" / (name.split()[0].lower() + ".key")
        session_made_key(path, name)
        cli("enroll", str(path) + ".pub", "--role", role, check=True)
    return cli


TEAM = [("Farah Field", "field"), ("Ivan Investigator", "investigator"),
        ("Jana Investigator", "investigator"), ("Rami Reviewer", "reviewer")]


@pytest.fixture
def team(_team, tmp_path, made_key):
    """This test's own copy of the team's archive and keys (`cli.keys`: who -> (path, key id))."""
    cli = copy_archive(_team, tmp_path)
    keys = {}
    for name, _role in TEAM:
        path = tmp_path / "keys" / (name.split()[0].lower() + ".key")
        keys[name.split()[0].lower()] = (path, made_key(path, name).key_id)
    cli.keys = keys
    cli.as_ = lambda who: {"CUSTODY_KEY": str(keys[who][0])}
    return cli


def _log(cli, item=None):
    args = ["log", "--json"] + ([item] if item else [])
    return [json.loads(x) for x in cli(*args, check=True).stdout.splitlines()]


def test_the_story_of_one_photo(team, tmp_path):
    cli = team
    (tmp_path / "card").mkdir()
    (tmp_path / "card" / "IMG_0001.JPG").write_bytes(PHOTO.read_bytes())
    cli("ingest", tmp_path / "card", "--case", "ALEPPO-2016", env=cli.as_("farah"), check=True)
    item = hashlib.sha256(PHOTO.read_bytes()).hexdigest()

    out = tmp_path / "copy.jpg"
    cli("get", item[:12], "--purpose", "geolocation check for the M10 dossier", "-o", out,
        env=cli.as_("ivan"), check=True)
    assert out.read_bytes() == PHOTO.read_bytes()

    offer = cli("transfer", item[:12], "--to", cli.keys["jana"][1][:10], "--purpose",
                "handover to the legal team", "--json", env=cli.as_("ivan"), check=True).json()
    pending = cli("transfers", "--pending", "--json", check=True).json()
    assert [p["offer"] for p in pending] == [offer[0]["offer"]]
    # only the receiver may accept
    wrong = cli("accept", str(offer[0]["offer"]), env=cli.as_("ivan"))
    assert wrong.code == 3 and "made to someone else" in one_line_error(wrong)
    cli("accept", str(offer[0]["offer"]), env=cli.as_("jana"), check=True)
    cli("note", item[:12], "--text", "مستشفى M10، حلب — الضربة الثانية", env=cli.as_("jana"),
        check=True)
    cli("verify", "--record", env=cli.as_("rami"), check=True)

    history = _log(cli, item)
    names = {k: v[1] for k, v in cli.keys.items()}
    got = [(h["action"], h["actor"]) for h in history]
    assert got == [
        ("ingest", names["farah"]),
        ("access", names["ivan"]),
        ("transfer-offer", names["ivan"]),
        ("refused", names["ivan"]),
        ("transfer-accept", names["jana"]),
        ("note", names["jana"]),
    ]
    assert history[1]["details"]["purpose"] == "geolocation check for the M10 dossier"
    assert history[1]["details"]["destination"] == str(out.absolute())
    assert history[2]["details"]["to"] == names["jana"]
    assert history[4]["details"]["offer"] == history[2]["seq"]

    shown = cli("show", item, "--json", env=cli.as_("rami"), check=True).json()
    assert [h["holder_after"] for h in shown["history"]] == [
        "archive", "archive", "archive", "archive", names["jana"], names["jana"]]
    assert shown["holder"]["holder"] == names["jana"]
    assert [p["holder"] for p in shown["holders"]] == ["archive", names["jana"]]
    assert shown["cases"] == ["ALEPPO-2016"]
    assert shown["notes"][-1]["text"] == "مستشفى M10، حلب — الضربة الثانية"
    assert shown["accesses"][0]["by"] == "Ivan Investigator"
    log = _log(cli)
    assert log[-1]["action"] == "verification" and log[-1]["details"]["ok"] is True
    assert log[-1]["actor"] == names["rami"]
    cli("verify", check=True)


@pytest.mark.parametrize(
    ("who", "args", "attempted"),
    [
        ("farah", ["get", "ITEM", "--purpose", "curious", "-o", "OUT"], "get"),
        ("rami", ["ingest", "FILE"], "ingest"),
        ("rami", ["transfer", "ITEM", "--to", "Ivan Investigator", "--purpose", "x"], "transfer"),
        ("farah", ["case", "add", "ITEM", "--case", "C2"], "case-add"),
        ("ivan", ["enroll", "PUB", "--role", "admin"], "enroll"),
        ("jana", ["revoke", "Farah Field", "--reason", "x"], "revoke"),
        ("rami", ["tag", "ITEM", "important"], "tag"),
    ],
)
def test_each_role_is_refused_what_it_may_not_do_and_the_refusal_is_logged(
        team, tmp_path, who, args, attempted):
    cli = team
    f = tmp_path / "evidence.bin"
    f.write_bytes(b"evidence for the refusal tests")
    cli("ingest", f, env=cli.as_("ivan"), check=True)
    item = hashlib.sha256(f.read_bytes()).hexdigest()
    subst = {"ITEM": item[:12], "OUT": str(tmp_path / "o.bin"), "FILE": str(f),
             "PUB": str(cli.keys["farah"][0]) + ".pub"}
    before = len(_log(cli))
    r = cli(*[subst.get(a, a) for a in args], env=cli.as_(who))
    assert r.code == 3, r.stderr
    assert "may not" in one_line_error(r)
    assert not (tmp_path / "o.bin").exists()
    log = _log(cli)
    assert len(log) == before + 1
    assert log[-1]["action"] == "refused" and log[-1]["actor"] == cli.keys[who][1]
    assert log[-1]["details"]["attempted"] == attempted
    cli("verify", check=True)


def test_get_needs_a_purpose_and_never_overwrites(team, tmp_path):
    cli = team
    cli("ingest", PHOTO, env=cli.as_("ivan"), check=True)
    item = hashlib.sha256(PHOTO.read_bytes()).hexdigest()[:12]
    (tmp_path / "exists.jpg").write_bytes(b"mine")
    r = cli("get", item, "--purpose", " ", "-o", tmp_path / "x.jpg", env=cli.as_("ivan"))
    assert r.code == 2 and "purpose" in one_line_error(r)
    r = cli("get", item, "--purpose", "p", "-o", tmp_path / "exists.jpg", env=cli.as_("ivan"))
    assert r.code == 3 and "already exists" in one_line_error(r)
    assert (tmp_path / "exists.jpg").read_bytes() == b"mine"


def test_a_corrupt_object_never_reaches_the_destination(team, tmp_path):
    cli = team
    cli("ingest", PHOTO, env=cli.as_("ivan"), check=True)
    item = hashlib.sha256(PHOTO.read_bytes()).hexdigest()
    path = cli.archive / "objects" / "sha256" / item[:2] / item
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    r = cli("get", item, "--purpose", "court copy", "-o", tmp_path / "c.jpg", env=cli.as_("ivan"))
    assert r.code == 1 and "corrupt" in one_line_error(r)
    assert not (tmp_path / "c.jpg").exists()
    assert not list(tmp_path.glob(".c.jpg*"))


def test_revoked_key_old_entries_verify_new_ones_are_refused(team, tmp_path):
    cli = team
    (tmp_path / "a.bin").write_bytes(b"before revocation")
    cli("ingest", tmp_path / "a.bin", env=cli.as_("farah"), check=True)
    cli("revoke", cli.keys["farah"][1][:10], "--reason", "phone seized at checkpoint", check=True)
    (tmp_path / "b.bin").write_bytes(b"after revocation")
    r = cli("ingest", tmp_path / "b.bin", env=cli.as_("farah"))
    assert r.code == 3 and "revoked" in one_line_error(r)
    cli("verify", check=True)  # her earlier ingest still verifies
    # a new entry forced in through the library, with her real key, is caught by verify
    archive = Archive.open(cli.archive)
    farah = load_key(cli.keys["farah"][0], PASSPHRASE)
    archive.append(farah, [Draft("note", hashlib.sha256(b"before revocation").hexdigest(),
                                 {"text": "written after revocation", "supersedes": None})],
                   check_signer=False)
    v = cli("verify")
    assert v.code == 1 and "not an enrolled custodian at that point" in v.stdout


def test_verify_catches_role_and_chain_violations_made_through_the_library(team, tmp_path):
    cli = team
    cli("ingest", PHOTO, env=cli.as_("ivan"), check=True)
    item = hashlib.sha256(PHOTO.read_bytes()).hexdigest()
    archive = Archive.open(cli.archive)
    rami = load_key(cli.keys["rami"][0], PASSPHRASE)
    jana = load_key(cli.keys["jana"][0], PASSPHRASE)
    archive.append(rami, [Draft("case-add", item, {"case": "X"})], check_signer=False)
    archive.append(jana, [Draft("transfer-offer", item, {"to": rami.key_id, "purpose": "p",
                                                         "group": "g"})], check_signer=False)
    v = cli("verify")
    assert v.code == 1
    assert "(role reviewer) may not sign a case-add entry" in v.stdout
    assert "is not its holder" in v.stdout


def test_withdraw_and_second_offer(team, tmp_path):
    cli = team
    cli("ingest", VIDEO, env=cli.as_("ivan"), check=True)
    item = hashlib.sha256(VIDEO.read_bytes()).hexdigest()[:12]
    o1 = cli("transfer", item, "--to", "Jana Investigator", "--purpose", "a", "--json",
             env=cli.as_("ivan"), check=True).json()[0]["offer"]
    again = cli("transfer", item, "--to", "Jana Investigator", "--purpose", "b",
                env=cli.as_("ivan"))
    assert again.code == 3 and "pending offer" in one_line_error(again)
    cli("withdraw", str(o1), env=cli.as_("ivan"), check=True)
    late = cli("accept", str(o1), env=cli.as_("jana"))
    assert late.code == 2 and "withdrawn" in one_line_error(late)
    states = {t["offer"]: t["state"] for t in cli("transfers", "--json", check=True).json()}
    assert states[o1] == "withdrawn"
    cli("verify", check=True)


def test_accepting_an_accepted_offer_again_reports_the_earlier_acceptance(team):
    """A retry after a crash or a lost reply: the receiver repeating `accept` is told it is done
    (exit 0, the same entry), and nothing is appended; anyone else is still refused."""
    cli = team
    cli("ingest", VIDEO, env=cli.as_("ivan"), check=True)
    item = hashlib.sha256(VIDEO.read_bytes()).hexdigest()[:12]
    offer = cli("transfer", item, "--to", "Jana Investigator", "--purpose", "a", "--json",
                env=cli.as_("ivan"), check=True).json()[0]["offer"]
    first = cli("accept", str(offer), "--json", env=cli.as_("jana"), check=True).json()
    size = len(_log(cli))
    again = cli("accept", str(offer), "--json", env=cli.as_("jana"), check=True).json()
    assert [a["seq"] for a in again] == [f["seq"] for f in first]
    assert again[0]["already"] is True
    assert len(_log(cli)) == size
    other = cli("accept", str(offer), env=cli.as_("ivan"))
    assert other.code == 2 and "already accepted" in one_line_error(other)
    cli("verify", check=True)


def test_incidents_and_corrections_keep_both_statements(team, tmp_path):
    cli = team
    cli("ingest", PHOTO, VIDEO, env=cli.as_("ivan"), check=True)
    p, v = (hashlib.sha256(x.read_bytes()).hexdigest() for x in (PHOTO, VIDEO))
    first = cli("incident", "new", "M10-2016-10-03", "--date", "2016-10-02", "--case", "ALEPPO",
                "--place", "36.2021,37.1343,M10 hospital", "--description", "strike on M10",
                "--json", env=cli.as_("ivan"), check=True).json()["entries"][0]
    cli("incident", "new", "M10-2016-10-03", "--date", "2016-10-03", "--case", "ALEPPO",
        "--place", "36.2021,37.1343,M10 hospital", "--description", "strike on the M10 hospital",
        "--supersedes", str(first), env=cli.as_("ivan"), check=True)
    cli("incident", "add", "M10-2016-10-03", p[:12], v[:12], env=cli.as_("ivan"), check=True)
    incidents = cli("incident", "list", "--json", check=True).json()
    assert len(incidents) == 1 and incidents[0]["date"] == "2016-10-03"
    assert incidents[0]["supersedes"] == first and sorted(incidents[0]["items"]) == sorted([p, v])
    bad = cli("incident", "new", "X", "--date", "yesterday", "--description", "d",
              env=cli.as_("ivan"))
    assert bad.code == 2 and "not YYYY-MM-DD" in one_line_error(bad)
    n1 = cli("note", p[:12], "--text", "taken from the east", "--json", env=cli.as_("ivan"),
             check=True).json()["entries"][0]
    cli("note", p[:12], "--text", "taken from the west", "--supersedes", str(n1),
        env=cli.as_("ivan"), check=True)
    notes = cli("show", p, "--json", check=True).json()["notes"]
    assert [(n["text"], n["superseded_by"] is not None) for n in notes] == [
        ("taken from the east", True), ("taken from the west", False)]
    assert cli("show", p, "--json", check=True).json()["incidents"] == ["M10-2016-10-03"]
    cli("verify", check=True)


def test_no_code_path_reads_content_without_an_access_entry(team, tmp_path, monkeypatch):
    """Every open of an object for reading is preceded by a committed access entry."""
    cli = team
    cli("ingest", PHOTO, VIDEO, env=cli.as_("ivan"), check=True)
    archive = Archive.open(cli.archive)
    ivan = load_key(cli.keys["ivan"][0], PASSPHRASE)
    from store.local_objects import LocalObjectStore

    reads: list[tuple[str, int, str | None]] = []
    real_open = LocalObjectStore.open

    def watched_open(self, sha256):
        last = archive.ledger.row(archive.ledger.size() - 1)
        last_entry = json.loads(last.body)
        reads.append((sha256, last.seq, last_entry["action"] if last_entry["item"] == sha256
                      else None))
        return real_open(self, sha256)

    monkeypatch.setattr(LocalObjectStore, "open", watched_open)
    for i, item in enumerate(archive.ledger.items()):
        access.get(archive, ivan, item, "test purpose", tmp_path / f"out{i}")
    assert reads and all(action == "access" for _, _, action in reads), reads
    # and the whole audit (fixity) reads objects without handing content to anyone
    assert audit(archive).ok
