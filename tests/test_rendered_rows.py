"""The rows `search --json` writes as the index keeps them (store/index.py items.row_json,
custody/search/render.py render_stale_rows): always the bytes a search that builds each row would
write, whatever changed since they were rendered (the item, its lists, an incident it is linked to,
a column edited by hand), and an edit of a kept row itself is named by verify."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

from .conftest import DATA
from .test_search import Field, _search_as_before


def _index(cli) -> sqlite3.Connection:
    return sqlite3.connect(cli.archive / "index.db", isolation_level=None)


def _unrendered(cli) -> int:
    with closing(_index(cli)) as db:
        return int(db.execute("SELECT COUNT(*) FROM items WHERE row_json IS NULL").fetchone()[0])


def _listed(cli, sha: dict[str, str]) -> dict[str, dict]:
    """The search of every item, checked against the rows built one by one."""
    out = cli("search", "--json", check=True).stdout
    assert out == _search_as_before(Field(cli, sha, []), json.loads(out)["index"])
    assert _unrendered(cli) == 0  # every row the search wrote was a kept one
    return {i["sha256"]: i for i in json.loads(out)["items"]}


def test_kept_rows_follow_every_change_to_an_item_and_to_its_incidents(cli_archive, tmp_path):
    cli = cli_archive
    card = tmp_path / "card"
    card.mkdir()
    for name in ("aleppo-gps.jpg", "carbon-south-west.jpg", "homs-loci.mp4", "empty.bin"):
        (card / name).write_bytes((DATA / "media" / name).read_bytes())
    cli("ingest", card, "--case", "ALEPPO-2016", check=True)
    sha = {r["name"]: r["sha256"] for r in cli("list", "--json", check=True).json()}
    a, b = sha["aleppo-gps.jpg"], sha["homs-loci.mp4"]

    def seq(*args: str) -> int:
        return int(cli(*args, "--json", check=True).json()["entries"][0])

    assert _listed(cli, sha)[a]["cases"] == ["ALEPPO-2016"]
    first = seq("incident", "new", "STRIKE-1", "--date", "2016-10-03", "--case", "CASE-A",
                "--description", "strike")
    seq("incident", "add", "STRIKE-1", a, b)
    listed = _listed(cli, sha)
    assert listed[a]["cases"] == ["ALEPPO-2016", "CASE-A"] and listed[a]["incidents"] == \
        ["STRIKE-1"]
    # the incident moves to another case: its items' rows were kept, and changed by nobody
    seq("incident", "new", "STRIKE-1", "--date", "2016-10-03", "--case", "CASE-B",
        "--description", "strike", "--supersedes", str(first))
    listed = _listed(cli, sha)
    assert listed[a]["cases"] == listed[b]["cases"] == ["ALEPPO-2016", "CASE-B"]
    note = seq("note", a, "--text", "first reading")
    seq("tag", b, "hospital")
    listed = _listed(cli, sha)
    assert listed[a]["notes"] == ["first reading"] and listed[b]["tags"] == ["hospital"]
    seq("note", a, "--text", "corrected reading", "--supersedes", str(note))
    seq("tag", b, "hospital", "--remove")
    listed = _listed(cli, sha)
    assert listed[a]["notes"] == ["corrected reading"] and listed[b]["tags"] == []

    # a column edited by hand (not the kept row): the row is stale at once, rendered again.
    # The editing connections stay open while searches run, here and in other processes.
    path = cli.archive / "index.db"
    with closing(sqlite3.connect(path)) as edit, closing(sqlite3.connect(path)) as look:
        with edit:
            edit.execute("UPDATE items SET mime = 'image/x-edited' WHERE sha256 = ?", (a,))
            edit.execute("UPDATE incidents SET case_id = 'CASE-C' WHERE incident = 'STRIKE-1'")
        with look:
            stale = look.execute("SELECT COUNT(*) FROM items WHERE row_json IS NULL").fetchone()
        assert stale == (2,)  # the edited item; the incident's other item
        for _ in range(2):  # the second search closes its index while `look` holds it
            listed = _listed(cli, sha)
            assert listed[a]["mime"] == "image/x-edited"
            assert listed[b]["cases"] == ["ALEPPO-2016", "CASE-C"]
        with look:
            assert look.execute("SELECT COUNT(*) FROM items").fetchone() == (4,)
    cli("search", "--reindex", "--json", check=True)  # the ledger's rows again
    listed = _listed(cli, sha)
    assert listed[a]["mime"] == "image/jpeg" and listed[b]["cases"] == ["ALEPPO-2016", "CASE-B"]


def test_an_edited_kept_row_is_named_by_verify_and_mended_by_reindex(cli_archive):
    cli = cli_archive
    cli("ingest", DATA / "media" / "aleppo-gps.jpg", check=True)
    sha = cli("list", "--json", check=True).json()[0]["sha256"]
    clean = cli("search", "--json", check=True).stdout
    with closing(_index(cli)) as db:
        kept = db.execute("SELECT row_json FROM items WHERE sha256 = ?", (sha,)).fetchone()[0]
        assert b'"aleppo-gps.jpg"' in kept
        db.execute("UPDATE items SET row_json = ? WHERE sha256 = ?",
                   (kept.replace(b'"aleppo-gps.jpg"', b'"somewhere-else.jpg"'), sha))
    # search trusts its index as it does every column; verify compares it with the ledger
    assert '"somewhere-else.jpg"' in cli("search", "--json", check=True).stdout
    r = cli("verify", "--json")
    assert r.code == 1
    assert any(p.startswith(f"search index: item {sha}: listed row") for p in
               r.json()["problems"]), r.json()["problems"]
    cli("search", "--reindex", "--json", check=True)
    assert cli("verify").code == 0
    assert json.loads(cli("search", "--json", check=True).stdout)["items"] == \
        json.loads(clean)["items"]


def _one_item(cli) -> str:
    cli("ingest", DATA / "media" / "aleppo-gps.jpg", check=True)
    cli("search", "--json", check=True)  # the index made, its rows kept
    return str(cli("list", "--json", check=True).json()[0]["sha256"])


def _verify_problems(cli) -> list[str]:
    r = cli("verify", "--json")
    assert r.code == 1, r.stderr
    return list(r.json()["problems"])


def test_dropped_triggers_are_named_by_verify_and_mended_by_the_next_search(cli_archive):
    cli = cli_archive
    sha = _one_item(cli)
    with closing(_index(cli)) as db:
        db.execute("DROP TRIGGER items_stale")
    assert any("triggers that keep its listed rows current are missing or altered" in p
               for p in _verify_problems(cli))
    cli("tag", sha, "hospital", check=True)  # with no trigger, its kept row would stay
    assert _listed(cli, {"aleppo-gps.jpg": sha})[sha]["tags"] == ["hospital"]
    with closing(_index(cli)) as db:  # the search put them back, and rendered every row again
        assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'"
                          ).fetchone() == (4,)
        db.execute("CREATE TRIGGER keep_mine AFTER UPDATE ON items BEGIN "
                   "UPDATE items SET row_json = x'7b7d' WHERE id = NEW.id; END")
    assert any("missing or altered" in p for p in _verify_problems(cli))
    cli("search", "--json", check=True)
    assert cli("verify").code == 0


def test_kept_rows_of_odd_types_are_named_by_verify_never_a_crash(cli_archive):
    cli = cli_archive
    sha = _one_item(cli)
    with closing(_index(cli)) as db:  # row_json written in the same UPDATE: no trigger fires
        db.execute("UPDATE items SET names = CAST(names AS BLOB), row_json = x'02'")
    assert any(p.startswith(f"search index: item {sha}: listed row") for p in
               _verify_problems(cli))
    cli("search", "--reindex", "--json", check=True)
    with closing(_index(cli)) as db:  # a kept row as text: search builds the row instead
        db.execute("UPDATE items SET row_json = CAST(row_json AS TEXT)")
    out = cli("search", "--json", check=True).stdout
    assert out == _search_as_before(Field(cli, {"aleppo-gps.jpg": sha}, []),
                                    json.loads(out)["index"])
    assert any(p.startswith(f"search index: item {sha}: listed row") for p in
               _verify_problems(cli))


def test_rows_kept_by_another_version_of_the_renderer_are_rendered_again(cli_archive):
    cli = cli_archive
    sha = _one_item(cli)
    with closing(_index(cli)) as db:
        db.execute("UPDATE state SET value = 'another' WHERE key = 'rendering'")
        db.execute("UPDATE items SET row_json = CAST('{}' AS BLOB)")  # what it would have kept
    r = cli("verify", "--json")
    assert r.code == 0 and any("rendered by another version" in n
                               for n in r.json()["notices"]), r.stdout
    assert _listed(cli, {"aleppo-gps.jpg": sha})[sha]["names"] == ["aleppo-gps.jpg"]
    assert cli("verify").code == 0
