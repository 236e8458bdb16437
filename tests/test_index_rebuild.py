"""A rebuild of the search index writes exactly the rows the per-item path writes (docs/PERFORMANCE.md
"Reindex"): an empty index is filled in bulk (store/index.py `_Bulk`) and entries and metadata
documents are read through orjson (custody/search/fastparse.py); the per-item path (every row by
its own statement, entries by `entry.parse`, documents by `json.loads`) is the reference. One real
archive made with the command (tests/data's JPEGs and videos; ingests, sightings, notes and a
superseded note, tags added and removed, cases filed and removed, incidents and a corrected one,
ExifTool readings, one that disagrees with the ingest), every table compared row by row.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from custody.core import entry as entries
from custody.ops.archive import Archive
from custody.search import fastparse, indexer, prefetch, render
from store.index import IndexStore, LocalIndex

from .conftest import DATA, Cli
from .test_enrich_attribution import _foreign_reading

LATE = ("Nikon.jpg", "Apple.jpg")  # ingested after the rest
MEDIA = ("aleppo-gps.jpg", "aleppo-gps.truncated-half.jpg", "carbon-south-west.jpg",
         "clock-no-offset.jpg", "damascus-apple-keys.mov", "douma-xyz.mov", "empty.bin",
         "homs-loci.mp4")


@dataclass
class Field:
    root: Path
    archive: Archive


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory, session_made_key: Any) -> Field:
    tmp = tmp_path_factory.mktemp("rebuild")
    key = tmp / "keys" / "alice.key"
    signer = session_made_key(key, "Alice Admin")
    cli = Cli(tmp, tmp / "archive", key)
    cli("init", "--name", "Rebuild Centre", check=True)
    card, again = tmp / "card", tmp / "again"
    card.mkdir()
    again.mkdir()
    for name in MEDIA:
        shutil.copy(DATA / "media" / name, card / name)
    for name in ("Canon.jpg", "GPS.jpg"):  # the fast path: ExifTool's reading comes later
        shutil.copy(DATA / "exiftool" / name, card / name)
    cli("ingest", card, "--case", "ALEPPO-2016", "--note", "collected 2016-10-04", check=True)
    shutil.copy(DATA / "media" / "aleppo-gps.jpg", again / "IMG_0042.JPG")  # a sighting
    cli("ingest", again, "--case", "OTHER-2016", "--note", "second card", check=True)
    cli("enrich", check=True)
    sha = {r["name"]: r["sha256"] for r in cli("list", "--json", check=True).json()}

    def seq(*args: str) -> int:
        return int(cli(*args, "--json", check=True).json()["entries"][0])

    # a tag taken off an item whose rows the fill still holds (nothing before made it write)
    seq("tag", sha["clock-no-offset.jpg"], "check")
    seq("tag", sha["clock-no-offset.jpg"], "check", "--remove")
    first = seq("incident", "new", "M10-STRIKE", "--date", "2016-10-03", "--case", "ALEPPO-2016",
                "--place", "36.2,37.14,M10 hospital", "--description", "strike on a hospital")
    seq("incident", "new", "M10-STRIKE", "--date", "2016-10-03", "--case", "ALEPPO-2016",
        "--place", "36.2,37.14,M10 hospital", "--description", "strike on the M10 hospital",
        "--supersedes", str(first))
    seq("incident", "add", "M10-STRIKE", sha["aleppo-gps.jpg"], sha["carbon-south-west.jpg"])
    # an incident of a case its item is not in: the item's search row holds that case too; a
    # later card's item linked to it while a bulk fill still holds the item's rows (nothing
    # after the ingest makes the fill write), and one of its items in no incident
    seq("incident", "new", "DOUMA-AMBULANCE", "--date", "2016-10-05", "--case", "DOUMA-2016",
        "--description", "ambulance hit")
    seq("incident", "add", "DOUMA-AMBULANCE", sha["douma-xyz.mov"])
    late = tmp / "late"
    late.mkdir()
    for name in LATE:
        shutil.copy(DATA / "exiftool" / name, late / name)
    cli("ingest", late, "--case", "LATE-2016", check=True)
    sha = {r["name"]: r["sha256"] for r in cli("list", "--json", check=True).json()}
    seq("incident", "add", "DOUMA-AMBULANCE", sha["Nikon.jpg"])
    note = seq("note", sha["douma-xyz.mov"], "--text", "Ambulance hit near the market")
    seq("note", sha["douma-xyz.mov"], "--text", "Ambulance hit near the bakery",
        "--supersedes", str(note))
    seq("tag", sha["carbon-south-west.jpg"], "calibration")
    seq("tag", sha["douma-xyz.mov"], "calibration")
    seq("tag", sha["douma-xyz.mov"], "calibration", "--remove")
    seq("tag", sha["homs-loci.mp4"], "Zeta")
    seq("case", "add", sha["homs-loci.mp4"], sha["empty.bin"], "--case", "HOMS-2016")
    cli("case", "remove", sha["empty.bin"], "--case", "HOMS-2016", "--reason", "filed by mistake",
        check=True)
    _foreign_reading(tmp / "archive", signer, sha["GPS.jpg"],
                     {"captured_at": "2016-10-04T09:00:00Z"})  # disagrees: a warning
    return Field(tmp / "archive", Archive.open(tmp / "archive"))


class PerItemIndex(IndexStore):
    """The index written as before bulk fills: every row by its own statement."""

    @contextmanager
    def writing(self) -> Iterator[None]:
        with super().writing():
            self._bulk = None
            yield

    def reset(self, *, zero: bool = True) -> None:
        super().reset(zero=zero)
        self._bulk = None


@contextmanager
def standard_readers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as m:
        m.setattr(fastparse, "entry", entries.parse)
        m.setattr(fastparse, "document", json.loads)
        yield


def rows(store: IndexStore) -> dict[str, list[Any]]:
    """Every row of every table, with the file's own row ids."""
    conn: sqlite3.Connection = store.conn
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'item_geo_%' "
        "AND name NOT LIKE 'item_text_%' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    found = {}
    for table in tables:
        columns = "rowid, *" if table in ("items", "notes", "incidents", "item_text") else "*"
        found[table] = sorted(conn.execute(f"SELECT {columns} FROM {table}"), key=repr)
    return found


def test_a_bulk_rebuild_writes_every_row_the_per_item_path_writes(field: Field,
                                                                  monkeypatch: pytest.MonkeyPatch):
    with standard_readers(monkeypatch):
        before = PerItemIndex(None)
        done_before = indexer.refresh(field.archive, before, rebuild=True)
    after = IndexStore(None)
    done = indexer.refresh(field.archive, after, rebuild=True)
    assert done == done_before
    assert done["items"] == len(MEDIA) + 2 + len(LATE) and done["skipped_entries"] == 0
    expected = rows(before)
    assert rows(after) == expected
    # what the archive holds shows in the rows compared (not an empty comparison)
    assert any("bakery" in r[3] for r in expected["notes"])
    assert not any("market" in r[3] for r in expected["notes"])  # superseded
    assert any("later reading disagrees" in (r[15] or "") for r in expected["items"])
    assert expected["item_tags"] and expected["incidents"] and expected["item_geo"]


def test_a_document_that_is_not_the_signed_one_is_not_read_whatever_it_holds(
        field: Field, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A metadata document replaced by an insider (not JSON at all, or another reading) is not
    the one its entry signed: a warning, never a parse of it (a parse would fail the search)."""
    shutil.copytree(field.root, tmp_path / "archive")
    aleppo, douma = (r.item for r in field.archive.ledger.rows()
                     if r.action == "ingest" and r.item is not None
                     and json.loads(r.body)["details"]["source"]["name"] in (
                         "aleppo-gps.jpg", "douma-xyz.mov"))
    with sqlite3.connect(tmp_path / "archive" / "ledger.db") as db:
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                     "AND tbl_name = 'metadata'").fetchall():
            db.execute(f"DROP TRIGGER {trigger}")  # an insider with the file can
        db.execute("UPDATE metadata SET doc = ? WHERE sha256 = ?", (b"\x00not json", aleppo))
        db.execute("UPDATE metadata SET doc = ? WHERE sha256 = ?", (b'{"gps": 1}', douma))
    archive = Archive.open(tmp_path / "archive")
    with standard_readers(monkeypatch):
        reference = PerItemIndex(None)
        indexer.refresh(archive, reference)
    fresh, forked = IndexStore(None), IndexStore(None)
    indexer.refresh(archive, fresh)
    monkeypatch.setattr(prefetch, "MIN_ENTRIES", 1)  # the forked reader reads them too
    indexer.refresh(archive, forked)
    assert rows(fresh) == rows(forked) == rows(reference)
    mismatched = [r for r in rows(fresh)["items"] if "does not match" in (r[15] or "")]
    assert len(mismatched) == 2


def test_bulk_fills_of_an_existing_file_of_a_scratch_and_in_parts_agree(
        field: Field, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A rebuild of index.db (the reset path), verify's empty scratch (the empty-at-start path),
    and a refresh in two parts (a bulk fill, then the per-item path on a filled index)."""
    with standard_readers(monkeypatch):
        reference = PerItemIndex(None)
        indexer.refresh(field.archive, reference)
    expected = rows(reference)
    local = LocalIndex(tmp_path).open()
    indexer.refresh(field.archive, local)  # an empty file: bulk
    indexer.refresh(field.archive, local, rebuild=True)  # dropped and rebuilt: bulk again
    assert rows(local) == expected
    scratch = local.scratch()
    indexer.refresh(field.archive, scratch)
    assert rows(scratch) == expected
    halfway = field.archive.ledger.size() // 2
    parts = IndexStore(None)
    indexer.refresh(field.archive, parts, until=halfway)
    indexer.refresh(field.archive, parts)
    assert rows(parts) == expected
    for store in (local, scratch, parts, reference):
        store.close()


def test_documents_read_by_the_forked_reader_give_the_same_rows_and_leave_no_process(
        field: Field, monkeypatch: pytest.MonkeyPatch):
    """custody/search/prefetch.py, made to start at any size: its readings are used (not all read
    again here), the rows are the per-item path's, and the reader is reaped."""
    with standard_readers(monkeypatch):
        reference = PerItemIndex(None)
        indexer.refresh(field.archive, reference)
    used = []
    get = prefetch.Prefetch.get

    def counted(self: prefetch.Prefetch, seq: int, item: str) -> prefetch.Found:
        found = get(self, seq, item)
        used.append(found is not prefetch.NOT_PREFETCHED)
        return found

    monkeypatch.setattr(prefetch, "MIN_ENTRIES", 1)
    monkeypatch.setattr(prefetch, "BATCH", 3)
    monkeypatch.setattr(prefetch.Prefetch, "get", counted)
    fresh = IndexStore(None)
    indexer.refresh(field.archive, fresh, rebuild=True)
    assert rows(fresh) == rows(reference)
    assert len(used) == len(MEDIA) + 2 + len(LATE) and all(used)  # every first record's, read there
    assert _children() == []


def _pipes_grow_to_a_mebibyte() -> bool:
    limit = Path("/proc/sys/fs/pipe-max-size")
    return hasattr(fcntl, "F_GETPIPE_SZ") and limit.exists() and \
        int(limit.read_text()) >= 1 << 20


@pytest.mark.skipif(not _pipes_grow_to_a_mebibyte(),
                    reason="Linux pipes whose size may be raised to 1 MiB")
def test_the_forked_reader_may_run_a_mebibyte_of_readings_ahead(field: Field,
                                                                 monkeypatch: pytest.MonkeyPatch):
    """A batch of 256 readings of real documents pickles to about 60 KB, about all a default
    pipe holds (64 KiB): the reader could never be more than one batch ahead of the indexer, so
    each waited for the other (docs/PERFORMANCE.md "Reindex, round 30")."""
    monkeypatch.setattr(prefetch, "MIN_ENTRIES", 1)
    reader = prefetch.Prefetch.start(field.archive, 0, None)
    assert reader is not None and reader._stream is not None
    try:
        assert fcntl.fcntl(reader._stream.fileno(), fcntl.F_GETPIPE_SZ) >= 1 << 20
    finally:
        reader.close()
    assert _children() == []


def _children() -> list[str]:
    """This process's children that are still there (running or not yet reaped)."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        found += (task / "children").read_text().split()
    return found


# fastparse: orjson where it gives the standard readers' answer, and only there -------------------

GOOD = {"v": 1, "log": "l", "seq": 3, "time": "2016-10-03T11:22:05Z", "actor": "a",
        "action": "note", "item": "ab" * 32, "details": {"text": "x"}, "prev": "cd" * 32}


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _with(details: Any) -> bytes:
    return _canonical({**GOOD, "details": details})


ENTRY_BYTES = [
    _canonical(GOOD),
    _with({"text": "".join(map(chr, range(0x20))) + "\"\\/\x7f\u2028é漢\U0001F600"}),
    _with({"n": 2**53 - 1}), _with({"n": 2**53}), _with({"n": -(2**53)}), _with({"n": 2**70}),
    _with({"f": 1.5}), _with({"f": 1.0}), _with({"f": 1e21}), _with({"f": -0.0}),
    _with({"\ue000": 1, "a": 2}), _with({"\U0001F600": 1}), _with({"é": 1, "z": 2}),
    _with({"deep": json.loads("[" * 130 + "]" * 130)}),
    _with({"deep": json.loads("[" * 120 + "]" * 120)}),
    _canonical(GOOD).replace(b'"seq":3', b'"seq": 3'),  # not canonical: spacing
    json.dumps(GOOD, separators=(",", ":")).encode(),  # not canonical: the members' order
    _canonical(GOOD)[:-1] + b',"v":1}',  # a duplicate key
    b"\xef\xbb\xbf" + _canonical(GOOD),  # a byte-order mark
    _with({"t": "x"}).replace(b'"x"', b'"\\ud800"'),  # a lone surrogate
    _with({"t": "x"}).replace(b'"x"', b'"\\u0041"'),  # an escape canonical form does not use
    _with({"t": "x"}).replace(b'"x"', b"NaN"), _with({"t": "x"}).replace(b'"x"', b"1E400"),
    _with({"t": "x"}).replace(b'"x"', b'"\xff"'),  # not UTF-8
    _canonical({**GOOD, "seq": -1}), _canonical({**GOOD, "v": 3}), _canonical([GOOD]),
    _canonical({k: v for k, v in GOOD.items() if k != "prev"}), b"", b"{", b"null",
]


@pytest.mark.parametrize("body", ENTRY_BYTES)
def test_fastparse_reads_an_entry_as_entry_parse_does(body: bytes):
    def outcome(parse: Any) -> Any:
        try:
            return parse(body)
        except entries.MalformedEntry:
            return "malformed"

    assert outcome(fastparse.entry) == outcome(entries.parse)


DOCUMENTS = [b'{"a":1,"a":{"b":2},"c":[1.5,-0,1e5]}', b"NaN", b'{"x":Infinity}', b"1E400",
             b"12345678901234567890", b"-9223372036854775809", b'[18446744073709551615]',
             b'"\\ud800"', b"\xef\xbb\xbf{}", '{"é":"漢"}'.encode("utf-16"),
             b"[" * 2000 + b"]" * 2000, b"{", b'{"gps":{"lat":1e400}}', b"0.30000000000000004441"]


@pytest.mark.parametrize("raw", DOCUMENTS)
def test_fastparse_reads_a_document_as_json_loads_does(raw: bytes):
    def outcome(parse: Any) -> Any:
        try:
            value = parse(raw)
        except (ValueError, RecursionError) as exc:
            return type(exc)
        return _tokens(value)

    assert outcome(fastparse.document) == outcome(json.loads)


def _tokens(value: Any) -> list[str]:
    """A value as a flat list of typed tokens (repr would recurse: a document may nest 2,000
    deep); `repr` of each scalar tells an int from a float and -0.0 from 0.0."""
    out, stack = [], [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            out.append(f"{{{len(v)}")
            for k, x in reversed(list(v.items())):
                stack += [x, repr(k)]
        elif isinstance(v, list):
            out.append(f"[{len(v)}")
            stack += reversed(v)
        else:
            out.append(f"{type(v).__name__}:{v!r}")
    return out


def test_fastparse_reads_every_real_entry_and_document_as_the_standard_readers(field: Field):
    ledger = field.archive.ledger
    for row in ledger.rows():
        assert fastparse.entry(row.body) == entries.parse(row.body)
    for _, doc in ledger.all_metadata():
        assert _tokens(fastparse.document(doc)) == _tokens(json.loads(doc))


def test_a_note_that_moves_to_another_item_in_a_bulk_fill_leaves_both_lists_right():
    """The adapter alone (no indexer): a note's entry written again for another item (INSERT OR
    REPLACE moves it), and a tag taken off a held item, give the per-item path's rows."""
    a, b = "aa" * 32, "bb" * 32

    def fill(store: IndexStore) -> dict[str, list[Any]]:
        with store.writing():
            store.ensure_item(a, 1)
            store.ensure_item(b, 2)
            store.add_name(a, "a.jpg", 1)
            store.put_note(5, a, "about a")
            store.has_item(a)  # a read: what the fill held is written, a's lists with it
            store.link("tag", "t", b, 6)
            store.put_note(5, b, "about b, after all")
            store.link("tag", "t", b, 7, present=False)
            store.refresh_items([a, b])
        return rows(store)

    assert fill(IndexStore(None)) == fill(PerItemIndex(None))


def test_links_and_notes_written_before_an_items_first_record_are_in_its_lists():
    """A tag, note or case logged about an item before the entry that records it (the replay
    flags such an entry; the index still mirrors the log): the bulk fill made the item's lists
    from what it held and lost them, in one transaction and across two (review, round 27)."""
    x = "cc" * 32

    def early_links(store: IndexStore) -> None:
        store.link("tag", "foo", x, 1)
        store.put_note(2, x, "secret words")
        store.link("case", "C1", x, 3)

    def recorded(store: IndexStore) -> None:
        store.ensure_item(x, 4)
        store.add_name(x, "photo.jpg", 4)
        store.refresh_items([x])

    def one(store: IndexStore) -> dict[str, list[Any]]:
        with store.writing():
            early_links(store)
            recorded(store)
        return rows(store)

    def two(store: IndexStore) -> dict[str, list[Any]]:
        with store.writing():
            early_links(store)
        with store.writing():
            recorded(store)
        return rows(store)

    for fill in (one, two):
        bulk = IndexStore(None)
        assert fill(bulk) == fill(PerItemIndex(None))
        item = bulk.item(x)
        assert item is not None
        assert (item.names, item.notes, item.cases, item.tags) == \
            (["photo.jpg"], ["secret words"], ["C1"], ["foo"])
        assert [r[0] for r in bulk.conn.execute("SELECT body FROM item_text")] == \
            ["photo.jpg\nsecret words"]


def test_rows_held_in_key_order_keep_the_first_of_each_key_and_every_row():
    """A fill writes each held statement's rows in key order (round 30): items logged in random
    SHA-256 order, each named and tagged twice (INSERT OR IGNORE keeps the first), and rendered
    as they are written: the per-item path's rows, and each list's earliest seq kept."""
    shas = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(40)]
    rendered_at_end = {}

    def fill(store: IndexStore) -> dict[str, list[Any]]:
        with store.writing():
            render.render_while_writing(store)
            for n, sha in enumerate(shas):
                seq = 10 * n
                store.ensure_item(sha, seq)
                store.add_name(sha, f"IMG_{n:04d}.JPG", seq)
                store.link("tag", "hospital", sha, seq + 1)
                store.link("case", "C1", sha, seq + 2)
                # a received document may say -0 (not canonical): SQLite reads a whole REAL back
                # as 0.0, and a row rendered as it is written must say what a read would
                store.set_facts(sha, captured_at=None, captured_text=None, captured_t=None,
                                basis=None, lat=-0.0, lon=-0.0 if n % 2 else 37.1, alt=-0.0,
                                make=None, model=None, mime="image/jpeg", time_bounds=None,
                                warnings=[], c2pa="none")
            for n, sha in enumerate(reversed(shas)):  # the same keys again, later
                store.add_name(sha, f"IMG_{39 - n:04d}.JPG", 1000 + n)
                store.link("tag", "hospital", sha, 2000 + n)
            store.refresh_items(shas)
            rendered_at_end[type(store).__name__] = render.render_stale_rows(store)
        return rows(store)

    bulk = fill(IndexStore(None))
    assert bulk == fill(PerItemIndex(None))
    assert sorted(r[2] for r in bulk["item_tags"]) == [10 * n + 1 for n in range(40)]
    assert sorted(r[2] for r in bulk["item_names"]) == [10 * n for n in range(40)]
    assert all(r[-1] is not None for r in bulk["items"])  # every search row kept
    assert all(b'"alt": 0.0' in r[-1] and b"-0.0" not in r[-1] for r in bulk["items"])
    # the fill rendered its items as it wrote them; the per-item path renders them at the end
    assert rendered_at_end == {"IndexStore": 0, "PerItemIndex": len(shas)}



def _padded(store: IndexStore, marker: str, count: int = 3000) -> None:
    """About 6 MiB of note rows, each holding `marker`."""
    with store.writing():
        for n in range(count):
            sha = hashlib.sha256(f"{marker}{n}".encode()).hexdigest()
            store.ensure_item(sha, n)
            store.put_note(n, sha, f"{marker} {n} " + "x" * 2000)


def _wal_after_checkpoint(store: IndexStore, folder: Path) -> Path:
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = folder / "index.db-wal"
    assert wal.stat().st_size == 0
    return wal


def test_a_reset_may_leave_the_pages_it_frees_unzeroed_and_by_default_does_not(tmp_path: Path):
    """reset(zero=False) drops every table without overwriting the pages they free: with
    SQLite's secure_delete on (Debian builds it so) a DROP wrote the whole old index again, as
    zeros, into the WAL (round 32). reset() still zeroes them. The connection's own setting is
    put back either way, and the index is empty and usable after."""
    store = IndexStore(tmp_path / "index.db")
    store.conn.execute("PRAGMA secure_delete = ON")  # as Debian's build has it, whatever this one's
    for zero in (False, True):
        _padded(store, f"round-{zero}")
        wal = _wal_after_checkpoint(store, tmp_path)
        index_bytes = (tmp_path / "index.db").stat().st_size
        assert index_bytes > 6 << 20
        with store.writing():
            store.reset(zero=zero)
        if zero:
            assert wal.stat().st_size > index_bytes / 2  # every freed page written again, as zeros
        else:
            assert wal.stat().st_size < index_bytes / 10
        assert store.conn.execute("PRAGMA main.secure_delete").fetchone()[0] == 1
        assert store.count_items() == 0
    with store.writing():
        store.ensure_item("a" * 64, 0)
    assert store.count_items() == 1


def test_a_rebuild_zeroes_only_what_the_ledger_beside_it_does_not_hold(field: Field,
                                                                       tmp_path: Path):
    """--reindex of this archive's own index leaves the pages it frees as they were (every row
    came from the ledger beside it, which holds them in the clear); an index of another archive,
    or one whose last entry this ledger no longer holds, is zeroed as it is dropped."""
    root = tmp_path / "archive"
    shutil.copytree(field.root, root)
    archive = Archive.open(root)
    try:
        store = LocalIndex(root).open()
        store.conn.execute("PRAGMA secure_delete = ON")
        items = set()
        for case in ("own, asked", "another archive's", "past this ledger's end"):
            _padded(store, "old rows")
            with store.writing():
                if case == "another archive's":
                    store.put("origin", "another archive")
                elif case == "past this ledger's end":
                    store.put("last_seq", str(archive.ledger.size() + 5))
            wal = _wal_after_checkpoint(store, root)
            index_bytes = (root / "index.db").stat().st_size
            done = indexer.refresh(archive, store, rebuild=case == "own, asked")
            assert done["rebuilt"] is not None
            items.add(done["items"])
            zeroed = wal.stat().st_size > index_bytes / 2
            assert zeroed == (case != "own, asked"), case
        assert len(items) == 1 and items.pop() > 10  # the archive's items, the padding gone
        store.close()
    finally:
        archive.ledger.close()


def test_a_sealed_archives_index_saved_after_a_rebuild_holds_no_row_from_before(tmp_path: Path):
    """A sealed archive's index is a database in memory, saved whole (`serialize`, free pages
    included) in an age file: its reset always zeroes what it frees, whatever it is asked, or the
    saved file would carry rows from before the rebuild (review, round 32)."""
    import pyrage

    from store.sealed_index import SealedIndexStore

    key = pyrage.x25519.Identity.generate()
    sealed = tmp_path / "index.age"

    def opened() -> SealedIndexStore:
        store = SealedIndexStore(sealed, [key], key.to_public())
        store.conn.execute("PRAGMA secure_delete = ON")
        return store

    store = opened()
    _padded(store, "before the rebuild", 300)
    with store.writing():
        store.put("last_seq", "299")  # the index moved on: saved when closed
    store.close()
    assert b"before the rebuild" in pyrage.decrypt(sealed.read_bytes(), [key])
    store = opened()
    with store.writing():
        store.reset(zero=False)
        store.ensure_item("a" * 64, 0)
    store.close()
    saved = pyrage.decrypt(sealed.read_bytes(), [key])
    assert b"before the rebuild" not in saved
    assert saved.startswith(b"SQLite format 3")
