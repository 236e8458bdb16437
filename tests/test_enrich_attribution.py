"""A later reading (an `enriched` entry) is an attributed opinion beside the ingest's signed
reading, never in its place: only the custodian who ingested the item, or an admin, may sign one
(rule `enriched-by`, checked by `custody enrich` and by verify); show, reports and search keep the
ingest's reading under their keys and flag where a later one disagrees (docs/METADATA.md "Two
readings"). Real JPEGs from tests/data, the real command."""

from __future__ import annotations

import copy
import json
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

from custody.core import entry as entries
from custody.ops.archive import Archive, Draft
from custody.ops.statements import statement_file
from tests.conftest import one_line_error

DATA = Path(__file__).parent / "data"
CANON = DATA / "exiftool" / "Canon.jpg"  # taken by the fast path: ExifTool deferred
ALEPPO = DATA / "media" / "aleppo-gps.jpg"  # a capture time and a GPS fix, fast path too


def _enrol(cli, made_key, name: str, role: str) -> tuple[Path, object]:
    path = cli.tmp / "keys" / f"{name.split()[0].lower()}.key"
    key = made_key(path, name)
    cli("enroll", str(path) + ".pub", "--role", role, check=True)
    return path, key


def _ingest(cli, photo: Path, tmp: Path, key: Path | None = None) -> dict:
    copy_of = tmp / photo.name
    shutil.copy(photo, copy_of)
    env = {"CUSTODY_KEY": str(key)} if key else None
    done = cli("ingest", str(copy_of), "--json", env=env, check=True).json()
    assert done["enrichment"]["deferred"] == 1  # the fast path: ExifTool's reading left for later
    return done["files"][0]


def _log_length(cli) -> int:
    return len(cli("log", "--json", check=True).stdout.splitlines())


def _foreign_reading(archive_dir: Path, key, item: str, changed: dict) -> int:
    """An `enriched` entry appended by hand through the library (no `custody enrich`)."""
    archive = Archive.open(archive_dir)
    signed = archive.append(key, [Draft("enriched", item,
                                        _reading_details(archive_dir, item, changed))])
    return signed[0].entry().seq


def _reading_details(archive_dir: Path, item: str, changed: dict) -> dict:
    """An `enriched` entry's details: ExifTool's reading of the item as its signed document
    holds it, with `changed` fields read differently."""
    archive = Archive.open(archive_dir)
    doc = json.loads(archive.ledger.metadata(item) or b"{}")
    metadata_sha256 = next(
        json.loads(r.body)["details"]["metadata_sha256"]
        for r in archive.ledger.rows_for_item(item) if r.action == "ingest")
    fields = {k: copy.deepcopy(doc.get(k)) for k in (
        "captured_at", "captured_at_basis", "captured_at_source", "clocks", "gps", "device",
        "orientation", "dimensions", "duration_s", "codecs")} | changed
    reading = {"version": "12.57", "raw": {"EXIF:Make": (doc.get("device") or {}).get("make")},
               "fields": fields, "errors": []}
    return {"reader": "exiftool", "metadata_sha256": metadata_sha256, "exiftool": reading}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_second_custodians_enrich_is_refused_and_appends_nothing(cli_archive, made_key,
                                                                  tmp_path):
    bob, _ = _enrol(cli_archive, made_key, "Bob Field", "field")
    carol, _ = _enrol(cli_archive, made_key, "Carol Field", "field")
    item = _ingest(cli_archive, CANON, tmp_path, bob)["sha256"]
    before = _log_length(cli_archive)
    refused = cli_archive("enrich", env={"CUSTODY_KEY": str(carol)})
    assert refused.code == 3
    assert "Carol Field may not enrich the 1 item(s) waiting" in one_line_error(refused)
    assert _log_length(cli_archive) == before  # nothing appended, not even a refusal
    done = cli_archive("enrich", "--json", env={"CUSTODY_KEY": str(bob)}, check=True).json()
    assert [i["sha256"] for i in done["items"]] == [item]  # the one who ingested it may
    assert cli_archive("verify").code == 0


def test_a_foreign_enriched_entry_is_refused_at_every_door_and_verify_names_it(
        cli_archive, made_key, tmp_path):
    """Refused by submit; appended by hand, verify names it as a notice, exit 0 (round 25 let
    any field custodian sign one: such archives and their packages must still verify; no reader
    uses the reading); a reading naming another document than the ingest's fails verify."""
    bob, bob_key = _enrol(cli_archive, made_key, "Bob Field", "field")
    _, carol = _enrol(cli_archive, made_key, "Carol Field", "field")
    item = _ingest(cli_archive, ALEPPO, tmp_path, bob)["sha256"]
    # signed on her device and submitted (the path POST /api/v1/statements takes): refused
    before = _log_length(cli_archive)
    statement = tmp_path / "carol.json"
    statement.write_text(json.dumps(statement_file(entries.sign_statement(entries.Statement(
        log=json.loads((cli_archive.archive / "custody.json").read_text())["origin"],
        actor=carol.key_id, action="enriched", item=item, time=_now(),
        nonce=secrets.token_hex(16), details=_reading_details(cli_archive.archive, item, {})),
        carol), Archive.open(cli_archive.archive).ledger.metadata(item))))
    submitted = cli_archive("submit", str(statement))
    assert submitted.code == 1 and "(rule enriched-by)" in one_line_error(submitted)
    assert _log_length(cli_archive) == before
    # appended by hand through the library, bypassing every command: verify names it
    seq = _foreign_reading(cli_archive.archive, carol, item,
                           {"captured_at": "2016-10-04T09:00:00Z"})
    named = cli_archive("verify", "--json")
    assert named.code == 0, named.stdout + named.stderr
    assert any(f"entry {seq}: enriched reading of item {item} signed by Carol Field" in notice
               and "(rule enriched-by)" in notice for notice in named.json()["notices"])
    # and one by Bob naming another document than the one his ingest signed
    archive = Archive.open(cli_archive.archive)
    details = _reading_details(cli_archive.archive, item, {}) | {"metadata_sha256": "0" * 64}
    other = archive.append(bob_key, [Draft("enriched", item, details)])[0].entry().seq
    verdict = cli_archive("verify")
    assert verdict.code == 1
    assert f"entry {other}: enriched reading of item {item} names document 0000000000000000" \
           in verdict.stdout + verdict.stderr
    assert f"entry {seq}: enriched reading of item {item} signed by Carol Field (role field), " \
           "who neither recorded the item (Bob Field did" in verdict.stdout + verdict.stderr
    assert "(rule enriched-by)" in verdict.stdout + verdict.stderr
    shown = cli_archive("show", item, "--json", check=True).json()
    assert shown["captured_at"] == "2016-10-03T11:22:05Z"  # the ingest's, not Carol's
    assert shown["metadata_enriched"] is None  # her reading completes nothing
    assert shown["metadata_enrichment"]["state"] == "pending"
    carols, bobs = shown["enriched_readings"]
    assert carols["by"] == "Carol Field" and carols["by_permitted"] is False
    assert bobs["by_permitted"] is True and bobs["completes_record"] is False
    assert "NOT ALLOWED" in cli_archive("show", item, check=True).stdout
    # search neither matches her reading nor warns of it: it is nobody's reading
    [found] = cli_archive("search", "--json", check=True).json()["items"]
    assert not any("Carol Field" in w for w in found.get("warnings") or [])
    # her entry does not stand in for the real reading: Bob's enrich still reads it
    done = cli_archive("enrich", "--json", env={"CUSTODY_KEY": str(bob)}, check=True).json()
    assert [i["sha256"] for i in done["items"]] == [item]


def test_show_report_and_search_give_both_readings_and_flag_a_disagreement(cli_archive,
                                                                          made_key, tmp_path):
    item = _ingest(cli_archive, ALEPPO, tmp_path)["sha256"]  # Alice, admin, ingests it
    ingest = cli_archive("show", item, "--json", check=True).json()
    later_gps = {"lat": 36.3021, "lon": 37.1343, "alt": 379.0}
    seq = _foreign_reading(cli_archive.archive, made_key(cli_archive.key, "Alice Admin"), item,
                           {"captured_at": "2016-10-04T09:00:00Z", "gps": later_gps})
    assert cli_archive("verify").code == 0  # by the custodian who ingested it: allowed
    shown = cli_archive("show", item, "--json", check=True).json()
    for key in ("captured_at", "gps", "device", "metadata", "metadata_errors", "mime"):
        assert shown[key] == ingest[key], key  # every existing key: the ingest's reading
    [reading] = shown["enriched_readings"]
    assert {k: reading[k] for k in ("seq", "by", "tool", "version", "by_permitted")} == {
        "seq": seq, "by": "Alice Admin", "tool": "exiftool", "version": "12.57",
        "by_permitted": True}
    assert reading["time"] == shown["history"][-1]["time"]
    assert [(d["field"], d["ingest"], d["later"]) for d in reading["disagreements"]] == [
        ("captured_at", "2016-10-03T11:22:05Z", "2016-10-04T09:00:00Z"),
        ("gps", ingest["gps"], later_gps)]
    assert shown["metadata_enriched"]["gps"] == ingest["gps"]  # fast-path sources still win
    text = cli_archive("show", item, check=True).stdout
    assert f"#{seq} exiftool 12.57 by Alice Admin" in text
    assert "DISAGREES" in text and "2016-10-04T09:00:00Z" in text

    out = tmp_path / "r.html"
    cli_archive("report", item, "-o", str(out), check=True)
    page = out.read_text()
    assert "Later readings of the metadata" in page and "Disagrees with the ingest" in page
    assert "captured_at: at ingest 2016-10-03T11:22:05Z; in this later reading " \
           "2016-10-04T09:00:00Z" in page
    vkey = cli_archive("checkpoint", "--json", check=True).json()["verifier_key"]
    assert cli_archive("verify-report", str(out), "--archive-key", vkey).code == 0

    # search matches the ingest's reading, and says a later one disagrees
    [found] = cli_archive("search", "--since", "2016-10-03", "--until", "2016-10-03", "--json",
                          check=True).json()["items"]
    assert found["sha256"] == item and found["captured_at"] == "2016-10-03T11:22:05Z"
    assert any(f"entry {seq} by Alice Admin" in w and "search matches the ingest's reading" in w
               for w in found["warnings"])
    assert cli_archive("search", "--since", "2016-10-04", "--until", "2016-10-04", "--json",
                       check=True).json()["items"] == []



def test_a_later_holder_may_not_sign_the_reading(cli_archive, made_key, tmp_path):
    dana, _ = _enrol(cli_archive, made_key, "Dana Investigator", "investigator")
    item = _ingest(cli_archive, CANON, tmp_path)["sha256"]  # Alice (admin) ingests and holds it
    offer = cli_archive("transfer", item[:12], "--to", "Dana Investigator", "--purpose",
                        "analysis", "--json", check=True).json()
    cli_archive("accept", str(offer[0]["offer"]), env={"CUSTODY_KEY": str(dana)},
                check=True)
    before = _log_length(cli_archive)
    refused = cli_archive("enrich", env={"CUSTODY_KEY": str(dana)})
    assert refused.code == 3 and "may not enrich" in one_line_error(refused)
    assert _log_length(cli_archive) == before  # custody was handed over, not the record
