"""The rules of docs/FORMAT.md §5.6, one forged entry each: a real key signs it, it is chained and
in the Merkle tree like any entry, so only the rule can catch it. `custody verify` (and, where the
entry travels, `verify-package` and `verify-report`) must exit 1 with a line naming the rule.

Entries are forged below the operations, as an insider with the keys and write access to the
ledger would: built and signed with custody.core.entry and written through the ledger's own
writer with their Merkle nodes (nothing in the operations' checks is on that path).
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from custody.core import entry as entries
from custody.core import merkle
from custody.core.replay import Replay, parse_time
from custody.core.signing import SigningKey
from custody.ops.archive import Archive, custodian_json, utc_now
from custody.ops.keyfiles import load_key, write_new_key
from store.ports import EntryRow

from .conftest import ARCHIVE_PASSPHRASE, DATA, PASSPHRASE, Cli

PHOTO = DATA / "media" / "aleppo-gps.jpg"
VIDEO = DATA / "media" / "homs-loci.mp4"
TEAM = [("Farah Field", "field"), ("Ivan Investigator", "investigator"),
        ("Jana Investigator", "investigator"), ("Rami Reviewer", "reviewer")]


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Once per module: Alice (admin) enrols the team; Ivan ingests a photo and a video."""
    root = tmp_path_factory.mktemp("rules-team")
    keys = root / "keys"
    write_new_key(keys / "alice.key", "Alice Admin", PASSPHRASE)
    cli = Cli(root, root / "archive", keys / "alice.key")
    cli("init", "--name", "Test Documentation Centre", check=True)
    for name, role in TEAM:
        path = keys / (name.split()[0].lower() + ".key")
        write_new_key(path, name, PASSPHRASE)
        cli("enroll", str(path) + ".pub", "--role", role, check=True)
    ivan = {"CUSTODY_KEY": str(keys / "ivan.key")}
    cli("ingest", PHOTO, VIDEO, env=ivan, check=True)
    return root


@pytest.fixture
def team(_template: Path, tmp_path: Path) -> Cli:
    shutil.copytree(_template / "archive", tmp_path / "archive")
    shutil.copytree(_template / "keys", tmp_path / "keys")
    cli = Cli(tmp_path, tmp_path / "archive", tmp_path / "keys" / "alice.key")
    cli.as_ = lambda who: {"CUSTODY_KEY": str(tmp_path / "keys" / f"{who}.key")}  # type: ignore[attr-defined]
    return cli


def key(cli: Cli, who: str) -> SigningKey:
    return load_key(cli.archive.parent / "keys" / f"{who}.key", PASSPHRASE)


PHOTO_SHA = hashlib.sha256(PHOTO.read_bytes()).hexdigest()
VIDEO_SHA = hashlib.sha256(VIDEO.read_bytes()).hexdigest()


def forge(cli: Cli, signer: SigningKey, action: str, item: str | None, details: dict[str, object],
          time: str | None = None) -> int:
    """Sign and append one entry as the ledger's writer takes it, with no rule checked."""
    archive = Archive.open(cli.archive)
    with archive.ledger.writing() as writer:
        e = entries.Entry(
            log=archive.config.origin, seq=writer.next_seq, time=time or utc_now(),
            actor=signer.key_id, action=action, item=item, details=details,
            prev=writer.tip_hash.hex() if writer.tip_hash is not None else None,
        )
        signed = entries.sign(e, signer)
        writer.put_nodes(merkle.nodes_after_append(e.seq, signed.leaf_hash, writer.get_node))
        writer.append(EntryRow(seq=e.seq, body=signed.body, signature=signed.signature,
                               leaf_hash=signed.leaf_hash, time=e.time, actor=e.actor,
                               action=e.action, item=e.item))
    return e.seq


def note(cli: Cli, who: str, time: str | None = None, item: str = PHOTO_SHA) -> int:
    return forge(cli, key(cli, who), "note", item, {"text": "forged", "supersedes": None}, time)


def fails_naming(result, rule: str, seq: int | None = None) -> None:  # type: ignore[no-untyped-def]
    out = result.stdout + result.stderr
    assert result.code == 1, out
    assert "Traceback" not in out
    wanted = f"(rule {rule})"
    lines = [line for line in out.splitlines() if wanted in line]
    assert lines, f"no line names {wanted}:\n{out}"
    if seq is not None:
        assert any(f"entry {seq}" in line for line in lines), lines


def package_fails_naming(cli: Cli, rule: str, *items: str) -> None:
    out = cli.tmp / "package"
    cli("export", *(items or [PHOTO_SHA]), "--purpose", "for the prosecutor", "-o", out, check=True)
    fails_naming(cli("verify-package", out), rule)


def report_fails_naming(cli: Cli, rule: str, item: str = PHOTO_SHA) -> None:
    cli("checkpoint", check=True)
    made = cli("report", item, "--json")  # exits 1 (the report states the problem), data on stdout
    assert made.stdout.startswith("{"), made.stderr
    data = cli.tmp / "report.json"
    data.write_text(made.stdout)
    fails_naming(cli("verify-report", data), rule)


def test_the_untouched_team_archive_verifies(team: Cli) -> None:
    assert team("verify").code == 0


# Time -------------------------------------------------------------------------------------------

def test_time_yesterday_is_refused(team: Cli) -> None:
    seq = note(team, "ivan", time="yesterday")
    fails_naming(team("verify"), "time-format", seq)
    package_fails_naming(team, "time-format")


def test_time_with_an_offset_is_refused(team: Cli) -> None:
    seq = note(team, "ivan", time="2026-11-29T18:00:00.000000+01:00")
    fails_naming(team("verify"), "time-format", seq)
    report_fails_naming(team, "time-format")


def test_time_without_microseconds_or_an_impossible_date_is_refused() -> None:
    assert parse_time("2026-11-29T17:00:00Z") is None
    assert parse_time("2026-11-29T17:00:00.000000z") is None
    assert parse_time("2026-02-30T17:00:00.000000Z") is None
    assert parse_time("2026-11-29T17:00:00.000000Z") is not None


def test_backdated_entry_is_refused(team: Cli) -> None:
    seq = note(team, "ivan", time="2001-09-11T08:46:00.000000Z")
    fails_naming(team("verify"), "time-order", seq)
    package_fails_naming(team, "time-order")


def test_entry_dated_beyond_the_verifiers_clock_is_refused(team: Cli) -> None:
    ahead = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    seq = note(team, "ivan", time=ahead)
    fails_naming(team("verify"), "time-future", seq)


def test_skew_within_five_minutes_is_allowed() -> None:
    replay = Replay(now=datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    later, earlier = "2026-11-29T12:04:00.000000Z", "2026-11-29T12:00:00.000001Z"
    genesis = entries.Entry("log", 0, later, "k", "init", None, {}, None)
    replay.apply(genesis)
    follow = entries.Entry("log", 1, earlier, "k", "note", None, {}, None)
    assert not [p for p in replay.apply(follow) if "time-" in p]


# Who may sign -----------------------------------------------------------------------------------

def test_archive_key_signing_after_entry_0_is_refused(team: Cli) -> None:
    archive_key = Archive.open(team.archive).load_archive_key(ARCHIVE_PASSPHRASE)
    seq = forge(team, archive_key, "note", PHOTO_SHA, {"text": "by the archive", "supersedes": None})
    fails_naming(team("verify"), "archive-key", seq)
    package_fails_naming(team, "archive-key")


def test_archive_key_enrolled_as_a_custodian_is_refused(team: Cli) -> None:
    archive = Archive.open(team.archive)
    public = archive.load_archive_key(ARCHIVE_PASSPHRASE).public
    seq = forge(team, key(team, "alice"), "enroll", None,
                {"custodian": custodian_json(public), "role": "admin"})
    fails_naming(team("verify"), "archive-key", seq)


def test_role_signing_what_it_may_not_is_refused(team: Cli) -> None:
    seq = forge(team, key(team, "rami"), "case-add", PHOTO_SHA, {"case": "X"})
    fails_naming(team("verify"), "role", seq)
    package_fails_naming(team, "role")
    report_fails_naming(team, "role")


def test_revoked_key_signing_is_refused(team: Cli) -> None:
    farah = key(team, "farah")
    team("revoke", farah.key_id[:10], "--reason", "phone seized", check=True)
    seq = note(team, "farah")
    fails_naming(team("verify"), "signer-active", seq)


def test_revoked_key_enrolled_again_is_refused(team: Cli) -> None:
    farah = key(team, "farah")
    team("revoke", farah.key_id[:10], "--reason", "phone seized", check=True)
    seq = forge(team, key(team, "alice"), "enroll", None,
                {"custodian": custodian_json(farah.public), "role": "field"})
    fails_naming(team("verify"), "re-enrol", seq)


def test_the_command_line_refuses_to_enrol_a_revoked_key_again(team: Cli) -> None:
    farah_pub = team.archive.parent / "keys" / "farah.key.pub"
    team("revoke", key(team, "farah").key_id[:10], "--reason", "phone seized", check=True)
    again = team("enroll", farah_pub, "--role", "field")
    assert again.code != 0 and "revoked" in again.stderr
    assert team("verify").code == 0


# Transfers --------------------------------------------------------------------------------------

def test_offer_to_a_never_enrolled_key_is_refused(team: Cli) -> None:
    mallory = SigningKey.generate("Mallory")
    seq = forge(team, key(team, "ivan"), "transfer-offer", PHOTO_SHA,
                {"to": mallory.key_id, "purpose": "p", "group": "g"})
    fails_naming(team("verify"), "offer-receiver", seq)
    package_fails_naming(team, "offer-receiver")


def test_accept_of_another_items_offer_is_refused(team: Cli) -> None:
    offer = team("transfer", PHOTO_SHA[:12], "--to", "Jana Investigator", "--purpose", "lab",
                 "--json", env=team.as_("ivan"), check=True).json()[0]["offer"]
    seq = forge(team, key(team, "jana"), "transfer-accept", VIDEO_SHA, {"offer": offer})
    fails_naming(team("verify"), "offer-same-item", seq)
    package_fails_naming(team, "offer-same-item", PHOTO_SHA, VIDEO_SHA)


# The replay's state: the rules above decide it, and the readers read it -------------------------

def _entry(seq: int, actor: str, action: str, item: str | None, details: dict[str, object]
           ) -> entries.Entry:
    return entries.Entry("log", seq, f"2026-11-29T12:00:{seq:02d}.000000Z", actor, action, item,
                         details, None)


def _registry_of_two() -> tuple[Replay, SigningKey, SigningKey]:
    archive, admin = SigningKey.generate("Archive"), SigningKey.generate("Ada Admin")
    replay = Replay()
    genesis = _entry(0, archive.key_id, "init", None, {
        "name": "T", "format": 1, "archive": custodian_json(archive.public),
        "admin": custodian_json(admin.public)})
    assert replay.apply(genesis) == []
    return replay, archive, admin


def test_a_received_item_is_held_by_its_importer_and_filed_under_its_case() -> None:
    replay, _, admin = _registry_of_two()
    item = "ab" * 32
    assert replay.apply(_entry(1, admin.key_id, "received", item, {"case": "ALEPPO-16"})) == []
    assert replay.holder(item) == admin.key_id
    assert replay.case_members("ALEPPO-16") == (item,)
    assert replay.cases_of(item) == ("ALEPPO-16",)
    assert replay.first_record(item) is not None and replay.first_record(item).action == "received"
    assert replay.apply(_entry(2, admin.key_id, "sighting", item, {"case": None})) == []
    assert replay.sightings(item) == (2,)
    assert replay.apply(_entry(3, admin.key_id, "case-remove", item,
                               {"case": "ALEPPO-16", "reason": "misfiled"})) == []
    assert replay.case_members("ALEPPO-16") == ()
    assert [r.reason for r in replay.case_removals("ALEPPO-16")] == ["misfiled"]


def test_one_future_date_is_one_problem_not_a_cascade() -> None:
    replay = Replay(now=datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    replay.apply(entries.Entry("log", 0, "2026-11-29T11:00:00.000000Z", "k", "init", None, {},
                               None))
    ahead = entries.Entry("log", 1, "2099-01-01T00:00:00.000000Z", "k", "note", None, {}, None)
    assert any("(rule time-future)" in p for p in replay.apply(ahead))
    honest = entries.Entry("log", 2, "2026-11-29T11:01:00.000000Z", "k", "note", None, {}, None)
    assert not [p for p in replay.apply(honest) if "time-" in p]


def test_append_refuses_a_clock_set_back_beyond_the_skew(cli_archive: Cli) -> None:
    """An entry verify would reject for `time-order` is never written: a machine whose clock was
    set back (by hand, a dead battery) gets a one-line refusal and the log is untouched; a clock
    a little behind, within the skew, is fine."""
    from custody.errors import ArchiveError
    from custody.ops.archive import Draft

    archive = Archive.open(cli_archive.archive)
    key = load_key(cli_archive.key, PASSPHRASE)
    size = archive.ledger.size()
    with pytest.raises(ArchiveError, match="behind the log's last entry"):
        archive.append(key, [Draft("verification", None, {"ok": True})],
                       now="2001-09-10T08:00:00.000000Z")
    assert archive.ledger.size() == size
    behind = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    archive.append(key, [Draft("verification", None, {"ok": True})], now=behind)
    assert archive.ledger.size() == size + 1
    assert cli_archive("verify", "--json").json()["ok"]
