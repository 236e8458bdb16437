"""Search and track cross-reference through the real command, on the real media in tests/data.

Distances are checked against a great-circle formula written here independently of custody.core.geo
(the angle between unit vectors, atan2(|a x b|, a . b), on the same 6371.0088 km sphere), and
against geographiclib on that sphere when it is installed; track positions against an
interpolation written here; best matches against a brute-force scan of the track second by
second. Malformed tracks must give one line and exit 3 (2 for usage); 200 MB tracks must stream.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custody.core import geo
from custody.search import crossref as xref
from custody.search import indexer, render, tracks
from custody.search import query as search

from .conftest import DATA, Cli, one_line_error

TRACKS = DATA / "tracks"
RADIUS_KM = 6371.0088
ALEPPO = {"aleppo-gps.jpg", "aleppo-gps.exif-pointer-count.jpg", "aleppo-gps.truncated-half.jpg"}
HOMS = {"homs-loci.mp4", "homs-loci.truncated.mp4"}
HUAWEI = "huawei-no-offset.jpg"  # made here: camera clock without offset, GPS 36.19 N 37.16 E
UNDATED = {"aleppo-gps.exif-garbage.jpg", "douma-xyz.zeroed-moov.mov", "empty.bin",
           "idlib-exif.truncated.heic", "random-4k.bin"}


# Independent references ---------------------------------------------------------------------------

def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Not haversine: the angle between the two unit vectors."""
    def unit(lat: float, lon: float) -> tuple[float, float, float]:
        la, lo = math.radians(lat), math.radians(lon)
        return math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)

    a, b = unit(lat1, lon1), unit(lat2, lon2)
    cross = (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return RADIUS_KM * math.atan2(math.sqrt(sum(c * c for c in cross)), dot)


def destination(lat: float, lon: float, bearing: float, km: float) -> tuple[float, float]:
    """The point `km` from (lat, lon) along `bearing` (radians), on the sphere."""
    d = km / RADIUS_KM
    la, lo = math.radians(lat), math.radians(lon)
    la2 = math.asin(math.sin(la) * math.cos(d) + math.cos(la) * math.sin(d) * math.cos(bearing))
    lo2 = lo + math.atan2(math.sin(bearing) * math.sin(d) * math.cos(la),
                          math.cos(d) - math.sin(la) * math.sin(la2))
    return math.degrees(la2), (math.degrees(lo2) + 540) % 360 - 180


def flights() -> dict[str, list[tuple[float, float, float]]]:
    """The fixture flights as (t, lat, lon), read with the csv module alone."""
    out: dict[str, list[tuple[float, float, float]]] = {}
    with (TRACKS / "flights.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            t = datetime.fromisoformat(row["time"].replace("Z", "+00:00")).timestamp()
            out.setdefault(row["id"], []).append((t, float(row["lat"]), float(row["lon"])))
    return {k: sorted(v) for k, v in out.items()}


def position(points: list[tuple[float, float, float]], t: float) -> tuple[float, float] | None:
    for (t0, la0, lo0), (t1, la1, lo1) in zip(points, points[1:], strict=False):
        if t0 <= t <= t1:
            f = (t - t0) / (t1 - t0)
            return la0 + f * (la1 - la0), lo0 + f * (lo1 - lo0)
    return None


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# The archive: all the real media, one photo with an unknown clock offset, incidents --------------

def offset_unknown_jpeg(path: Path) -> None:
    """A JPEG whose camera clock has no offset (14:30 on 2016-10-03) and whose EXIF GPS is
    36.19 N 37.16 E: where flight SYR-A is at 11:30:00Z, so the implied offset is +03:00."""
    from PIL import Image

    def dms(x: float) -> tuple[int, int, Fraction]:
        d = int(x)
        m = int((x - d) * 60)
        return d, m, Fraction(round(((x - d) * 60 - m) * 60 * 1000), 1000)

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "HUAWEI", "P9"
    exif.get_ifd(0x8769)[0x9003] = "2016:10:03 14:30:00"  # DateTimeOriginal, no OffsetTime
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", dms(36.19), "E", dms(37.16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), (120, 80, 40)).save(path, exif=exif)


class Field:
    def __init__(self, cli: Cli, items: dict[str, str], listing: list[dict]) -> None:
        self.cli = cli
        self.sha = items
        self.listing = listing

    def names(self, rows: list[dict]) -> set[str]:
        return {r["names"][0] for r in rows}

    def json(self, *args: str) -> dict:
        r = self.cli(*args, "--json")
        assert r.code == 0, r.stderr
        return r.json()


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> Field:
    tmp = tmp_path_factory.mktemp("search")
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "alice.key")
    cli("key", "new", "--name", "Alice Admin", check=True)
    cli("init", "--name", "Test Documentation Centre", check=True)
    card = tmp / "card"
    card.mkdir()
    for p in sorted((DATA / "media").iterdir()):
        if p.is_file() and p.suffix != ".md":
            (card / p.name).write_bytes(p.read_bytes())
    cli("ingest", card, "--case", "ALEPPO-2016", "--note", "collected 2016-10-04", check=True)
    offset_unknown_jpeg(tmp / "phone" / HUAWEI)
    cli("ingest", tmp / "phone", "--case", "OTHER-2016", check=True)
    listing = cli("list", "--json", check=True).json()
    sha = {r["name"]: r["sha256"] for r in listing}

    def seq(*args: str) -> int:
        return cli(*args, "--json", check=True).json()["entries"][0]

    first = seq("incident", "new", "M10-STRIKE", "--date", "2016-10-03", "--case", "ALEPPO-2016",
                "--place", "36.2,37.14,M10 hospital", "--description", "strike on a hospital")
    seq("incident", "new", "M10-STRIKE", "--date", "2016-10-03", "--case", "ALEPPO-2016",
        "--place", "36.2,37.14,M10 hospital", "--description", "strike on the M10 hospital",
        "--supersedes", str(first))
    seq("incident", "add", "M10-STRIKE", sha["aleppo-gps.jpg"], sha["aleppo-gps.truncated-half.jpg"])
    seq("incident", "new", "HOMS-1", "--date", "2016-10-05T10:15:00+03:00", "--case", "HOMS-2016",
        "--place", "34.735,36.715", "--description", "shelling of the market")
    seq("incident", "add", "HOMS-1", sha["homs-loci.mp4"])
    seq("incident", "new", "NO-PLACE", "--date", "2016-10-04", "--case", "ALEPPO-2016",
        "--description", "reported by phone, place unknown")
    seq("note", sha["douma-xyz.mov"], "--text", "Ambulance hit near the market")
    seq("tag", sha["carbon-south-west.jpg"], "calibration")
    return Field(cli, sha, listing)


# Search -------------------------------------------------------------------------------------------

def test_time_window_lists_undated_items_separately(field):
    r = field.json("search", "--since", "2016-10-03", "--until", "2016-10-05")
    assert field.names(r["items"]) == ALEPPO | HOMS | {"aleppo-gps.gps-pointer-count.jpg", HUAWEI}
    assert [i["captured_at"] for i in r["items"]] == sorted(i["captured_at"] for i in r["items"])
    flagged = [i for i in r["items"] if i.get("flags")]
    assert [(i["names"][0], i["flags"]) for i in flagged] == [(HUAWEI, ["offset-unknown"])]
    assert field.names(r["undetermined"]) == UNDATED
    assert all(i["missing"] == ["captured_at"] for i in r["undetermined"])
    assert r["undetermined_count"] == len(UNDATED)
    # Only the clock of unknown offset can reach this window (its wall clock is 14:30, read as
    # if UTC: it could be any instant from 00:30Z to 04:30Z the next day).
    r = field.json("search", "--since", "2016-10-03T20:00:00Z", "--until", "2016-10-03T22:00Z")
    assert field.names(r["items"]) == {HUAWEI}
    # Offsets are honoured: 14:22:05+03:00 is 11:22:05Z.
    r = field.json("search", "--since", "2016-10-03T14:22:05+03:00",
                   "--until", "2016-10-03T14:22:05+03:00")
    assert field.names(r["items"]) == ALEPPO | {HUAWEI}


@pytest.mark.quick  # the quick suite's smoke test of this area
def test_near_is_a_great_circle_distance(field):
    r = field.json("search", "--near", "36.2,37.13", "--within-km", "1")
    assert field.names(r["items"]) == ALEPPO
    expected = great_circle_km(36.2, 37.13, 36.2021, 37.1343)
    for i in r["items"]:
        assert i["distance_km"] == pytest.approx(expected, rel=1e-9)
    without = sum(1 for i in field.listing if not i["gps"])
    assert r["unplaced_count"] == without and "unplaced" not in r
    r = field.json("search", "--near", "36.2,37.13", "--within-km", f"{expected * 0.999}",
                   "--list-unplaced")
    assert r["items"] == []
    assert len(r["unplaced"]) == without and all(i["gps"] is None for i in r["unplaced"])
    # ordered by distance: Homs before Damascus, seen from Homs
    r = field.json("search", "--near", "34.73,36.71", "--within-km", "200")
    names = [i["names"][0] for i in r["items"]]
    assert set(names[:2]) == HOMS and names.index("douma-xyz.mov") > 1
    distances = [i["distance_km"] for i in r["items"]]
    assert distances == sorted(distances)


def test_bbox_is_west_south_east_north_and_may_cross_the_antimeridian(field):
    r = field.json("search", "--bbox", "36,33,37,34")
    assert field.names(r["items"]) == {"douma-xyz.mov", "damascus-apple-keys.mov"}
    assert field.names(field.json("search", "--bbox", "33,36,34,37")["items"]) == set()
    r = field.json("search", "--bbox", "170,-60,-60,-30")  # west > east: across +-180
    assert field.names(r["items"]) == {"carbon-south-west.jpg", "santiago-android.mp4"}
    bad = field.cli("search", "--bbox", "36,34,37,33")
    assert bad.code == 2 and "SOUTH is above NORTH" in one_line_error(bad)


def test_device_type_text_tag_and_case(field):
    def names(*args: str) -> set[str]:
        return field.names(field.json("search", *args)["items"])

    assert names("--device", "SM-G93") == ALEPPO | HOMS | {"aleppo-gps.gps-pointer-count.jpg"}
    videos = {i["name"] for i in field.listing if (i["mime"] or "").startswith("video/")}
    assert len(videos) >= 6
    assert names("--mime", "video") == videos == names("--mime", "video/*")
    assert names("--mime", "video/quicktime") == {
        i["name"] for i in field.listing if i["mime"] == "video/quicktime"}
    assert names("--text", "POINTER count") == {"aleppo-gps.exif-pointer-count.jpg",
                                                "aleppo-gps.gps-pointer-count.jpg"}
    assert names("--text", "ambulance") == {"douma-xyz.mov"}  # a note
    assert names("--text", "gp") == {i["name"] for i in field.listing if "gp" in i["name"]}
    assert names("--text", "collected") == {i["name"] for i in field.listing} - {HUAWEI}
    assert names("--tag", "calibration") == {"carbon-south-west.jpg"}
    assert names("--case", "OTHER-2016") == {HUAWEI}
    assert names("--case", "HOMS-2016") == {"homs-loci.mp4"}  # through incident HOMS-1
    assert names("--case", "ALEPPO-2016", "--mime", "video/mp4", "--device", "samsung") == HOMS
    missing = field.cli("search", "--case", "ALEPPO-2061")
    assert missing.code == 3 and missing.stdout == ""
    assert one_line_error(missing) == "custody: no case 'ALEPPO-2061' in this archive"


def _search_as_before(field: Field, index_status: dict, **filters) -> str:
    """What `search --json` printed before it streamed (the reference): the whole result built
    in memory, each listed item's C2PA verdict read from its signed metadata document."""
    from custody.display import json_text
    from custody.ops.archive import Archive
    from custody.search.c2pa_filter import LISTS, verdict_of

    archive = Archive.open(field.cli.archive)
    store = indexer.open_index(archive)
    try:
        result = search.find(store, search.Search(**filters))
    finally:
        store.close()
    for key in LISTS:
        for row in result.get(key, []):
            row["c2pa"] = verdict_of(archive, row["sha256"])
    result["index"] = index_status
    return json_text(result)


@pytest.mark.parametrize("args, filters", [
    ((), {}),
    (("--since", "2016-10-03", "--until", "2016-10-05"),
     {"since": "2016-10-03", "until": "2016-10-05"}),
    (("--case", "ALEPPO-2016", "--limit", "2"), {"case": "ALEPPO-2016", "limit": 2}),
    (("--incident", "M10-STRIKE"), {"incident": "M10-STRIKE"}),
    (("--text", "market", "--since", "2016-10-04", "--limit", "1"),
     {"text": "market", "since": "2016-10-04", "limit": 1}),
])
def test_streamed_search_json_is_byte_for_byte_the_document_built_in_memory(field, args,
                                                                             filters):
    out = field.cli("search", *args, "--json", check=True).stdout
    assert out == _search_as_before(field, json.loads(out)["index"], **filters)


def gps_jpeg(path: Path, lat: float, lon: float, alt: float | None) -> None:
    """A JPEG whose EXIF GPS says (lat, lon, alt), in degrees, minutes and seconds as cameras
    write them (a tiny latitude gives a float Python writes with an exponent); its camera model
    is its file name, so that no two such photos are one device's impossible journey."""
    from PIL import Image

    def dms(x: float) -> tuple[Fraction, Fraction, Fraction]:
        seconds = Fraction(round(abs(x) * 3600 * 10**6), 10**6)
        return Fraction(int(seconds // 3600)), Fraction(int(seconds % 3600 // 60)), seconds % 60

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "samsung", path.stem
    exif.get_ifd(0x8769)[0x9003] = "2016:10:03 14:30:00"
    exif.get_ifd(0x8769)[0x9011] = "+03:00"  # OffsetTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N" if lat >= 0 else "S", dms(lat), \
        "E" if lon >= 0 else "W", dms(lon)
    if alt is not None:
        gps[5], gps[6] = b"\x00", Fraction(round(alt * 10**7), 10**7)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (10, 20, 30)).save(path, exif=exif)


def test_streamed_search_json_is_the_same_bytes_for_every_name_note_and_number_a_row_holds(
        cli_archive, tmp_path):
    """The fast encoder (orjson) and its fallback (json's form) against the document built whole:
    non-ASCII names, notes and cases, tiny GPS values from a real EXIF, and index rows holding
    what no camera writes (1e300, an infinite altitude, nested warnings with floats and an int
    past 64 bits, a list stored in its JSON form)."""
    import sqlite3

    card = tmp_path / "card"
    gps_jpeg(card / "صورة حلب ✓.jpg", 0.00001, 0.0, 0.0)
    gps_jpeg(card / "Homs—日本語.jpg", -33.8688, 151.2093, 8848.86)
    gps_jpeg(card / "plain.jpg", 36.2, 37.14, None)
    cli_archive("ingest", card, "--case", "حلب-2016", "--note", 'نقل "quoted" \\ ü', check=True)
    sha = {r["name"]: r["sha256"] for r in cli_archive("list", "--json", check=True).json()}
    cli_archive("note", sha["plain.jpg"], "--text", "line one\nline two\ttab \u202e", check=True)
    cli_archive("search", "--limit", "1", "--json", check=True)  # the index is current
    with sqlite3.connect(cli_archive.archive / "index.db") as db:
        db.execute("UPDATE items SET lat = 1e-300, lon = -0.0, alt = 1e300 WHERE sha256 = ?",
                   (sha["Homs—日本語.jpg"],))
        db.execute("UPDATE items SET alt = 9e999, warnings = ?, names = ? WHERE sha256 = ?",
                   ('[["nested", [1.5e-7, {"x": 1e22}]], 18446744073709551616, "ü"]',
                    "\x1e" + json.dumps(["a\x1fb", "ü.jpg"]), sha["plain.jpg"]))
    field = Field(cli_archive, sha, [])
    out = cli_archive("search", "--json", check=True).stdout
    assert out == _search_as_before(field, json.loads(out)["index"])
    for written in ('"lat": 1e-05', '"lat": 1e-300', '"alt": 1e+300', '"alt": Infinity',
                    "1.5e-07", "1e+22", "18446744073709551616",
                    '"صورة حلب ✓.jpg"', '"نقل \\"quoted\\" \\\\ ü"', '"line one\\nline two'):
        assert written in out  # each through the fallback, or orjson's same bytes
    items = {i["sha256"]: i for i in json.loads(out)["items"]}
    assert items[sha["plain.jpg"]]["names"] == ["a\x1fb", "ü.jpg"]
    for args in (("--case", "حلب-2016"), ("--text", "quoted"), ("--limit", "2")):
        out = cli_archive("search", *args, "--json", check=True).stdout
        filters = {"case": args[1]} if args[0] == "--case" else \
            {"text": args[1]} if args[0] == "--text" else {"limit": 2}
        assert out == _search_as_before(field, json.loads(out)["index"], **filters)


def test_the_index_keeps_each_items_c2pa_verdict_as_its_signed_document_gives_it(field):
    import sqlite3

    from custody.ops.archive import Archive
    from custody.search.c2pa_filter import verdict_of

    field.cli("search", "--limit", "1", "--json", check=True)  # the index is current
    with sqlite3.connect(field.cli.archive / "index.db") as db:
        kept = dict(db.execute("SELECT sha256, c2pa FROM items"))
    archive = Archive.open(field.cli.archive)
    assert kept == {sha: verdict_of(archive, sha) for sha in field.sha.values()}


def test_incident_search_shows_the_latest_version(field):
    r = field.json("search", "--incident", "M10-STRIKE")
    assert field.names(r["items"]) == {"aleppo-gps.jpg", "aleppo-gps.truncated-half.jpg"}
    assert r["incident"]["description"] == "strike on the M10 hospital"
    assert r["incident"]["place"] == {"lat": 36.2, "lon": 37.14, "name": "M10 hospital"}
    assert all("M10-STRIKE" in i["incidents"] for i in r["items"])
    text = field.cli("search", "--incident", "M10-STRIKE", check=True).stdout
    assert text.splitlines()[0].startswith("incident M10-STRIKE: 2016-10-03 M10 hospital")
    missing = field.cli("search", "--incident", "M11")
    assert missing.code == 3 and "no incident 'M11'" in one_line_error(missing)


def test_search_geojson_is_a_feature_collection(field):
    r = field.cli("search", "--case", "ALEPPO-2016", "--geojson", check=True)
    doc = json.loads(r.stdout)
    placed = [i for i in field.listing if i["gps"] and i["name"] != HUAWEI]
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == len(placed)
    for f in doc["features"]:
        assert f["type"] == "Feature" and f["geometry"]["type"] == "Point"
        lon, lat = f["geometry"]["coordinates"]  # RFC 7946: longitude first
        item = next(i for i in placed if i["sha256"] == f["id"])
        assert (lat, lon) == (item["gps"]["lat"], item["gps"]["lon"])
    assert doc["custody"]["omitted_without_position"] == (
        len([i for i in field.listing if i["name"] != HUAWEI]) - len(placed))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--near", "36.2,37.1"], 2, "--near LAT,LON and --within-km KM go together"),
        (["--near", "36.2;37.1", "--within-km", "3"], 2, "is not LAT,LON"),
        (["--near", "96,37", "--within-km", "3"], 2, "out of range"),
        (["--near", "36,37", "--within-km", "-1"], 2, "--within-km must be more than 0 km"),
        (["--bbox", "36,33,37"], 2, "is not WEST,SOUTH,EAST,NORTH"),
        (["--bbox", "36,33,37,95"], 2, "out of range"),
        (["--since", "yesterday"], 2, "is not an RFC 3339 time"),
        (["--since", "2016-10-03T11:00:00"], 2, "has no UTC offset"),
        (["--since", "2016-10-05", "--until", "2016-10-03"], 2, "--since is after --until"),
        (["--limit", "0"], 2, "--limit must be 1 or more"),
        (["--json", "--geojson"], 2, "not both"),
    ],
)
def test_bad_search_arguments_are_one_line(field, args, code, message):
    r = field.cli("search", *args)
    # with --json the error is also a JSON document on stdout (docs/CLI.md), else stdout is empty
    expected = ({"ok": False, "error": {"kind": "usage-error", "message": one_line_error(r)[9:],
                                        "hint": None, "exit_code": code}}
                if "--json" in args else None)
    assert r.code == code and (json.loads(r.stdout) if r.stdout else None) == expected
    assert message in one_line_error(r)
    assert len(r.stderr.strip().splitlines()) == 1


# Cross-reference ----------------------------------------------------------------------------------

def check_match(m: dict, km: float, minutes: float) -> None:
    """The reported position is on the track, its distance right, its score the best."""
    gps, tp = m["gps"], m["track_point"]
    assert m["distance_km"] == pytest.approx(
        great_circle_km(gps["lat"], gps["lon"], tp["lat"], tp["lon"]), rel=1e-9, abs=1e-9)
    try:
        from geographiclib.geodesic import Geodesic
    except ImportError:
        pass
    else:
        sphere = Geodesic(RADIUS_KM * 1000, 0)
        s12 = sphere.Inverse(gps["lat"], gps["lon"], tp["lat"], tp["lon"])["s12"]
        assert m["distance_km"] == pytest.approx(s12 / 1000, rel=1e-9, abs=1e-9)
    points = next(p for name, p in flights().items() if tp["segment"].startswith(name))
    t = epoch(tp["time"])
    lat, lon = position(points, t)
    assert (tp["lat"], tp["lon"]) == (pytest.approx(lat, abs=1e-9), pytest.approx(lon, abs=1e-9))
    captured = epoch(m["captured_at"])
    assert m["dt_seconds"] == pytest.approx(t - captured, abs=1e-3)
    if "offset-unknown" in m["flags"]:
        return
    window = minutes * 60
    assert m["distance_km"] <= km and abs(m["dt_seconds"]) <= window
    best = math.inf
    for s in range(-int(window), int(window) + 1):  # brute force, second by second
        at = position(points, captured + s)
        if at is not None:
            d = great_circle_km(gps["lat"], gps["lon"], *at)
            if d <= km:
                best = min(best, math.hypot(d / km, s / window))
    assert m["score"] == pytest.approx(best, abs=2e-3)


@pytest.mark.parametrize("track", ["flights.gpx", "flights.geojson", "flights.geojsonl",
                                   "flights.csv"])
def test_crossref_finds_exactly_the_items_near_the_track(field, track):
    r = field.json("crossref", str(TRACKS / track), "--km", "5", "--minutes", "10")
    assert field.names(r["matches"]) == ALEPPO | HOMS | {HUAWEI}
    assert r["count"] == 6 and r["track"]["points"] == 174 and r["track"]["segments"] == 4
    for m in r["matches"]:
        check_match(m, 5, 10)
    assert [m["names"][0] for m in r["matches"]][-1] == HUAWEI  # uncertain ones come last
    scores = [m["score"] for m in r["matches"][:-1]]
    assert scores == sorted(scores)
    homs = next(m for m in r["matches"] if m["names"][0] == "homs-loci.mp4")
    assert 0.84 < homs["distance_km"] < 1.1 and -5.5 < homs["dt_minutes"] < -4
    huawei = r["matches"][-1]
    assert huawei["flags"] == ["offset-unknown"] and huawei["implied_utc_offset"] == "+03:00"
    assert huawei["distance_km"] < 0.01
    assert huawei["track_point"]["time"].startswith("2016-10-03T11:30:0")
    assert r["not_checked"] == {"no_capture_time": len(UNDATED), "no_position": 2}


def test_crossref_time_window_and_clock_tolerance(field):
    flights_gpx = str(TRACKS / "flights.gpx")
    r = field.json("crossref", flights_gpx, "--km", "5", "--minutes", "4")
    assert field.names(r["matches"]) == HOMS | {HUAWEI}
    r = field.json("crossref", flights_gpx, "--km", "5", "--minutes", "4",
                   "--clock-tolerance", "5")
    assert field.names(r["matches"]) == ALEPPO | HOMS | {HUAWEI}
    for m in r["matches"]:
        if m["names"][0] in ALEPPO:
            assert m["flags"] == ["clock-tolerance"] and 4 < m["dt_minutes"] <= 9
            check_match(m, 5, 9)
    r = field.json("crossref", flights_gpx, "--km", "0.5", "--minutes", "10")
    assert field.names(r["matches"]) == {HUAWEI}
    r = field.json("crossref", flights_gpx, "--km", "5", "--minutes", "10", "--case", "OTHER-2016")
    assert field.names(r["matches"]) == {HUAWEI}
    r = field.json("crossref", flights_gpx, "--km", "5", "--minutes", "10", "--limit", "2")
    assert r["count"] == 6 and len(r["matches"]) == 2


def test_crossref_incidents(field):
    r = field.json("crossref", str(TRACKS / "flights.gpx"), "--incidents", "--km", "5",
                   "--minutes", "10")
    assert [m["incident"] for m in r["matches"]] == ["HOMS-1", "M10-STRIKE"]
    homs, m10 = r["matches"]
    assert homs["flags"] == [] and m10["flags"] == ["date-only"]
    assert homs["description"] == "shelling of the market"
    assert m10["description"] == "strike on the M10 hospital"
    assert homs["dt_minutes"] == pytest.approx(
        (epoch(homs["track_point"]["time"]) - epoch("2016-10-05T07:15:00Z")) / 60)
    for m in r["matches"]:
        tp = m["track_point"]
        assert m["distance_km"] == pytest.approx(
            great_circle_km(m["place"]["lat"], m["place"]["lon"], tp["lat"], tp["lon"]),
            rel=1e-9)
    assert [(n["incident"], n["missing"]) for n in r["not_checked"]] == [("NO-PLACE", ["place"])]
    r = field.json("crossref", str(TRACKS / "flights.gpx"), "--incidents", "--km", "5",
                   "--minutes", "10", "--case", "HOMS-2016")
    assert [m["incident"] for m in r["matches"]] == ["HOMS-1"]


def test_crossref_geojson(field):
    r = field.cli("crossref", str(TRACKS / "flights.csv"), "--km", "5", "--minutes", "10",
                  "--geojson", check=True)
    doc = json.loads(r.stdout)
    assert doc["type"] == "FeatureCollection" and doc["custody"]["count"] == 6
    roles = [f["properties"]["role"] for f in doc["features"]]
    assert roles.count("subject") == roles.count("track-position") == roles.count("link") == 6
    assert roles.count("track") == 4
    for f in doc["features"]:
        geom = f["geometry"]
        coords = geom["coordinates"] if geom["type"] != "Point" else [geom["coordinates"]]
        for lon, lat in coords:
            assert -180 <= lon <= 180 and -90 <= lat <= 90
    text = field.cli("crossref", str(TRACKS / "flights.csv"), "--km", "5", "--minutes", "10")
    assert len(text.stdout.splitlines()) == 1 + 6 + 1 and "implied offset +03:00" in text.stdout
    assert text.stdout.split()[:3] == ["#", "ITEM", "CAPTURED"]  # a header row, and a legend:
    assert text.stdout.splitlines()[-1].startswith("local after a time")
    assert "6 match(es); track: 174 points in 4 segment(s)" in text.stderr


def test_max_gap_stops_interpolation(field, tmp_path):
    track = tmp_path / "gap.csv"
    track.write_text("time,lat,lon\n2016-10-03T10:22:05Z,36.2021,36.6\n"
                     "2016-10-03T12:22:05Z,36.2021,37.6\n")  # crosses Aleppo's meridian at 11:22
    r = field.json("crossref", str(track), "--km", "1", "--minutes", "5")
    assert field.names(r["matches"]) == ALEPPO
    assert all(m["track_point"]["interpolated"] and m["track_point"]["leg_seconds"] == 7200
               for m in r["matches"])
    r = field.json("crossref", str(track), "--km", "1", "--minutes", "5", "--max-gap", "30")
    assert r["matches"] == []


# Malformed tracks ----------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE gpx [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<gpx><trk><trkseg><trkpt lat="36" lon="37"><time>&b;</time></trkpt></trkseg></trk></gpx>
"""


def gpx(*points: str) -> str:
    return ('<?xml version="1.0"?>\n<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
            "\n<trk><trkseg>\n" + "\n".join(points) + "\n</trkseg></trk></gpx>\n")


def line(coords: list, times: list | None) -> str:
    props = {} if times is None else {"coordTimes": times}
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords},
         "properties": props}]})


OK_ROW = "2016-10-03T11:00:00Z,36.2,37.1"
MALFORMED = [
    ("bad-time.csv", f"time,lat,lon\n{OK_ROW}\nyesterday,36.2,37.1\n",
     "bad-time.csv: line 3: time 'yesterday' is not an RFC 3339 time"),
    ("impossible-time.csv", "time,lat,lon\n2016-02-30T11:00:00Z,36,37\n",
     "line 2: time '2016-02-30T11:00:00Z' is not a valid time"),
    ("no-offset.csv", "time,lat,lon\n2016-10-03 11:00:00,36.2,37.1\n",
     "line 2: time '2016-10-03 11:00:00' has no UTC offset"),
    ("milliseconds.csv", "time,lat,lon\n1475492400000,36.2,37.1\n",
     "line 2: time '1475492400000' is not Unix seconds (milliseconds are not accepted)"),
    ("no-lat.csv", f"time,lon,alt\n{OK_ROW}\n", "line 1: no lat column in the header"),
    ("no-time.csv", "lat,lon\n36,37\n", "line 1: no time column in the header"),
    ("lat-range.csv", f"time,lat,lon\n{OK_ROW}\n2016-10-03T11:01:00Z,95.5,37.1\n",
     "line 3: position lat 95.5, lon 37.1 is out of range"),
    ("lon-range.csv", "time,lat,lon\n2016-10-03T11:01:00Z,36,-181\n", "out of range"),
    ("not-a-number.csv", "time,lat,lon\n2016-10-03T11:01:00Z,north,37\n",
     "line 2: lat 'north' is not a number"),
    ("nan.csv", "time,lat,lon\n2016-10-03T11:01:00Z,nan,37\n", "line 2: lat 'nan' is not a finite"),
    ("short-row.csv", f"time,lat,lon\n{OK_ROW}\n2016-10-03T11:01:00Z,36\n",
     "line 3: 2 fields, but the header needs 3"),
    ("header-only.csv", "time,lat,lon\n", "no timed points"),
    ("untimed.csv", "time,lat,lon\n,36,37\n,36.1,37\n", "no timed points (2 without a time"),
    ("empty.csv", "", "no timed points"),
    ("latin1.csv", "time,lat,lon,id\n2016-10-03T11:00:00Z,36,37,Alep\xe9\n".encode("latin-1"),
     "not UTF-8 text"),
    ("range.gpx", gpx('<trkpt lat="36.2" lon="190"><time>2016-10-03T11:00:00Z</time></trkpt>'),
     "range.gpx: line 4: position lat 36.2, lon 190.0 is out of range"),
    ("time.gpx", gpx('<trkpt lat="36.2" lon="37"><time>2016-13-03T11:00:00Z</time></trkpt>'),
     "line 4: time '2016-13-03T11:00:00Z' is not a valid time"),
    ("no-latlon.gpx", gpx("<trkpt><time>2016-10-03T11:00:00Z</time></trkpt>"),
     "line 4: <trkpt> without lat and lon attributes"),
    ("untimed.gpx", gpx('<trkpt lat="36.2" lon="37"/>', '<trkpt lat="36.3" lon="37"/>'),
     "no timed points (2 without a time"),
    ("broken.gpx", gpx('<trkpt lat="36.2" lon="37"><time>2016-10-03T11:00:00Z</time>'),
     "not well-formed XML (mismatched tag)"),
    ("laughs.gpx", BILLION_LAUGHS, "line 2: a GPX document with a DOCTYPE or entities is refused"),
    ("track.kml", '<?xml version="1.0"?>\n<kml xmlns="http://www.opengis.net/kml/2.2"></kml>\n',
     "not a GPX document (root element <kml>) (convert KML to GPX or GeoJSON)"),
    ("times.geojson", line([[37, 36], [37.1, 36.1], [37.2, 36.2]], ["2016-10-03T11:00:00Z"] * 2),
     "feature 1: 3 positions but 2 times"),
    ("range.geojson", line([[37, 36], [37.1, 96.1]], ["2016-10-03T11:00:00Z"] * 2),
     "feature 1, point 2: position lat 96.1, lon 37.1 is out of range"),
    ("order.geojson", line([[37, 36], [37.1, "36.1"]], ["2016-10-03T11:00:00Z"] * 2),
     "feature 1, point 2: position [37.1, '36.1'] is not [lon, lat(, alt)]"),
    ("untimed.geojson", line([[37, 36], [37.1, 36.1]], None), "no timed points (2 without"),
    ("truncated.geojson", line([[37, 36]], ["2016-10-03T11:00:00Z"])[:-5], "not JSON"),
    ("lines.geojson", line([[37, 36]], ["2016-10-03T11:00:00Z"]) + "\n{}\n",
     "(one object per line? use --format geojsonseq)"),
    ("bad.geojsonl", '{"type": "Feature", "geometry": {"type": "Point", "coordinates": [37, 36]},'
     ' "properties": {"time": "2016-10-03T11:00:00Z"}}\n{"type": "Feat\n',
     "bad.geojsonl: line 2: not JSON"),
]


@pytest.mark.parametrize(("name", "content", "message"), MALFORMED,
                         ids=[m[0] for m in MALFORMED])
def test_malformed_tracks_get_one_line_and_exit_3(field, tmp_path, name, content, message):
    track = tmp_path / name
    track.write_bytes(content if isinstance(content, bytes) else content.encode())
    r = field.cli("crossref", str(track), "--km", "5", "--minutes", "10")
    assert r.code == 3, r.stderr
    assert r.stdout == ""
    assert message in one_line_error(r)
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["/nonexistent/track.gpx", "--km", "5", "--minutes", "10"], 3, "no track file at"),
        ([str(TRACKS), "--km", "5", "--minutes", "10"], 3, "is not a file"),
        ([str(TRACKS / "flights.gpx"), "--km", "0", "--minutes", "10"], 2, "--km must be more"),
        ([str(TRACKS / "flights.gpx"), "--km", "abc", "--minutes", "10"], 2, "Invalid value"),
        ([str(TRACKS / "flights.gpx"), "--km", "5"], 2, "Missing option '--minutes'"),
        ([str(TRACKS / "flights.gpx"), "--km", "5", "--minutes", "-1"], 2, "0 or more minutes"),
        ([str(TRACKS / "flights.gpx"), "--km", "5", "--minutes", "1", "--format", "kml"], 2,
         "--format 'kml': choose one of gpx, geojson, geojsonseq, csv"),
        ([str(TRACKS / "flights.gpx"), "--km", "5", "--minutes", "1", "--max-gap", "0"], 2,
         "--max-gap must be more than 0"),
        ([str(TRACKS / "flights.gpx"), "--km", "5", "--minutes", "1", "--case", "NONE"], 3,
         "no case 'NONE'"),
    ],
)
def test_bad_crossref_arguments(field, args, code, message):
    r = field.cli("crossref", *args)
    assert r.code == code and r.stdout == ""
    assert message in one_line_error(r)
    assert len(r.stderr.strip().splitlines()) == 1


def test_naive_track_times_with_assume_utc(field, tmp_path):
    track = tmp_path / "naive.csv"
    track.write_text("time,lat,lon\n2016-10-03 11:20:00,36.2,37.13\n"
                     "2016-10-03 11:25:00,36.21,37.13\n")
    assert field.cli("crossref", str(track), "--km", "1", "--minutes", "5").code == 3
    r = field.json("crossref", str(track), "--km", "1", "--minutes", "5", "--assume-utc")
    assert field.names(r["matches"]) == ALEPPO


# Huge tracks: streamed, memory bounded ---------------------------------------------------------------

MB = 1 << 20


# Peak memory of the command itself: VmHWM of its own address space, read as it exits. (The
# rusage of a child forked from a large pytest process counts the parent's pages it shared until
# exec, and the kernel carries that maximum across exec.)
_MEASURE = """
import atexit, sys
def _peak(path=sys.argv[1]):
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(path, "w") as out:
        out.write(kib)
atexit.register(_peak)
sys.argv = ["custody", *sys.argv[2:]]
from custody.cli.app import main
main()
"""


def run_measured(cli: Cli, *args: str, out: Path) -> tuple[int, int, str]:
    """Run custody as a child; (exit code, its peak RSS in bytes, stderr)."""
    peak = out.parent / (out.name + ".peak")
    with out.open("wb") as stdout, (out.parent / (out.name + ".err")).open("wb") as stderr:
        code = subprocess.run([sys.executable, "-c", _MEASURE, str(peak), *args], env=cli.env,
                              stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL).returncode
    return code, int(peak.read_text()) * 1024, (out.parent / (out.name + ".err")).read_text()


def write_big(path: Path, head: str, row, tail: str = "", size: int = 200 * MB) -> int:
    """Write `head`, then row(n) for n = 0, 1, ... until `size` bytes, then `tail`."""
    n = written = 0
    with path.open("w") as f:
        f.write(head)
        written += len(head)
        while written < size:
            text = row(n)
            f.write(text)
            written += len(text)
            n += 1
        f.write(tail)
    return n


@pytest.mark.slow
def test_200_mb_tracks_are_streamed_in_bounded_memory(field, tmp_path):
    """A 200 MB CSV and a 200 MB GPX, each passing over Aleppo at the photos' time, are read
    point by point (peak RSS far below the file size) and still find the photos; a 200 MB
    GeoJSON document and 200 MB lines are refused at once, also without reading them whole."""
    start = datetime(2016, 10, 3, 9, 22, 5, tzinfo=UTC)
    pad = "x" * 900

    def place(n: int) -> tuple[str, float, float]:  # 1 s apart; over Aleppo at n = 7200
        t = (start + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return t, 36.2021 + (n - 7200) * 1e-5, 37.1353

    def csv_row(n: int) -> str:
        t, lat, lon = place(n)
        return f"{t},{lat:.6f},{lon:.6f},{pad}\n"

    def gpx_row(n: int) -> str:
        t, lat, lon = place(n)
        return f'<trkpt lat="{lat:.6f}" lon="{lon:.6f}"><time>{t}</time><desc>{pad}</desc></trkpt>\n'

    big_csv = tmp_path / "big.csv"
    big_gpx = tmp_path / "big.gpx"
    rows = {big_csv: write_big(big_csv, "time,lat,lon,remark\n", csv_row),
            big_gpx: write_big(big_gpx, '<?xml version="1.0"?>\n<gpx version="1.1"><trk><trkseg>\n',
                               gpx_row, "</trkseg></trk></gpx>\n")}
    for track in (big_csv, big_gpx):
        assert track.stat().st_size > 200 * MB
        code, rss, stderr = run_measured(field.cli, "crossref", str(track), "--km", "1",
                                         "--minutes", "5", "--json", out=tmp_path / "out.json")
        assert code == 0, stderr
        result = json.loads((tmp_path / "out.json").read_text())
        assert result["track"]["points"] == rows[track]
        assert field.names(result["matches"]) == ALEPPO
        assert rss < 150 * MB, f"{track.name}: peak RSS {rss / MB:.0f} MB"
        print(f"{track.name}: {track.stat().st_size / MB:.0f} MB, {rows[track]} points, "
              f"peak RSS {rss / MB:.0f} MB")
        track.unlink()

    big_geojson = tmp_path / "big.geojson"
    write_big(big_geojson, '{"type": "FeatureCollection", "features": [\n',
              lambda n: json.dumps({"type": "Feature", "geometry": {
                  "type": "Point", "coordinates": [37.1, 36.2]},
                  "properties": {"time": "2016-10-03T11:00:00Z", "pad": pad}}) + ",\n",
              "{}]}\n")
    long_line = tmp_path / "long-line.csv"
    write_big(long_line, "time,lat,lon,remark\n2016-10-03T11:00:00Z,36,37,", lambda n: pad, "\n")
    long_feature = tmp_path / "long.geojsonl"
    write_big(long_feature, '{"type": "Feature", "properties": {"pad": "', lambda n: pad, '"}}\n')
    for track, message in ((big_geojson, "is over the 32 MiB limit for one document"),
                           (long_line, "long-line.csv: line 2: longer than 1,048,576 characters"),
                           (long_feature, "long.geojsonl: line 1: longer than 16,777,216")):
        code, rss, stderr = run_measured(field.cli, "crossref", str(track), "--km", "1",
                                         "--minutes", "5", out=tmp_path / "out.txt")
        assert code == 3 and message in stderr and len(stderr.strip().splitlines()) == 1
        assert rss < 150 * MB, f"{track.name}: peak RSS {rss / MB:.0f} MB"
        print(f"{track.name}: refused, peak RSS {rss / MB:.0f} MB")
        track.unlink()


@pytest.mark.slow
def test_many_points_are_never_held_in_memory(field, tmp_path):
    """100,000 points through the whole cross-reference in this process: Python's own memory
    (tracemalloc) stays at a few MB, far below what holding the points would take (~20 MB)."""
    import tracemalloc

    from custody.ops.archive import Archive
    from store.index import IndexStore

    track = tmp_path / "many.csv"
    start = datetime(2016, 10, 3, 9, 22, 5, tzinfo=UTC).timestamp()
    with track.open("w") as f:
        f.write("time,lat,lon\n")
        for n in range(100_000):  # 1 s apart, over Aleppo at n = 7200, as Unix seconds
            f.write(f"{start + n:.0f},{36.2021 + (n - 7200) * 1e-5:.6f},37.1353\n")
    store = IndexStore(tmp_path / "index.db")
    indexer.refresh(Archive.open(field.cli.archive), store)
    tracemalloc.start()
    try:
        result = xref.cross(store, xref.Crossref(track=track, km=1, minutes=5))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        store.close()
    assert result["track"]["points"] == 100_000 and result["track"]["legs"] == 99_999
    assert field.names(result["matches"]) == ALEPPO
    print(f"peak {peak / MB:.1f} MB")
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MB"


# The index ------------------------------------------------------------------------------------------

def test_index_is_derived_incremental_and_rebuildable(cli_archive, tmp_path):
    cli = cli_archive
    media = DATA / "media"
    cli("ingest", media / "aleppo-gps.jpg", check=True)
    r = cli("search", "--text", "aleppo", "--json", check=True).json()
    assert r["count"] == 1 and r["index"]["rebuilt"] is None
    index = cli.archive / "index.db"
    assert index.is_file()
    cli("ingest", media / "aleppo-gps.truncated-half.jpg", check=True)
    r = cli("search", "--text", "aleppo", "--json", check=True).json()
    assert r["count"] == 2 and r["index"]["indexed_now"] == 1  # only the new entry
    sha = r["items"][0]["sha256"]
    first = cli("note", sha, "--text", "first reading", "--json", check=True).json()["entries"][0]
    assert cli("search", "--text", "first reading", "--json", check=True).json()["count"] == 1
    cli("note", sha, "--text", "corrected reading", "--supersedes", str(first), check=True)
    assert cli("search", "--text", "first reading", "--json", check=True).json()["count"] == 0
    r = cli("search", "--text", "corrected", "--json", check=True).json()
    assert r["count"] == 1 and r["items"][0]["notes"] == ["corrected reading"]
    cli("tag", sha, "blurred", check=True)
    assert cli("search", "--tag", "blurred", "--json", check=True).json()["count"] == 1
    cli("tag", sha, "blurred", "--remove", check=True)
    assert cli("search", "--tag", "blurred", "--json", check=True).json()["count"] == 0

    before = cli("search", "--json", check=True).json()["items"]
    r = cli("search", "--reindex", "--json", check=True).json()
    assert r["index"]["rebuilt"] == "asked" and r["items"] == before

    def remove_index() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(index) + suffix).unlink(missing_ok=True)

    remove_index()
    assert cli("search", "--json", check=True).json()["items"] == before
    remove_index()
    index.write_bytes(b"this is not a database" * 100)
    assert cli("search", "--json", check=True).json()["items"] == before
    cli("verify", check=True)  # verify neither needs nor minds the index


def test_an_index_that_cannot_be_written_is_built_in_memory(field, monkeypatch):
    """As for an archive on read-only media (simulated: root ignores file modes)."""
    import store.index
    from custody.ops.archive import Archive

    archive = Archive.open(field.cli.archive)
    expected = search.search(archive, search.Search(near="36.2,37.13", within_km=1))["items"]
    monkeypatch.setattr(store.index, "INDEX_FILE", "no-such-folder/index.db")
    r = search.search(archive, search.Search(near="36.2,37.13", within_km=1))
    assert r["index"]["file"] is None and r["index"]["indexed_now"] == r["index"]["entries"]
    assert r["items"] == expected


def test_fallbacks_without_rtree_or_fts_give_the_same_answers(field, tmp_path):
    """The same archive indexed with plain tables (as on an SQLite without R*Tree or FTS5)."""
    from custody.ops.archive import Archive
    from store.index import IndexStore

    archive = Archive.open(field.cli.archive)
    queries = [search.Search(near="36.2,37.13", within_km=5), search.Search(bbox="36,33,37,34"),
               search.Search(bbox="170,-60,-60,-30"), search.Search(text="pointer count"),
               search.Search(text="gp"), search.Search(since="2016-10-03", until="2016-10-05")]
    crossref = xref.Crossref(track=TRACKS / "flights.gpx", km=5, minutes=10)
    answers = []
    for rtree, fts in ((True, True), (False, False)):
        store = IndexStore(tmp_path / f"index-{rtree}.db", rtree=rtree, fts=fts)
        indexer.refresh(archive, store)
        assert (store.rtree, store.fts) == (rtree, fts)
        answers.append(([search.find(store, q) for q in queries],
                        xref.cross(store, crossref)["matches"]))
        store.close()
    assert answers[0] == answers[1]


def test_received_items_are_members_of_their_case_as_ingested_ones_are(cli_archive, tmp_path):
    """An item imported from a package with --case is found by `search --case`, with the facts of
    its metadata, exactly as an ingested one; verify finds the index consistent."""
    sender = cli_archive
    photo = DATA / "media" / "aleppo-gps.jpg"
    sha = sender("ingest", photo, "--case", "SENT-1", "--json", check=True).json()["files"][0][
        "sha256"]
    sender("export", sha, "--purpose", "handover", "-o", tmp_path / "pkg", check=True)
    receiver = Cli(tmp_path, tmp_path / "receiver", sender.key)
    receiver("init", "--name", "Receiving Centre", check=True)
    receiver("import", tmp_path / "pkg", "--case", "UN-2024-7", check=True)
    found = receiver("search", "--case", "UN-2024-7", "--json", check=True).json()
    assert [i["sha256"] for i in found["items"]] == [sha]
    (item,) = found["items"]
    assert item["cases"] == ["UN-2024-7"] and item["names"] == ["aleppo-gps.jpg"]
    assert item["gps"] is not None and item["captured_at"] is not None
    near = receiver("search", "--near", "36.2,37.13", "--within-km", "5", "--json", check=True)
    assert [i["sha256"] for i in near.json()["items"]] == [sha]
    receiver("verify", check=True)


def test_case_membership_is_one_rule_for_every_entry_that_files_an_item():
    """ingest, received, sighting and case-add file an item under their case; case-remove takes
    it out; nothing else changes membership (the replay's one rule, which the index follows)."""
    from custody.core.entry import Entry
    from custody.core.replay import case_change

    def entry(action: str, **details: object) -> Entry:
        return Entry("log", 5, "2026-01-01T00:00:00.000000Z", "k", action, "ab" * 32,
                     dict(details), None)

    for action in ("ingest", "received", "sighting", "case-add"):
        assert case_change(entry(action, case="C-1")) == ("C-1", True), action
        assert case_change(entry(action)) is None
    assert case_change(entry("case-remove", case="C-1")) == ("C-1", False)
    for action in ("note", "tag", "incident-add", "access"):
        assert case_change(entry(action, case="C-1")) is None


def test_search_code_runs_no_sql_and_imports_no_sqlite():
    """Search reaches its index only through the port (store/index_port.py); SQL lives in the
    SQLite adapter, store/index.py."""
    import custody.search

    folder = Path(custody.search.__file__).parent
    for module in sorted(folder.glob("*.py")):
        text = module.read_text()
        for banned in ("sqlite3", ".execute(", "SELECT "):
            assert banned not in text, f"{module.name} holds {banned!r}"


# The pure core ----------------------------------------------------------------------------------

latitudes = st.floats(-89.9, 89.9)
longitudes = st.floats(-180, 180)


@given(latitudes, longitudes, latitudes, longitudes)
def test_haversine_agrees_with_the_vector_formula(lat1, lon1, lat2, lon2):
    assert geo.haversine_km(lat1, lon1, lat2, lon2) == pytest.approx(
        great_circle_km(lat1, lon1, lat2, lon2), abs=1e-6)


@settings(max_examples=300)
@given(latitudes, longitudes, st.floats(0, 2 * math.pi), st.floats(0.001, 3000),
       st.floats(0, 1))
def test_search_boxes_hold_every_point_within_the_distance(lat, lon, bearing, km, f):
    to = destination(lat, lon, bearing, km * f)
    boxes = geo.boxes_around(lat, lat, lon, lon, km)
    assert any(b[0] - 1e-9 <= to[0] <= b[1] + 1e-9 and b[2] - 1e-9 <= to[1] <= b[3] + 1e-9
               for b in boxes), (to, boxes)


@settings(max_examples=200, deadline=None)
@given(st.floats(-60, 60), st.floats(-180, 180), st.floats(-0.3, 0.3), st.floats(-0.3, 0.3),
       st.floats(-0.3, 0.3), st.floats(-0.3, 0.3), st.integers(10, 600), st.floats(-900, 900),
       st.floats(1, 30), st.integers(60, 900))
def test_best_position_on_a_leg_matches_brute_force(lat, lon, a_lat, a_lon, b_lat, b_lon, span,
                                                     offset, km, window):
    """Against a scan of the leg at 1/2000 of its length, with the haversine of custody.core.geo."""
    leg = geo.Leg("s", 0.0, lat + a_lat, geo.wrap_lon(lon + a_lon), None, "a", float(span),
                  lat + b_lat, geo.wrap_lon(lon + b_lon), None, "b")
    subject = geo.Subject(lat, lon, offset, offset, float(window))
    found = geo.best_on_leg(leg, subject, km)
    best = None
    nearest = math.inf
    for k in range(2001):
        t = span * k / 2000
        if abs(t - offset) > window:
            continue
        p_lat, p_lon, _ = leg.at(t)
        d = great_circle_km(lat, lon, p_lat, p_lon)
        nearest = min(nearest, d)
        if d <= km:
            score = math.hypot(d / km, (t - offset) / window)
            best = score if best is None else min(best, score)
    if found is not None:  # whatever it found is real
        assert found.distance_km <= km and abs(found.dt_s) <= window
        p_lat, p_lon, _ = leg.at(found.t)
        assert great_circle_km(lat, lon, p_lat, p_lon) == pytest.approx(found.distance_km,
                                                                       abs=1e-9)
    if best is not None:
        if found is None:  # missed only at the very edge of the distance (the plane's error)
            assert nearest > km * 0.99, (nearest, km)
        else:
            assert found.score <= best + 1e-3


def test_legs_join_each_segment_in_time_order_and_respect_gaps():
    p = [tracks.TrackPoint("a", t, 0, t / 100, None, str(t)) for t in (0, 10, 20, 500, 510)]
    q = tracks.TrackPoint("b", 5, 1, 1, None, "q")
    legs = list(tracks.legs_of([*p, q]))
    assert [(a.ref, b.ref) for a, b in legs] == [("0", "10"), ("10", "20"), ("20", "500"),
                                                 ("500", "510"), ("q", "q")]
    legs = list(tracks.legs_of([*p, p[-1], q], max_gap=60))
    assert [(a.ref, b.ref) for a, b in legs] == [("0", "10"), ("10", "20"), ("500", "510"),
                                                 ("q", "q")]
    alone = tracks.TrackPoint("a", 0, 0, 0, None, "x")
    assert list(tracks.legs_of([alone, tracks.TrackPoint("a", 100, 0, 1, None, "y")],
                               max_gap=60)) == [(alone, alone), (tracks.TrackPoint(
                                   "a", 100, 0, 1, None, "y"),) * 2]


def test_legs_across_the_antimeridian_go_the_short_way():
    leg = geo.Leg("s", 0, 10, 179.5, None, "a", 100, 10, -179.5, None, "b")
    assert leg.at(50)[1] == pytest.approx(-180) or leg.at(50)[1] == pytest.approx(180)
    assert leg.box()[2:] == (179.5, 180.5)
    found = geo.best_on_leg(leg, geo.Subject(10, -179.9, 50, 50, 60), 50)
    assert found is not None and found.distance_km < 50
    lines = render._line([(179.0, 10.0), (-179.0, 12.0)])
    assert lines["type"] == "MultiLineString"
    assert lines["coordinates"] == [[[179.0, 10.0], [180.0, 11.0]], [[-180.0, 11.0], [-179.0, 12.0]]]


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2016-10-03T11:22:05Z", "2016-10-03T11:22:05+00:00"),
        ("2016-10-03 14:22:05+03:00", "2016-10-03T11:22:05+00:00"),
        ("2016-10-03T14:22:05.25+0300", "2016-10-03T11:22:05.250000+00:00"),
        ("2016-10-03T06:22-05", "2016-10-03T11:22:00+00:00"),
        ("1475493725", "2016-10-03T11:22:05+00:00"),
        (1475493725.5, "2016-10-03T11:22:05.500000+00:00"),
    ],
)
def test_track_times(text, utc):
    t = tracks.parse_time(text, "here")
    assert datetime.fromtimestamp(t, UTC).isoformat() == utc
