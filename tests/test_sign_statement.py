"""`custody sign-statement`: a web page's draft signed on the custodian's device, then appended by
`custody submit` as the server appends it; a bad or someone else's draft signs nothing."""

from __future__ import annotations

import json

from custody.core.signing import SigningKey
from custody.ops import drafts
from tests.conftest import one_line_error


def test_a_signed_draft_is_appended_and_a_bad_draft_signs_nothing(cli_archive, tmp_path):
    cli = cli_archive
    item = tmp_path / "note.txt"
    item.write_text("evidence")
    cli("ingest", item, check=True)
    sha = cli("list", "--json", check=True).json()[0]["sha256"]
    origin = json.loads((cli.archive / "custody.json").read_text())["origin"]
    actor = json.loads(cli("log", "--json", check=True).stdout.splitlines()[-1])["actor"]
    draft = drafts.as_text(drafts.compose(origin, actor, "note", sha,
                                          {"text": "seen by the team", "supersedes": None}))
    signed = cli("sign-statement", draft, check=True)
    assert "action:  note" in signed.stderr and "seen by the team" in signed.stderr
    (tmp_path / "statement.json").write_text(signed.stdout)
    cli("submit", tmp_path / "statement.json", check=True)
    notes = cli("show", sha, "--json", check=True).json()["notes"]
    assert [n["text"] for n in notes] == ["seen by the team"]

    broken = cli("sign-statement", "custody-draft:not-a-statement")
    assert broken.code == 2 and "statement draft" in one_line_error(broken)
    other = SigningKey.generate("Someone Else").key_id
    theirs = drafts.as_text(drafts.compose(origin, other, "note", sha, {"text": "x",
                                                                         "supersedes": None}))
    refused = cli("sign-statement", theirs)
    assert refused.code == 2 and "not yours" in one_line_error(refused)
    assert refused.stdout == ""
