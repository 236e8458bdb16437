"""The search index contract, run on both adapters: one real archive (made with the command from the
media in tests/data) replayed by custody's own indexer into the SQLite index (store/index.py) and
into the PostgreSQL index (store/pg_index.py, a real server), then the same searches, cross-
references and look-alike queries on both: the same rows in the same order, and the expected ones.
"""

from __future__ import annotations

import json
import time as clock
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from PIL import Image

from custody.ops.archive import Archive
from custody.search import crossref as xref
from custody.search import query as search
from custody.search import render
from custody.search.indexer import refresh
from custody.search.similar import _similar
from custody.search.times import OFFSET_UNKNOWN
from store.index import LocalIndex
from store.index_port import COMPARED, Box, IndexUnusable, ItemQuery, SearchIndex, TimeRange
from store.pg_index import SCHEMA, PostgresIndexLocation

from .conftest import DATA, Cli
from .s3_services import drop_database, new_database
from .test_search import HUAWEI, offset_unknown_jpeg

MEDIA = ("aleppo-gps.jpg", "aleppo-gps.truncated-half.jpg", "carbon-south-west.jpg",
         "clock-no-offset.jpg", "damascus-apple-keys.mov", "douma-xyz.mov", "empty.bin",
         "homs-loci.mp4", "santiago-android.mp4")
ALEPPO = {"aleppo-gps.jpg", "aleppo-gps.truncated-half.jpg"}
GPX = DATA / "tracks" / "flights.gpx"
ADAPTERS = ("sqlite", "postgresql")


@dataclass
class Field:
    archive: Archive
    sha: dict[str, str]
    indexes: dict[str, SearchIndex]


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory, pg_server: str) -> Iterator[Field]:
    tmp = tmp_path_factory.mktemp("contract")
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    cli("key", "new", "--name", "Alice Admin", check=True)
    cli("init", "--name", "Contract Centre", check=True)
    card = tmp / "card"
    card.mkdir()
    for name in MEDIA:
        (card / name).write_bytes((DATA / "media" / name).read_bytes())
    for name in ("ribbons.jpg", "window.jpg"):
        (card / name).write_bytes((DATA / "similar" / name).read_bytes())
    Image.open(DATA / "similar" / "ribbons.jpg").convert("RGB").save(
        card / "ribbons-reencoded.jpg", "JPEG", quality=25)
    cli("ingest", card, "--case", "ALEPPO-2016", "--note", "collected 2016-10-04", check=True)
    offset_unknown_jpeg(tmp / "phone" / HUAWEI)
    cli("ingest", tmp / "phone", "--case", "OTHER-2016", check=True)
    sha = {r["name"]: r["sha256"] for r in cli("list", "--json", check=True).json()}

    def run(*args: str) -> None:
        cli(*args, "--json", check=True)

    run("incident", "new", "M10-STRIKE", "--date", "2016-10-03", "--case", "ALEPPO-2016",
        "--place", "36.2,37.14,M10 hospital", "--description", "strike on a hospital")
    run("incident", "add", "M10-STRIKE", sha["aleppo-gps.jpg"],
        sha["aleppo-gps.truncated-half.jpg"])
    run("incident", "new", "HOMS-1", "--date", "2016-10-05T10:15:00+03:00", "--case",
        "HOMS-2016", "--place", "34.735,36.715", "--description", "shelling of the market")
    run("incident", "add", "HOMS-1", sha["homs-loci.mp4"])
    run("note", sha["douma-xyz.mov"], "--text", "Ambulance hit near the market")
    run("tag", sha["carbon-south-west.jpg"], "calibration")
    run("tag", sha["douma-xyz.mov"], "calibration")
    run("tag", sha["douma-xyz.mov"], "calibration", "--remove")

    for tag in ("alpha", "Zeta", "_under"):  # in byte order Z < _ < a; in English a < _ < Z
        run("tag", sha["homs-loci.mp4"], tag)

    archive = Archive.open(tmp / "archive")
    url = new_database(pg_server, icu_locale="en-US")  # sorts Zeta after alpha unless told
    indexes: dict[str, SearchIndex] = {"sqlite": LocalIndex(tmp / "archive").open(),
                                       "postgresql": PostgresIndexLocation(url).open()}
    for store in indexes.values():
        refresh(archive, store, rebuild=True)
    yield Field(archive, sha, indexes)
    for store in indexes.values():
        store.close()
    drop_database(pg_server, url)


# The queries: every kind `custody search`, `crossref` and `similar` asks of the index ------------

def _box(lat: float, lon: float, km: float) -> Box:
    d = km / 111.0
    return (lat - d, lat + d, lon - d, lon + d)


WINDOW = TimeRange("2016-10-03T00:00:00.000000Z", "2016-10-05T23:59:59.999999Z")
WIDE = TimeRange("2016-10-03T20:00:00.000000Z", "2016-10-03T22:00:00.000000Z",
                 wide_basis=OFFSET_UNKNOWN, wide_lo="2016-10-02T20:00:00.000000Z",
                 wide_hi="2016-10-04T22:00:00.000000Z")
QUERIES: dict[str, ItemQuery] = {
    "all": ItemQuery(),
    "window": ItemQuery(time=WINDOW),
    "wide-clock": ItemQuery(time=WIDE),
    "aleppo": ItemQuery(boxes=(_box(36.2021, 37.1343, 1.0),)),
    "two-boxes": ItemQuery(boxes=(_box(36.2021, 37.1343, 1.0), (-60.0, -30.0, -80.0, -60.0))),
    "window-aleppo": ItemQuery(time=WINDOW, boxes=(_box(36.2, 37.13, 5.0),)),
    "case": ItemQuery(case="ALEPPO-2016"),
    "case-by-incident": ItemQuery(case="HOMS-2016"),
    "incident": ItemQuery(incident="M10-STRIKE"),
    "tag": ItemQuery(tag="calibration"),
    "device": ItemQuery(device="SM-G93"),
    "mime-prefix": ItemQuery(mime="video/"),
    "mime": ItemQuery(mime="image/jpeg"),
    "words": ItemQuery(words=("ambulance",)),
    "short-word": ItemQuery(words=("gp",)),
    "two-words": ItemQuery(words=("collected", "aleppo")),
    "like-chars": ItemQuery(words=("100%_",)),
}
SEARCHES: dict[str, search.Search] = {
    "window": search.Search(since="2016-10-03", until="2016-10-05"),
    "near": search.Search(near="36.2,37.13", within_km=1.0, list_unplaced=True),
    "far": search.Search(near="34.73,36.71", within_km=200.0),
    "antimeridian": search.Search(bbox="170,-60,-60,-30"),
    "text": search.Search(text="POINTER collected"),
    "case-mime-device": search.Search(case="ALEPPO-2016", mime="video/mp4", device="samsung"),
    "incident": search.Search(incident="M10-STRIKE"),
    "limit": search.Search(case="ALEPPO-2016", limit=3),
}
CROSSREFS: dict[str, xref.Crossref] = {
    "items": xref.Crossref(track=GPX, km=5.0, minutes=10.0),
    "tolerance": xref.Crossref(track=GPX, km=5.0, minutes=4.0, clock_tolerance=60.0),
    "case": xref.Crossref(track=GPX, km=5.0, minutes=10.0, case="OTHER-2016"),
    "incidents": xref.Crossref(track=GPX, km=20.0, minutes=600.0, incidents=True),
}


def _rows(store: SearchIndex, q: ItemQuery, **modes: Any) -> list[tuple[Any, ...]]:
    return [tuple(r._replace(id=0)) for r in store.select(q, **modes)]  # ids are the adapter's


def answers(f: Field, store: SearchIndex) -> dict[str, Any]:
    """Everything the contract compares, by name."""
    out: dict[str, Any] = {}
    for name, q in QUERIES.items():
        for time in ("match", "missing", "either"):
            for place in ("match", "missing", "either"):
                out[f"select {name} {time} {place}"] = _rows(store, q, time=time, place=place)
                out[f"count {name} {time} {place}"] = store.count(q, time=time, place=place)
        out[f"limit {name}"] = _rows(store, q, limit=2)
        out[f"missing {name}"] = store.count_missing(q)
    for name, s in SEARCHES.items():
        out[f"search {name}"] = search.find(store, s)
    for name, x in CROSSREFS.items():
        out[f"crossref {name}"] = xref.cross(store, x, draw_track=True)
    out["similar"] = _similar(store, f.sha["ribbons.jpg"], 10).to_json()
    out["perceptual"] = list(store.perceptual_rows())
    out["unhashed"] = list(store.unhashed())
    out["incidents"] = store.incidents()
    out["incidents of a case"] = store.incidents("ALEPPO-2016")
    out["incident"] = store.incident("HOMS-1")
    out["facts"] = [store.item(s) and store.item(s)._replace(id=0)  # type: ignore[union-attr]
                    for s in sorted(f.sha.values())]
    out["known"] = [store.case_known(c) for c in ("ALEPPO-2016", "HOMS-2016", "NONE")]
    out["linked"] = [store.incident_linked(i) for i in ("M10-STRIKE", "NONE")]
    out["items"] = store.count_items()
    for table in COMPARED:
        if table != "item_geo":  # SQLite's R*Tree keeps 32-bit floats: compared below
            out[f"rows {table}"] = list(store.compared_rows(table))
    # Only SQLite keeps rendered rows: both adapters must list the same rows, kept or built.
    cases = render.incident_cases(store)
    out["listed"] = [json.loads(row) if isinstance(row, bytes) else
                     render.listed_json(row, cases) for _, _, row in
                     store.select_rendered(ItemQuery())]
    return out


@pytest.fixture(scope="module")
def results(field: Field) -> dict[str, dict[str, Any]]:
    return {name: answers(field, store) for name, store in field.indexes.items()}


def test_both_adapters_give_the_same_rows_in_the_same_order(results):
    sqlite, pg = results["sqlite"], results["postgresql"]
    assert sqlite.keys() == pg.keys()
    differ = [k for k in sqlite if sqlite[k] != pg[k]]
    assert differ == [], {k: (sqlite[k], pg[k]) for k in differ[:3]}


def test_place_rows_agree_within_the_rtree_precision(field):
    sqlite = list(field.indexes["sqlite"].compared_rows("item_geo"))
    pg = list(field.indexes["postgresql"].compared_rows("item_geo"))
    assert [r[0] for r in sqlite] == [r[0] for r in pg] and len(pg) >= 6
    for a, b in zip(sqlite, pg, strict=True):
        assert a[1:] == pytest.approx(b[1:], rel=1e-6)


def _names(rows: list[tuple[Any, ...]]) -> set[str]:
    return {r[13][0] for r in rows}  # ItemRow.names[0]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_expected_answers(results, field, adapter):
    """Known answers, so two adapters agreeing on a wrong one cannot pass."""
    r = results[adapter]
    assert r["items"] == len(MEDIA) + 4
    homs = field.sha["homs-loci.mp4"]
    assert [t for s, t, _ in r["rows item_tags"] if s == homs] == ["Zeta", "_under", "alpha"]
    assert _names(r["select window match match"]) == ALEPPO | {"homs-loci.mp4", HUAWEI}
    dated = [row[3] for row in r["select all match match"] if row[3] is not None]
    assert dated == sorted(dated)
    assert _names(r["select wide-clock match match"]) == {HUAWEI}
    assert _names(r["select aleppo match match"]) == ALEPPO
    assert _names(r["select two-boxes match match"]) == ALEPPO | {"carbon-south-west.jpg",
                                                                  "santiago-android.mp4"}
    assert _names(r["select case-by-incident match match"]) == {"homs-loci.mp4"}
    assert _names(r["select incident match match"]) == ALEPPO
    assert _names(r["select tag match match"]) == {"carbon-south-west.jpg"}
    assert _names(r["select words match match"]) == {"douma-xyz.mov"}
    assert _names(r["select short-word match match"]) == ALEPPO
    assert r["select like-chars match match"] == []
    assert _names(r["select mime-prefix match match"]) == {
        "damascus-apple-keys.mov", "douma-xyz.mov", "homs-loci.mp4", "santiago-android.mp4"}
    assert len(r["limit all"]) == 2
    assert r["count all match match"] == len(MEDIA) + 4
    assert r["missing all"] == (4, 1)  # clock-no-offset has a time, no place
    assert [i.incident for i in r["incidents"]] == ["HOMS-1", "M10-STRIKE"]
    assert r["known"] == [True, True, False] and r["linked"] == [True, False]
    assert _names(r["select case-by-incident match match"]) == {"homs-loci.mp4"}
    near = r["search near"]
    assert {i["names"][0] for i in near["items"]} == ALEPPO
    crossed = r["crossref items"]
    assert [m["names"][0] for m in crossed["matches"]][-1] == HUAWEI  # uncertain ones last
    assert {m["names"][0] for m in crossed["matches"]} == ALEPPO | {"homs-loci.mp4", HUAWEI}
    assert crossed["track"]["points"] == 174 and crossed["track"]["segments"] == 4
    assert {m["names"][0] for m in r["crossref case"]["matches"]} == {HUAWEI}
    assert [m["incident"] for m in r["crossref incidents"]["matches"]] == ["HOMS-1",
                                                                          "M10-STRIKE"]
    similar = {field.sha["ribbons-reencoded.jpg"]}
    assert {s["item"] for s in r["similar"]["similar"]} == similar


def test_a_postgresql_search_reads_its_rows_through_a_server_side_cursor(field, monkeypatch):
    """A search of every item holds one batch of rows, not all of them: they come through a
    named cursor, a batch at a time, in a transaction that ends with the rows (read to the end,
    or left early)."""
    import store.pg_index

    pg = field.indexes["postgresql"]
    assert isinstance(pg, store.pg_index.PostgresIndex)
    monkeypatch.setattr(store.pg_index, "BATCH", 3)  # several batches from this small archive
    every = _rows(field.indexes["sqlite"], ItemQuery())
    rows = pg.select(ItemQuery())
    first = next(rows)
    cursors = pg.conn.execute("SELECT name FROM pg_cursors").fetchall()
    assert [name for (name,) in cursors if name.startswith("custody_select_")]
    assert [tuple(r._replace(id=0)) for r in (first, *rows)] == every and len(every) > 3
    assert pg.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    rows = pg.select(ItemQuery())
    next(rows)
    rows.close()  # left early
    assert pg.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert pg.conn.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_writers_see_one_transaction(field, adapter, tmp_path, pg_url):
    """A write that fails inside `writing` leaves nothing behind."""
    store = (LocalIndex(tmp_path).open() if adapter == "sqlite"
             else PostgresIndexLocation(pg_url).open())
    try:
        with pytest.raises(RuntimeError), store.writing():
            store.ensure_item("a" * 64, 1)
            raise RuntimeError("stop")
        assert not store.has_item("a" * 64)
        with store.writing():
            store.ensure_item("a" * 64, 1)
            store.put_note(2, "a" * 64, "nul \x00 inside")
            store.refresh_item("a" * 64)
        row = store.item("a" * 64)
        # PostgreSQL text cannot hold U+0000: stored as U+FFFD rather than stopping the index
        assert row is not None and row.notes == [
            "nul \ufffd inside" if adapter == "postgresql" else "nul \x00 inside"]
    finally:
        store.close()


# Bad input: one line, the port's own error ---------------------------------------------------------

def test_unreachable_database_is_index_unusable_in_one_line(pg_server):
    url = "postgresql://custody@127.0.0.1:1/custody_test?connect_timeout=2"
    for call in (PostgresIndexLocation(url).open, PostgresIndexLocation(url).open_existing):
        with pytest.raises(IndexUnusable) as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message and "cannot be reached" in message
        assert "127.0.0.1:1/custody_test" in message


def test_missing_database_is_index_unusable_and_no_password_is_shown(pg_server):
    info = psycopg.conninfo.conninfo_to_dict(pg_server)
    url = psycopg.conninfo.make_conninfo(pg_server, dbname="custody_no_such_db",
                                         password="s3cret-word")
    with pytest.raises(IndexUnusable) as caught:
        PostgresIndexLocation(url).open()
    message = str(caught.value)
    assert "\n" not in message and "custody_no_such_db" in message
    assert "s3cret-word" not in message and str(info.get("host")) in message


def test_an_index_of_another_version_is_unusable_to_read_and_remade_to_write(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"CREATE TABLE {SCHEMA}.state (key text PRIMARY KEY, value text)")
        conn.execute(f"INSERT INTO {SCHEMA}.state VALUES ('schema', '0')")
    where = PostgresIndexLocation(pg_url)
    with pytest.raises(IndexUnusable, match="not a search index of version"):
        where.open_existing()
    store = where.open()
    try:
        assert store.count_items() == 0 and store.trgm
    finally:
        store.close()
    reopened = where.open_existing()
    assert reopened is not None
    reopened.close()


def test_scratch_lives_in_the_session_and_leaves_nothing(pg_url):
    store = PostgresIndexLocation(pg_url).open()
    scratch = store.scratch()
    with scratch.writing():
        scratch.ensure_item("b" * 64, 1)
    assert scratch.count_items() == 1 and store.count_items() == 0
    assert scratch.location is None
    scratch.close()
    store.close()
    with psycopg.connect(pg_url) as conn:
        for _ in range(50):  # the server drops a session's temporary tables as it ends
            count = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON "
                                 "n.oid = c.relnamespace WHERE n.nspname LIKE 'pg_temp%%' "
                                 "AND c.relname = 'items'").fetchone()
            if count == (0,):
                break
            clock.sleep(0.1)
    assert count == (0,)


def test_verify_compares_a_postgresql_index_with_a_replay(field, pg_server):
    """verify's index check (custody/search/consistency.py) on the PostgreSQL index: clean,
    then one edited row named."""
    from custody.search.consistency import index_differences

    url = new_database(pg_server)
    try:
        field.archive.index = PostgresIndexLocation(url)
        store = field.archive.index.open()
        refresh(field.archive, store)
        store.close()
        assert index_differences(field.archive).problems == []
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"UPDATE {SCHEMA}.items SET lat = lat + 1 WHERE lat IS NOT NULL "
                         "AND sha256 = %s", (field.sha["aleppo-gps.jpg"],))
        problems = index_differences(field.archive).problems
        assert len(problems) >= 1 and field.sha["aleppo-gps.jpg"] in problems[0]
    finally:
        field.archive.index = LocalIndex(Path(field.archive.root))
        drop_database(pg_server, url)


# Wiring: which index an archive's ledger brings, and how its errors are said ----------------------

def test_a_postgresql_ledger_brings_the_postgresql_index(tmp_path):
    from custody.ops.backends import index_for

    url = "postgresql://custody@db.example:5432/archive"
    where = index_for(tmp_path, {"backend": "postgresql", "url": url})
    assert isinstance(where, PostgresIndexLocation) and where.url == url
    assert where.name == "custody_index in postgresql://db.example:5432/archive"
    assert isinstance(index_for(tmp_path, None), LocalIndex)
    assert isinstance(index_for(tmp_path, {"backend": "sqlite"}), LocalIndex)


def test_an_index_error_is_one_line_and_exit_3():
    from custody.errors import ArchiveError
    from custody.ops.backends import custody_error

    said = custody_error(IndexUnusable("the search index database x cannot be reached: refused"))
    assert isinstance(said, ArchiveError) and said.exit_code == 3
    assert said.message == "search index: the search index database x cannot be reached: refused"


def test_a_read_only_role_gets_an_index_of_its_own_session(pg_url):
    """A role that may only read the schema (an auditor's) searches on a temporary index rebuilt
    for its session, as a write-blocked folder gets one in memory; the shared one is untouched."""
    owner = PostgresIndexLocation(pg_url).open()
    with owner.writing():
        owner.ensure_item("c" * 64, 1)
    owner.close()
    role = f"custody_reader_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {role}")
    try:
        as_reader = psycopg.conninfo.make_conninfo(pg_url, user=role)
        store = PostgresIndexLocation(as_reader).open()
        try:
            assert store.location is None and store.count_items() == 0
            with store.writing():
                store.ensure_item("d" * 64, 1)
            assert store.count_items() == 1
        finally:
            store.close()
        shared = PostgresIndexLocation(as_reader).open_existing()
        assert shared is not None and shared.has_item("c" * 64)
        assert not shared.has_item("d" * 64)
        shared.close()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
