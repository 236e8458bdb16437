"""verify's quick paths find exactly what its exact paths find.

A large log is walked with a worker per core checking each entry's canonical form and signature
and each object's fixity, and its metadata documents are read in one ordered scan; a damaged log
is walked again the exact way. Here the thresholds are lowered so a small real archive takes the
quick paths, and each damage must give the same report, word for word, as the exact paths.
"""

from __future__ import annotations

import pytest

from custody.core import entry as entries
from custody.ops import verify
from custody.ops.archive import Archive

from .test_tamper import (
    _db,
    _first_item,
    delete_object,
    edit_entry_note,
    edit_metadata_document,
    filled,  # noqa: F401 (a fixture)
    flip_object_byte,
    forge_signature,
    swap_entries,
)


def not_canonical_entry(cli):
    conn = _db(cli)
    body = bytes(conn.execute("SELECT body FROM entries WHERE seq = 2").fetchone()[0])
    spaced = body.replace(b'","', b'", "', 1)  # the same value, no longer RFC 8785's bytes
    conn.execute("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = 2",
                 (spaced, entries.leaf_hash(spaced)))
    return "entry 2: malformed"


def unrecorded_metadata_row(cli):
    _db(cli).execute("INSERT INTO metadata (sha256, doc) VALUES (?, ?)", ("ab" * 32, b"{}"))
    return "belongs to no recorded item"


def missing_metadata_row(cli):
    _db(cli).execute("DELETE FROM metadata WHERE sha256 = ?", (_first_item(cli),))
    return "its metadata document is missing"


def nothing(cli):
    return None


DAMAGES = [nothing, not_canonical_entry, forge_signature, edit_entry_note, swap_entries,
           flip_object_byte, delete_object, edit_metadata_document, unrecorded_metadata_row,
           missing_metadata_row]


def _report(root, monkeypatch, quick: bool):
    with monkeypatch.context() as m:
        if quick:
            m.setattr(verify, "PARALLEL_FROM", 1)
            m.setattr(verify, "METADATA_SCAN_FROM", 1)
        archive = Archive.open(root)
        try:
            return verify.audit(archive).to_json()
        finally:
            archive.ledger.close()


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.__name__ for d in DAMAGES])
def test_the_quick_paths_report_what_the_exact_paths_report(filled, damage, monkeypatch):  # noqa: F811
    expected = damage(filled)
    exact = _report(filled.archive, monkeypatch, quick=False)
    quick = _report(filled.archive, monkeypatch, quick=True)
    assert quick == exact
    if expected is None:
        assert quick["ok"], quick
    else:
        assert any(expected in p for p in quick["problems"]), quick["problems"]


def test_a_non_canonical_entry_is_named_by_the_command_too(filled):  # noqa: F811
    not_canonical_entry(filled)
    r = filled("verify", "--json")
    assert r.code == 1
    assert any(p.startswith("entry 2: malformed: JSON is not in RFC 8785 canonical form")
               for p in r.json()["problems"]), r.json()["problems"]
