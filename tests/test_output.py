"""What people and scripts read: escaped human output, one JSON schema, readable help, --version."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from custody import display
from custody.cli.app import command

from .conftest import DATA, Cli, copy_archive, one_line_error

DOCS = Path(__file__).parent.parent / "docs" / "CLI.md"
FORGED = "x\nnew      " + "0" * 64 + "  IMPORTANT.jpg"
RTL = "evil\u202egpj.exe"


def leaf_commands() -> dict[str, object]:
    """Every command a user can run, by its full name ("incident list")."""
    found: dict[str, object] = {}

    def walk(cmd: object, prefix: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            found[prefix] = cmd

    walk(command(), "")
    return found


@pytest.fixture(scope="module")
def _empty(tmp_path_factory, session_made_key):
    """Made once per module (init costs a process and a key derivation): an initialised archive."""
    tmp = tmp_path_factory.mktemp("output-empty")
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    session_made_key(cli.key, "Alice Admin")
    cli("init", "--name", "Test Documentation Centre", check=True)
    return cli


@pytest.fixture(scope="module")
def _shelf(_empty, tmp_path_factory):
    """Made once per module: two real photos ingested in case C1, one with its clock's offset
    unknown."""
    cli = copy_archive(_empty, tmp_path_factory.mktemp("output-shelf"))
    cli("ingest", DATA / "media" / "aleppo-gps.jpg", DATA / "media" / "clock-no-offset.jpg",
        "--case", "C1", check=True)
    return cli


@pytest.fixture
def fresh(_empty, tmp_path):
    """This test's own copy of the initialised archive (as `cli_archive`, without the init)."""
    return copy_archive(_empty, tmp_path)


@pytest.fixture
def shelf(_shelf, tmp_path):
    """This test's own copy of the archive of two photos."""
    return copy_archive(_shelf, tmp_path)


ALEPPO = hashlib.sha256((DATA / "media" / "aleppo-gps.jpg").read_bytes()).hexdigest()


# Control and bidi characters in human output --------------------------------------------------

def test_clean_escapes_controls_bidi_and_separators_and_nothing_else():
    assert display.clean("a\nb\r\tc\x1b[31m\x7f\x85") == "a\\nb\\r\\tc\\x1b[31m\\x7f\\x85"
    for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u2028\u2029":
        assert display.clean(f"x{ch}y") == f"x\\u{ord(ch):04x}y"
    assert display.clean("caf\udce9") == "caf\\udce9"  # an undecodable byte (surrogateescape)
    plain = "مستشفى M10، حلب — IMG_0413.JPG ünïcödé 写真 \\ ok"
    assert display.clean(plain) == plain


def test_a_newline_in_a_file_name_cannot_forge_an_ingest_line(fresh, tmp_path):
    cli_archive = fresh
    folder = tmp_path / "card"
    folder.mkdir()
    photo = (DATA / "media" / "aleppo-gps.jpg").read_bytes()
    (folder / FORGED).write_bytes(photo)
    (folder / RTL).write_bytes(b"MZ not really a jpeg")
    (folder / "plain.txt").write_text("witness statement\n")
    r = cli_archive("ingest", folder, "--case", "CASE\u202e-1", check=True)
    lines = r.stdout.splitlines()
    assert len(lines) == 3, r.stdout  # exactly one line per file
    assert not any("IMPORTANT" in line and not line.endswith("IMPORTANT.jpg") for line in lines)
    assert not [line for line in lines if line.startswith("new      " + "0" * 64)]
    assert sum("x\\nnew      " + "0" * 64 + "  IMPORTANT.jpg" in line for line in lines) == 1
    assert sum("evil\\u202egpj.exe" in line for line in lines) == 1
    assert "\u202e" not in r.stdout + r.stderr and "\n" not in "".join(lines)

    # the same names in list, show and log: escaped for people, exact in JSON
    listed = cli_archive("list", check=True).stdout
    assert "\u202e" not in listed and "evil\\u202egpj.exe" in listed and "CASE\\u202e-1" in listed
    assert len(listed.splitlines()) == 1 + 3  # header and one row per item
    sha = hashlib.sha256(photo).hexdigest()
    shown = cli_archive("show", sha[:12], check=True).stdout
    assert "x\\nnew      " in shown and "\u202e" not in shown
    assert not any(line.startswith("new ") for line in shown.splitlines())
    exact = cli_archive("show", sha[:12], "--json", check=True).json()
    assert exact["names"] == [FORGED] and exact["cases"] == ["CASE\u202e-1"]
    assert [row["names"] for row in cli_archive("list", "--json", check=True).json()
            if row["sha256"] == sha] == [[FORGED]]


@pytest.mark.slow
def test_notes_and_errors_that_quote_names_are_escaped(shelf, tmp_path):
    cli_archive, sha = shelf, ALEPPO
    cli_archive("note", sha[:12], "seen at\nnew 0000 IMPORTANT.jpg \x1b[2J\u202eok", check=True)
    shown = cli_archive("show", sha[:12], check=True).stdout
    assert "seen at\\nnew 0000 IMPORTANT.jpg \\x1b[2J\\u202eok" in shown
    assert "\x1b" not in shown and "\u202e" not in shown
    missing = cli_archive("ingest", tmp_path / "no\nsuch \u202efile.jpg")
    assert missing.code == 3
    assert missing.stderr.count("\n") == 1, missing.stderr
    assert "no\\nsuch \\u202efile.jpg" in one_line_error(missing)


# One JSON schema --------------------------------------------------------------------------------

# A server runs until stopped and prints nothing on stdout: what it says is its access log, one JSON
# object a request (docs/SERVICE.md), and a bad option is still one line on stderr (test_service).
SERVERS = {"serve"}


@pytest.mark.slow
def test_every_command_takes_json_and_fails_with_one_json_document(fresh):
    """Every command accepts --json; run bare (missing arguments), each still prints exactly one
    JSON document (its result, or the error document) and nothing else on stdout."""
    for name, cmd in leaf_commands().items():
        if name in SERVERS:
            continue
        options = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
        assert "--json" in options, f"custody {name} has no --json"
        r = fresh(*name.split(), "--json")
        if name == "log":
            docs = [json.loads(line) for line in r.stdout.splitlines()]
            assert docs and r.code == 0, name
            continue
        doc = json.loads(r.stdout)  # exactly one document, whatever happened
        if r.code != 0:
            assert doc["ok"] is False, name
            assert set(doc["error"]) >= {"kind", "message", "hint", "exit_code"}, name
            assert doc["error"]["exit_code"] == r.code, name
            assert one_line_error(r).startswith("custody: "), name


@pytest.mark.parametrize(
    ("args", "code", "kind"),
    [
        (["show", "abc"], 2, "usage-error"),
        (["show", "deadbeefdeadbeef"], 3, "not-found"),
        (["list", "--bogus"], 2, "usage-error"),
        (["ingest", "."], 3, "wrong-passphrase"),
    ],
)
def test_json_errors_are_one_documented_object(fresh, args, code, kind):
    env = {"CUSTODY_PASSPHRASE": "wrong"} if kind == "wrong-passphrase" else None
    r = fresh(*args, "--json", env=env)
    assert r.code == code
    doc = json.loads(r.stdout)
    assert doc == {"ok": False, "error": {"kind": kind, "message": doc["error"]["message"],
                                          "hint": doc["error"]["hint"], "exit_code": code}}
    assert doc["error"]["message"] in one_line_error(r)
    assert kind in (DOCS.read_text())


def documented_keys() -> dict[str, list[str]]:
    """The JSON table of docs/CLI.md: command -> the keys its document must have."""
    table: dict[str, list[str]] = {}
    for line in DOCS.read_text().splitlines():
        m = re.fullmatch(r"\| `custody ([a-z -]+)` \| [^|]+ \| (.+) \|", line)
        if m:
            table[m.group(1)] = re.findall(r"`([a-z_0-9]+)`", m.group(2))
    return table


@pytest.mark.slow
def test_every_json_key_named_in_the_docs_appears(fresh, tmp_path):
    cli = fresh
    table = documented_keys()
    assert set(table) <= set(leaf_commands()), set(table) - set(leaf_commands())
    assert len(table) >= 20
    bob = tmp_path / "keys" / "bob.key"
    photo = DATA / "media" / "aleppo-gps.jpg"
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()[:12]
    cp = cli("checkpoint", "--json", check=True)  # before anything else: an empty log proves too
    runs = {
        "key new": ["key", "new", "--name", "Bob Investigator", "-o", bob],
        "enroll": ["enroll", f"{bob}.pub", "--role", "investigator"],
        "ingest": ["ingest", photo, "--case", "C1"],
        "list": ["list"], "show": ["show", sha], "log": ["log"], "verify": ["verify"],
        "get": ["get", sha, "--purpose", "check", "-o", tmp_path / "copy.jpg"],
        "case add": ["case", "add", sha, "--case", "C2"], "note": ["note", sha, "a note"],
        "tag": ["tag", sha, "t1"],
        "incident new": ["incident", "new", "I1", "--date", "2016-10-03", "--description", "d"],
        "incident add": ["incident", "add", "I1", sha], "incident list": ["incident", "list"],
        "checkpoint": ["checkpoint"], "prove": ["prove", sha],
        "transfer": ["transfer", sha, "--to", "Bob Investigator", "--purpose", "handover"],
        "transfers": ["transfers"],
        "export": ["export", sha, "--purpose", "court", "-o", tmp_path / "pkg.zip"],
        "verify-package": ["verify-package", tmp_path / "pkg.zip"],
        "search": ["search", "--case", "C1"], "report": ["report", sha],
        "similar": ["similar", sha],
        "derive": ["derive", sha, "--purpose", "publication", "--strip-metadata"],
        "lock": ["lock"],
    }
    docs: dict[str, object] = {"init": None}
    for name, args in runs.items():
        r = cli(*args, "--json", check=True)
        docs[name] = ([json.loads(x) for x in r.stdout.splitlines()] if name == "log"
                      else r.json())
        if name == "prove":
            (tmp_path / "proof.json").write_text(r.stdout)
        if name == "transfer":
            offer = docs[name][0]["offer"]
            r = cli("accept", offer, "--json", env={"CUSTODY_KEY": str(bob)}, check=True)
            docs["accept"] = r.json()
    docs["verify-proof"] = cli("verify-proof", tmp_path / "proof.json", "--archive-key",
                               cp.json()["verifier_key"], "--json", check=True).json()
    docs["revoke"] = cli("revoke", "Bob Investigator", "--reason", "left", "--json",
                         check=True).json()
    fresh = tmp_path / "second"
    docs["init"] = cli("--archive", fresh, "init", "--name", "Second", "--json", check=True).json()
    for name, keys in table.items():
        doc = docs[name]
        if isinstance(doc, list):
            assert doc, f"{name}: empty list, nothing to check"
            doc = doc[0]
        missing = [k for k in keys if k not in doc]
        assert not missing, f"custody {name} --json lacks documented keys {missing}"


@pytest.mark.slow
def test_list_and_show_use_the_same_key_names(shelf):
    cli_archive = shelf
    [row] = [r for r in cli_archive("list", "--json", check=True).json() if r["sha256"] == ALEPPO]
    shown = cli_archive("show", row["sha256"], "--json", check=True).json()
    assert set(row) - {"name"} <= set(shown) and row["name"] == shown["names"][0]
    for key in ("names", "cases", "metadata_errors"):
        assert isinstance(row[key], list) and row[key] == shown[key], key
    assert row["cases"] == ["C1"] and "case" not in row


# Human formatting -------------------------------------------------------------------------------

@pytest.mark.slow
def test_human_output_is_tables_and_one_date_style_not_python_reprs(shelf):
    cli_archive = shelf
    listed = cli_archive("list", check=True).stdout.splitlines()
    assert listed[0].split() == ["SHA-256", "BYTES", "TYPE", "CAPTURED", "CASES", "NAME"]
    assert any("2016-10-03 11:22:05Z" in line for line in listed)
    assert any("2016-11-20 08:05:59 local" in line for line in listed)  # offset unknown: local
    assert listed[-1] == display.UNKNOWN_OFFSET_LEGEND
    shown = cli_archive("show", ALEPPO, check=True).stdout
    for repr_mark in ("['", "{'", "None", "': "):
        assert repr_mark not in shown, repr_mark
    assert "36.202100, 37.134300, 379 m" in shown and "samsung SM-G935F" in shown
    log = cli_archive("log", check=True).stdout  # one run for both checks
    assert log.splitlines()[0].split()[:2] == ["SEQ", "TIME"]
    times = re.findall(r"\d{4}-\d\d-\d\d[T ][\d:.]+Z?", log)
    assert times and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", t) for t in times)


# Help, version, note --------------------------------------------------------------------------

def test_help_is_readable_for_every_command(capsys):
    names = ["", *leaf_commands()]
    for name in names:
        command().main([*name.split(), "--help"], prog_name="custody", standalone_mode=False)
        text = capsys.readouterr().out
        assert text.startswith(f"Usage: custody {name}".rstrip() + " "), (name, text)
        for bad in ("{", "}", "list[", "NoneType"):
            assert bad not in text, f"custody {name} --help shows {bad!r}:\n{text}"
        assert not re.search(r"<[A-Za-z_\[\]]+>", text), f"custody {name} --help:\n{text}"
        assert "python -m" not in text


def test_version(cli):
    r = cli("--version", check=True)
    assert re.fullmatch(r"custody \S+\n", r.stdout)


@pytest.mark.slow
def test_note_takes_its_text_as_an_argument_or_text_option(shelf):
    cli_archive, sha = shelf, ALEPPO[:12]
    cli_archive("note", sha, "positional text", check=True)
    cli_archive("note", sha, "--text", "option text", check=True)
    notes = [n["text"] for n in cli_archive("show", sha, "--json", check=True).json()["notes"]]
    assert notes == ["positional text", "option text"]
    both = cli_archive("note", sha, "one", "--text", "two")
    assert both.code == 2 and "give the note once" in one_line_error(both)
    neither = cli_archive("note", sha)
    assert neither.code == 2


def test_times_have_one_style_and_offset_unknown_is_marked():
    assert display.when("2026-11-29T13:18:44.048143Z") == "2026-11-29 13:18:44Z"
    assert display.when("2016-10-04T14:22:05+03:00") == "2016-10-04 14:22:05+03:00"
    assert display.when("2016-11-20T08:05:59Z", "camera-clock-offset-unknown") == "2016-11-20 08:05:59 local"
    assert display.when("2016-11-20T08:05:59", "camera-clock-offset-unknown") == "2016-11-20 08:05:59 local"
    assert display.when("2016-10-03") == "2016-10-03" and display.when(None) == "-"
    assert display.when("yesterday\n") == "yesterday\\n"


def test_tables_align_escaped_cells_under_a_header():
    lines = display.table(["A", "SIZE", "NAME"], [["x\ny", 5, "n\u202e"], ["long value", 12345, "m"]],
                          right=["SIZE"])
    assert lines == ["A" + " " * 12 + "SIZE  NAME",
                     "x\\ny" + " " * 12 + "5  n\\u202e",
                     "long value  12345  m"]
