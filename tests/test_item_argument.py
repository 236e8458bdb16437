"""An ITEM argument is a SHA-256 in hex or a prefix of 8 to 64 hex digits; anything else is a
usage error (exit 2) on every command that takes one, before anything is read or written."""

from __future__ import annotations

import hashlib

from .conftest import DATA, one_line_error

PHOTO = DATA / "media" / "aleppo-gps.jpg"
SHA = hashlib.sha256(PHOTO.read_bytes()).hexdigest()

COMMANDS = [
    ["show", "{ref}"],
    ["log", "{ref}"],
    ["verify", "{ref}"],
    ["get", "{ref}", "--purpose", "check", "-o", "{tmp}/copy.jpg"],
    ["transfer", "{ref}", "--to", "Alice Admin", "--purpose", "handover"],
    ["note", "{ref}", "--text", "a note"],
    ["tag", "{ref}", "checked"],
    ["case", "add", "{ref}", "--case", "C1"],
    ["prove", "{ref}"],
    ["export", "{ref}", "--purpose", "p", "-o", "{tmp}/pkg"],
    ["report", "{ref}", "-o", "{tmp}/r.html"],
    ["provenance", "{ref}"],
]


def test_a_66_hex_digit_item_is_a_usage_error_on_every_command(cli_archive, tmp_path):
    cli = cli_archive
    cli("ingest", PHOTO, check=True)
    size = len(cli("log", "--json", check=True).stdout.splitlines())
    for args in COMMANDS:
        r = cli(*[a.format(ref=SHA + "ab", tmp=tmp_path) for a in args])
        assert r.code == 2, (args[0], r.code, r.stderr)
        assert "is not an item" in one_line_error(r), (args[0], r.stderr)
    assert len(cli("log", "--json", check=True).stdout.splitlines()) == size
    assert not list(tmp_path.glob("copy.jpg")) and not list(tmp_path.glob("pkg*"))


def test_other_malformed_items_are_usage_errors_and_a_long_one_is_not_echoed_whole(cli_archive):
    for ref in ("abc", "zz" + SHA[2:], SHA + "0" * 5000):
        r = cli_archive("show", ref)
        assert r.code == 2, r.stderr
        line = one_line_error(r)
        assert "is not an item" in line and len(line) < 300


def test_a_full_sha256_and_an_8_digit_prefix_still_name_the_item(cli_archive):
    cli = cli_archive
    cli("ingest", PHOTO, check=True)
    for ref in (SHA, SHA[:8], SHA.upper()):
        assert cli("show", ref, "--json", check=True).json()["sha256"] == SHA
