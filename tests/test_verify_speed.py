"""verify's quick paths find exactly what its exact paths find.

A large log is walked with a worker per core checking each entry's canonical form and signature
and each object's fixity, and its metadata documents are read in one ordered scan; a damaged log
is walked again the exact way; the search index is checked on a worker beside the walk; the
replay's state is kept in scratch tables, mostly on disk. Here the thresholds are lowered so a
small real archive takes the quick paths (its replay's state written out past two values a
table), and each damage must give the same report, word for word, as the exact paths.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from custody.core import entry as entries
from custody.ops import verify
from custody.ops.archive import Archive
from store import spill

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


def drop_a_search_index_row(cli):
    cli("search", "--json", check=True)  # the index is made and brought up to date
    conn = sqlite3.connect(cli.archive / "index.db", isolation_level=None)
    conn.execute("DELETE FROM item_names WHERE sha256 = ?", (_first_item(cli),))
    conn.close()
    return "search index: item"


def edit_a_kept_search_row(cli):
    cli("search", "--json", check=True)
    conn = sqlite3.connect(cli.archive / "index.db", isolation_level=None)
    conn.execute("UPDATE items SET row_json = CAST('{}' AS BLOB) WHERE sha256 = ?",
                 (_first_item(cli),))
    conn.close()
    return f"search index: item {_first_item(cli)}: listed row"


def nothing(cli):
    return None


DAMAGES = [nothing, not_canonical_entry, forge_signature, edit_entry_note, swap_entries,
           flip_object_byte, delete_object, edit_metadata_document, unrecorded_metadata_row,
           missing_metadata_row, drop_a_search_index_row, edit_a_kept_search_row]


def _report(root, monkeypatch, quick: bool):
    with monkeypatch.context() as m:
        if quick:
            m.setattr(verify, "PARALLEL_FROM", 1)
            m.setattr(verify, "METADATA_SCAN_FROM", 1)
            m.setattr(spill, "HOT", 2)  # the replay's state written out past 2 values a table
            m.setattr(spill, "EVICT", 1)
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


def _children() -> list[tuple[int, str]]:
    """This process's children and their state (Z: a zombie), from /proc."""
    me, found = os.getpid(), []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # not a process, or gone meanwhile
        if int(fields[1]) == me:
            found.append((int(proc.name), fields[0]))
    return found


def test_a_verify_with_workers_leaves_no_process_and_no_zombie_behind(filled, monkeypatch):  # noqa: F811
    filled("search", "--json", check=True)  # an index.db: its check runs on a worker too
    before = set(_children())
    report = _report(filled.archive, monkeypatch, quick=True)
    assert report["ok"], report
    assert [c for c in _children() if c not in before] == []


def test_a_local_folder_is_not_asked_for_retention_and_a_store_that_keeps_one_is(
        filled, monkeypatch):  # noqa: F811
    """A local folder keeps no retention: verify does not stat every object again to be told so
    (round 32: 8% of the verifying process at 100,000). A store that keeps one (S3 Object Lock,
    tests/test_s3_backend.py on radosgw) is still asked for each intact object."""
    from store.local_objects import LocalObjectStore

    asked: list[str] = []

    def retention(self, sha256):  # noqa: ANN001
        asked.append(sha256)
        return None

    monkeypatch.setattr(LocalObjectStore, "retention", retention)
    report = _report(filled.archive, monkeypatch, quick=False)
    assert report["ok"] and report["objects_checked"] > 0, report
    assert asked == []
    monkeypatch.setattr(LocalObjectStore, "keeps_retention", True)
    report = _report(filled.archive, monkeypatch, quick=False)
    assert report["ok"] and sorted(asked) == sorted(set(asked)) and len(asked) == report["objects_checked"]
