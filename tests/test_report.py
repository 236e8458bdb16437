"""Chain-of-custody reports and log exports, read back as a person (or a reviewer's tool) would:
the PDF through pdftotext, the HTML through an HTML parser, the CSV through the csv module."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pytest

from custody.core import entry as entries

from .conftest import DATA, PASSPHRASE, Cli, cpu_seconds, one_line_error

MEDIA = DATA / "media"
PHOTO = MEDIA / "aleppo-gps.jpg"
PHOTO2 = MEDIA / "carbon-south-west.jpg"
VIDEO = MEDIA / "homs-loci.mp4"
CASE = "ALEPPO-2016"
NOTE_MIXED = "مستشفى M10، حلب — الضربة الثانية"
NOTE_ARABIC = "الضربة الثانية على مستشفى حلب"
GET_PURPOSE = "geolocation check for the M10 dossier"
HANDOVER = "handover to the legal team"
REVIEW = "legal review before filing"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Cli:
    """Farah (field) ingests two photos and a video for the case; Ivan reads the photo and hands
    it to Jana, who accepts and writes notes in Arabic; Ivan records the incident. Rami reviews."""
    tmp = tmp_path_factory.mktemp("story")
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    cli("key", "new", "--name", "Alice Admin", check=True)
    cli("init", "--name", "Syrian Documentation Centre", check=True)
    keys = {}
    for name, role in [("Farah Field", "field"), ("Ivan Investigator", "investigator"),
                       ("Jana Investigator", "investigator"), ("Rami Reviewer", "reviewer")]:
        path = tmp / "keys" / (name.split()[0].lower() + ".key")
        info = cli("key", "new", "--name", name, "-o", path, "--json", check=True).json()
        cli("enroll", str(path) + ".pub", "--role", role, check=True)
        keys[name.split()[0].lower()] = (path, info["key_id"])
    cli.keys = keys
    cli.as_ = lambda who: {"CUSTODY_KEY": str(keys[who][0])}
    cli("ingest", PHOTO, PHOTO2, VIDEO, "--case", CASE, env=cli.as_("farah"), check=True)
    photo = sha(PHOTO)
    cli("get", photo[:12], "--purpose", GET_PURPOSE, "-o", tmp / "copy.jpg",
        env=cli.as_("ivan"), check=True)
    offer = cli("transfer", photo[:12], "--to", "Jana Investigator", "--purpose", HANDOVER,
                "--json", env=cli.as_("ivan"), check=True).json()[0]["offer"]
    cli("accept", str(offer), env=cli.as_("jana"), check=True)
    cli("note", photo[:12], "--text", NOTE_MIXED, env=cli.as_("jana"), check=True)
    cli("note", photo[:12], "--text", NOTE_ARABIC, env=cli.as_("jana"), check=True)
    cli("incident", "new", "M10-2016-10-03", "--date", "2016-10-03", "--case", CASE,
        "--place", "36.2050,37.1300,M10 hospital", "--description", "strike on the M10 hospital",
        env=cli.as_("ivan"), check=True)
    cli("incident", "add", "M10-2016-10-03", photo[:12], sha(VIDEO)[:12], env=cli.as_("ivan"),
        check=True)
    return cli


@pytest.fixture
def cli(story, tmp_path) -> Cli:
    """A private copy of the story's archive (reports append entries and checkpoints)."""
    shutil.copytree(story.archive, tmp_path / "archive")
    mine = Cli(tmp_path, tmp_path / "archive", story.key)
    mine.keys, mine.as_ = story.keys, story.as_
    return mine


def log(cli: Cli, *args: str) -> list[dict]:
    return [json.loads(x) for x in cli("log", "--json", *args, check=True).stdout.splitlines()]


def pdftotext(path: Path, raw: bool = False) -> str:
    """The PDF's text. `raw` keeps the order in which the page draws it (a table row by row);
    the default reconstructs reading order (which right-to-left lines need)."""
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext is missing: install Debian's poppler-utils (scripts/setup.sh)")
    args = ["pdftotext", *(["-raw"] if raw else []), str(path), "-"]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    # Arabic comes out with bidi embedding marks and possibly presentation forms: normalise both
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def in_order(text: str, needles: list[str]) -> bool:
    """Each needle occurs after the previous one (a subsequence of the text)."""
    at = 0
    for n in needles:
        at = text.find(n, at)
        if at < 0:
            return False
        at += len(n)
    return True


class Tables(HTMLParser):
    """Every table of class `timeline`, per item section, as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[list[str]]] = {}
        self.classes: dict[str, list[str]] = {}
        self._section = self._table = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.fixity_rows: dict[str, str] = {}
        self._tr_class = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and (a.get("id") or "").startswith("item-"):
            self._section = a["id"][5:]
            self.sections[self._section] = []
            self.classes[self._section] = (a.get("class") or "").split()
        elif tag == "table":
            self._table = "timeline" if "timeline" in (a.get("class") or "") else (
                "checks" if "checks" in (a.get("class") or "") else "other")
        elif tag == "tr":
            self._row, self._tr_class = [], a.get("class") or ""
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._table == "timeline" and self._row and self._row[0].isdigit():
                self.sections[self._section].append(self._row)
            if self._table == "checks" and self._row and self._row[0] == "Fixity":
                self.fixity_rows[self._section] = self._tr_class
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


# Reports --------------------------------------------------------------------------------------

def test_pdf_case_report_reads_back_every_hash_actor_and_purpose_in_order(cli, tmp_path):
    before = log(cli)
    out = tmp_path / "case.pdf"
    r = cli("report", "--case", CASE, "-o", out, "--purpose", REVIEW, env=cli.as_("rami"))
    assert r.code == 0, r.stderr
    assert out.read_bytes().startswith(b"%PDF-")
    text = pdftotext(out, raw=True)
    flat = "".join(text.split())
    assert "All checks passed" in text and "VERIFICATION FAILED" not in text
    assert f"Case {CASE}" in text and "Rami Reviewer" in text and REVIEW in " ".join(text.split())
    # every page's footer names the case and the checkpoint, and counts the pages
    pages = text.split("\f")[:-1]
    assert len(pages) >= 4
    for n, page in enumerate(pages, 1):
        assert f"Page {n} of {len(pages)}" in page
        assert f"Case {CASE} · Checkpoint:" in page
    after = log(cli)
    assert len(after) == len(before) + 3  # one access entry per item read, nothing else
    items = [sha(PHOTO), sha(PHOTO2), sha(VIDEO)]
    sections = re.split(r"Item \d of 3: ", " ".join(text.split()))[1:]
    assert len(sections) == 3
    for item, section in zip(items, sections, strict=True):
        shown = cli("show", item, "--json", check=True).json()
        for digest in shown["digests"].values():  # SHA-256, SHA-512, SHA-1, MD5, whole
            assert digest in flat, digest
        timeline = section.split("Custody timeline", 1)[1].split("Verification at the time")[0]
        history = shown["history"]
        assert in_order(timeline, [h["actor_name"] for h in history])
        assert in_order(timeline, [h["actor"][:16] for h in history])
        purposes = [h["details"]["purpose"] for h in history if h["details"].get("purpose")]
        assert purposes[-1] == REVIEW and in_order(timeline, purposes)
    photo_section = sections[0]
    assert in_order(photo_section, ["Farah Field", "Ivan Investigator", GET_PURPOSE,
                                    "Ivan Investigator", HANDOVER, "Jana Investigator"])
    assert "2016-10-03 11:22:05 UTC" in photo_section and "GPS clock" in photo_section
    assert "geo:36.202100,37.134300,379" in photo_section
    assert "M10-2016-10-03" in text
    # the PDF carries the report's data; it re-checks offline and its digest is the one printed
    data = tmp_path / "data.json"
    subprocess.run(["pdfdetach", "-savefile", "custody-report.json", "-o", str(data), str(out)],
                   check=True, capture_output=True)
    again = cli("verify-report", data, "--json")
    assert again.code == 0, again.stdout
    assert again.json()["digest"][:16] in text


def test_arabic_notes_survive_into_the_pdf_text(cli, tmp_path):
    out = tmp_path / "photo.pdf"
    cli("report", sha(PHOTO)[:12], "-o", out, check=True)
    text = pdftotext(out)
    assert NOTE_ARABIC in text  # a wholly Arabic note: the same letters, in reading order
    words = set(text.split())
    for word in NOTE_MIXED.replace("،", " ").split():  # mixed with Latin: every word intact
        if word != "—":
            assert any(word in w for w in words), word
    assert "مستشفى" in text and "حلب" in text


@pytest.mark.quick  # the quick suite's smoke test of this area
def test_html_report_holds_the_timeline_rows_and_rechecks(cli, tmp_path):
    out = tmp_path / "case.html"
    cli("report", "--case", CASE, "-o", out, "--purpose", REVIEW, env=cli.as_("rami"), check=True)
    page = out.read_text(encoding="utf-8")
    parsed = Tables()
    parsed.feed(page)
    assert list(parsed.sections) == [sha(PHOTO), sha(PHOTO2), sha(VIDEO)]
    for item, rows in parsed.sections.items():
        history = log(cli, item)
        assert [int(r[0]) for r in rows] == [h["seq"] for h in history]
        for row, h in zip(rows, history, strict=True):
            assert h["action"] in row[2]
            assert h["actor_name"] in row[3] and h["actor"][:16] in row[3]
            assert row[4] == (h["details"].get("purpose") or h["details"].get("reason") or "–")
            assert row[6] == (h["holder_after_name"] or "–")
        assert parsed.fixity_rows[item] == ""  # not marked failed
    assert "All checks passed" in page and 'dir="rtl"' in page
    vkey = cli("checkpoint", "--json", check=True).json()["verifier_key"]
    ok = cli("verify-report", out, "--archive-key", vkey, "--json")
    assert ok.code == 0, ok.stdout
    assert ok.json()["ok"] and ok.json()["entries_proven"] >= 12
    # the report's data: --json prints what the digest covers
    data = cli("report", sha(VIDEO)[:12], "--json", check=True).json()
    assert data["type"] == "custody/report/v1" and data["content_read"] is False
    assert data["items"][0]["digests"]["md5"] == hashlib.md5(VIDEO.read_bytes()).hexdigest()


def test_a_131000_character_purpose_neither_slows_the_report_nor_is_lost(cli, tmp_path):
    """Issue 10 #13: one 131,000-character purpose without spaces made `report` run for over
    5 minutes. Long values are now cut at 1,000 characters with a visible marker and laid out in
    short pieces; the whole value stays in the report's data, which the digest covers."""
    photo = sha(PHOTO)[:12]
    long = "".join(f"{n:06d}" for n in range(131_000 // 6)).ljust(131_000, "x")  # no spaces
    normal = {fmt: cpu_seconds(cli, "report", photo, "--purpose", REVIEW,
                               "-o", tmp_path / f"n.{fmt}")
              for fmt in ("html", "pdf")}
    cli("get", photo, "--purpose", long, "-o", tmp_path / "copy.jpg", check=True)
    slow = {fmt: cpu_seconds(cli, "report", photo, "--purpose", long, "-o", tmp_path / f"l.{fmt}")
            for fmt in ("html", "pdf")}  # html twice, then pdf twice: l.html is the second
    for fmt in ("html", "pdf"):
        assert slow[fmt] < 3 * normal[fmt], (fmt, slow[fmt], normal[fmt])

    marker = "[cut: 1,000 of 131,000 characters shown; the whole text is in this report's data"
    page = (tmp_path / "l.html").read_text(encoding="utf-8")
    visible = re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", "", visible))  # the page as read: pieces join up
    # about this report, and in the timeline the `get`, the first html run's access entry and
    # this report's own
    assert text.count(long[:1000] + "… " + marker) == 4
    assert long[:1001] not in text.replace(long[:1000] + "…", "")
    model = json.loads(re.search(r'id="custody-report-model">(.*?)</script>', page, re.S)[1])
    assert model["purpose"] == long
    assert [r["purpose"] for r in model["items"][0]["timeline"] if r.get("purpose") == long]
    assert cli("verify-report", tmp_path / "l.html").code == 0

    pdf_text = pdftotext(tmp_path / "l.pdf")
    # and the access entries of both HTML runs and of the first PDF run, made before this one
    assert " ".join(pdf_text.split()).count(" ".join(marker.split())) == 6
    data = tmp_path / "l.json"
    subprocess.run(["pdfdetach", "-savefile", "custody-report.json", "-o", str(data),
                    str(tmp_path / "l.pdf")], check=True, capture_output=True)
    assert json.loads(data.read_text())["purpose"] == long


def test_an_edited_report_does_not_recheck(cli, tmp_path):
    out = tmp_path / "r.html"
    cli("report", sha(PHOTO)[:12], "-o", out, check=True)
    page = out.read_text(encoding="utf-8")
    assert page.count(HANDOVER) >= 2
    forged = tmp_path / "forged.html"
    forged.write_text(page.replace(HANDOVER, "routine filing"), encoding="utf-8")
    r = cli("verify-report", forged)
    assert r.code == 1
    assert "differs from the signed entry" in r.stdout and "prints digest" in r.stdout


def test_a_tampered_object_fails_the_report_prominently(cli, tmp_path):
    video = sha(VIDEO)
    path = cli.archive / "objects" / "sha256" / video[:2] / video
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    html = tmp_path / "t.html"
    r = cli("report", "--case", CASE, "-o", html)
    assert r.code == 1 and "problems" in one_line_error(r)
    page = html.read_text(encoding="utf-8")
    assert 'class="banner failed"' in page and "All checks passed</h2>" not in page
    parsed = Tables()
    parsed.feed(page)
    assert "failed" in parsed.classes[video]
    assert parsed.fixity_rows[video] == "failed"
    assert parsed.fixity_rows[sha(PHOTO)] == ""
    pdf = tmp_path / "t.pdf"
    r = cli("report", "--case", CASE, "-o", pdf, "--purpose", REVIEW, env=cli.as_("rami"))
    assert r.code == 1
    first_page = pdftotext(pdf).split("\f")[0]
    assert "VERIFICATION FAILED" in first_page and "All checks passed" not in first_page
    assert "homs-loci.mp4" in first_page and "corrupt" in first_page


def test_purpose_reads_content_as_logged_access_and_no_purpose_reads_nothing(cli, tmp_path):
    before = log(cli)
    cli("report", "--case", CASE, "-o", tmp_path / "a.html", env=cli.as_("rami"), check=True)
    assert log(cli) == before  # no purpose: no content read, nothing appended
    page = (tmp_path / "a.html").read_text(encoding="utf-8")
    assert "content not read: no purpose was stated" in page and "data:image/png" not in page
    cli("report", sha(PHOTO)[:12], sha(VIDEO)[:12], "-o", tmp_path / "b.html", "--purpose",
        REVIEW, env=cli.as_("rami"), check=True)
    new = log(cli)[len(before):]
    assert [(e["action"], e["item"], e["details"]["kind"], e["details"]["purpose"])
            for e in new] == [("access", sha(PHOTO), "report", REVIEW),
                              ("access", sha(VIDEO), "report", REVIEW)]
    assert all(e["actor"] == cli.keys["rami"][1] for e in new)
    assert new[0]["details"]["destination"] == str((tmp_path / "b.html").absolute())
    page = (tmp_path / "b.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2  # the photo, and the video's poster frame
    assert "▶ Video" in page and "decoded by ffmpeg" in page
    cli("verify", check=True)


def test_a_field_custodian_may_not_read_content_for_a_report(cli, tmp_path):
    r = cli("report", sha(PHOTO)[:12], "-o", tmp_path / "f.pdf", "--purpose", "curious",
            env=cli.as_("farah"))
    assert r.code == 3 and "may not" in one_line_error(r)
    assert not (tmp_path / "f.pdf").exists()
    assert log(cli)[-1]["action"] == "refused"


def test_without_the_archive_key_the_acting_custodian_signs_the_newer_entries(cli, tmp_path):
    """Entries newer than the latest checkpoint, and an archive key that does not unlock: the
    acting custodian's key signs a tree head that extends the checkpoint (docs/REPORTS.md)."""
    cli("checkpoint", check=True)
    cli("tag", sha(PHOTO)[:12], "exhibit-7", env=cli.as_("ivan"), check=True)
    out = tmp_path / "w.html"
    r = cli("report", sha(PHOTO)[:12], "-o", out,
            env={"CUSTODY_ARCHIVE_PASSPHRASE": "not the passphrase"})
    assert r.code == 0 and "warning" not in r.stderr and "tree head" in r.stderr
    page = out.read_text(encoding="utf-8")
    assert "All checks passed" in page and "unproven" not in page
    checked = cli("verify-report", out, "--json")
    assert checked.code == 0 and not any("unproven" in n for n in checked.json()["notices"])


def test_report_usage_errors_change_nothing(cli, tmp_path):
    before = log(cli)
    r = cli("report", sha(PHOTO)[:12], "-o", tmp_path / "r.docx", "--purpose", REVIEW,
            env=cli.as_("rami"))
    assert r.code == 2 and ".html or .pdf" in one_line_error(r)
    r = cli("report", "--case", "NO-SUCH-CASE", "-o", tmp_path / "r.html")
    assert r.code == 3 and "no item is filed under case" in one_line_error(r)
    r = cli("report", "-o", tmp_path / "r.html")
    assert r.code == 2
    assert log(cli) == before


# Log exports ----------------------------------------------------------------------------------

def test_log_as_csv_and_jsonl_for_a_reviewers_tools(cli):
    cli("note", sha(PHOTO)[:12], "--text", "=HYPERLINK(\"http://x\")", env=cli.as_("jana"),
        check=True)
    jsonl = log(cli)
    assert cli("log", "--format", "jsonl", check=True).stdout == cli("log", "--json").stdout
    out = cli("log", "--format", "csv", check=True).stdout
    assert out.startswith("seq,time,action,item,actor,actor_name,purpose,")
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert len(rows) == len(jsonl)
    for row, j in zip(rows, jsonl, strict=True):
        assert int(row["seq"]) == j["seq"] and row["action"] == j["action"]
        assert json.loads(row["details_json"]) == j["details"]
        assert row["signature"] == j["signature"] and row["leaf_hash"] == j["leaf_hash"]
        assert (row["purpose"] or None) == j["details"].get("purpose")
        body = base64.b64decode(row["entry"])
        assert hashlib.sha256(b"\x00" + body).hexdigest() == row["leaf_hash"]
    # the signature checks from the CSV alone, with the key from the enrolment row
    keys = {json.loads(r["details_json"])["custodian"]["key_id"]:
            json.loads(r["details_json"])["custodian"]["public_key"]
            for r in rows if r["action"] == "enroll"}
    access = next(r for r in rows if r["action"] == "access")
    signed = entries.SignedEntry(base64.b64decode(access["entry"]),
                                 base64.b64decode(access["signature"]))
    assert entries.signature_valid(signed, base64.b64decode(keys[access["actor"]]))
    holders = [r["holder_after_name"] for r in rows if r["item"] == sha(PHOTO)]
    assert holders[0].startswith("the archive") and holders[-1] == "Jana Investigator"
    # free text that a spreadsheet would run as a formula is defused in CSV, exact in JSON Lines
    assert json.loads(rows[-1]["details_json"])["text"].startswith("=HYPERLINK")
    item_rows = list(csv.DictReader(io.StringIO(
        cli("log", sha(VIDEO)[:12], "--format", "csv", check=True).stdout, newline="")))
    assert {r["item"] for r in item_rows} == {sha(VIDEO)}
    bad = cli("log", "--format", "xml")
    assert bad.code == 2 and "jsonl or csv" in one_line_error(bad)
    assert PASSPHRASE  # the keys above are the conftest's


def test_case_summary_names_incidents_and_items_taken_out(cli, tmp_path):
    cli("case", "remove", sha(PHOTO2)[:12], "--case", CASE, "--reason", "taken in Chile, not Aleppo",
        env=cli.as_("ivan"), check=True)
    out = tmp_path / "case.html"
    cli("report", "--case", CASE, "-o", out, check=True)
    page = out.read_text(encoding="utf-8")
    parsed = Tables()
    parsed.feed(page)
    assert list(parsed.sections) == [sha(PHOTO), sha(VIDEO)]
    assert "Taken out of this case" in page and "taken in Chile, not Aleppo" in page
    assert "M10-2016-10-03" in page and "strike on the M10 hospital" in page
    # the photo was captured about 0.4 km from the incident's stated place
    model = cli("report", "--case", CASE, "--json", check=True).json()
    near = model["items"][0]["place"]["incidents"][0]
    assert near["incident"] == "M10-2016-10-03" and 0.2 < near["km"] < 0.6
    assert [h["name"] for h in model["summary"]["holders"]] == [
        "Jana Investigator", "the archive (handed in by the field team)"]
