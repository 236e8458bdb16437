"""The search and crossref pages in a real browser (docs/WEB.md "Search and cross-reference"):
the real `custody serve` with its map tiles pointed at a closed port, the real JPEGs and video
with GPS in tests/data/media, a real GPX track, Debian's headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.service_server import Subprocess, free_port
from tests.web_helpers import (  # noqa: F401 - fixtures
    MEDIA,
    accesses,
    browser,
    make_web_archive,
    sign_in,
    sign_on_device,
)

pytestmark = pytest.mark.slow

TRACKS = Path(__file__).parent / "data" / "tracks"
FILES = ["aleppo-gps.jpg", "carbon-south-west.jpg", "clock-no-offset.jpg", "homs-loci.mp4"]
MAX_TRACK = 100_000  # bytes: flights.gpx (17 KB) fits, a 200 KB file does not


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The archive, served with map tiles from a port nothing listens on."""
    tmp = tmp_path_factory.mktemp("websearch")
    web = make_web_archive(tmp, [MEDIA / f for f in FILES])
    web.server.stop()
    dead_tiles = f"http://127.0.0.1:{free_port()}/{{z}}/{{x}}/{{y}}.png"
    web.server = Subprocess(tmp / "archive", tmp / "serve2.log", "--checkpoint-every", "0",
                            "--tile-url", dead_tiles, "--max-track", str(MAX_TRACK))
    web.base = web.server.base
    web.dead_tiles = dead_tiles
    names = {row["names"][0]: row["sha256"]
             for row in web.cli("list", "--json", check=True).json()}
    web.sha = names
    yield web
    web.server.stop()


def _signed_in(served, browser, who="reviewer"):
    context = browser.new_context()
    page = context.new_page()
    csp = []
    page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text
            else None)
    sign_in(page, served.login_url(who))
    return context, page, csp


def test_a_reviewer_searches_by_place_and_time_opens_the_item_and_requests_a_copy(served,
                                                                                   browser):
    """Issue 17's walk: sign in, search by place and time, open the item, request a copy with a
    purpose; the access is in the item's timeline and in the signed log."""
    context, page, csp = _signed_in(served, browser)
    page.get_by_role("link", name="Search").click()
    page.get_by_label("Near (LAT,LON)").fill("36.2,37.13")
    page.get_by_label("Within (km)").fill("5")
    page.get_by_label("Since").fill("2016-10-03")
    page.get_by_label("Until").fill("2016-10-05")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_selector("#map[data-ready]")
    query = dict(re.findall(r"[?&](\w+)=([^&]*)", page.url))
    assert query["near"] == "36.2%2C37.13" and query["within_km"] == "5"  # the CLI's names

    aleppo = served.sha["aleppo-gps.jpg"]
    rows = page.locator("table.results tbody tr")
    assert [rows.nth(i).get_attribute("data-sha256") for i in range(rows.count())] == [aleppo]
    assert "0.451" in rows.first.inner_text()  # the distance from the point searched, in km
    assert page.locator("#result-count").inner_text() == "(1)"
    # the map: one marker, although the tile server cannot be reached
    assert page.locator(".leaflet-marker-icon").count() == 1
    tiles = page.locator("img.leaflet-tile")
    assert tiles.count() > 0
    assert tiles.first.get_attribute("src").startswith(served.dead_tiles.split("{")[0])
    assert csp == []  # nothing refused by the Content-Security-Policy (no inline script)

    page.locator(".leaflet-marker-icon").click()
    assert page.locator(".leaflet-popup-content a").get_attribute("href") == f"/items/{aleppo}"
    with page.expect_response(lambda r: r.url.endswith(f"/items/{aleppo}")) as opened:
        page.get_by_role("link", name="aleppo-gps.jpg").first.click()
    assert page.url == f"{served.base}/items/{aleppo}"
    assert opened.value.status == 200 and aleppo in page.locator("dl.hashes").inner_text()

    page.set_default_timeout(120_000)  # signing and appending on a loaded machine
    page.fill("#copy-purpose", "Prosecutor's review of the Aleppo strike")
    page.click("#copy-form button")
    assert "signing this statement" in sign_on_device(page, served, "reviewer")
    with page.expect_download(timeout=120_000) as got:
        page.click("#signed-form button")
    assert got.value.suggested_filename  # the copy itself; its bytes are checked in test_web_item
    page.goto(f"{served.base}/items/{aleppo}")
    assert "Prosecutor's review of the Aleppo strike" in page.locator("#timeline").inner_text()
    assert [a["details"]["purpose"] for a in accesses(served, aleppo)] == [
        "Prosecutor's review of the Aleppo strike"]
    context.close()


def test_a_search_lists_undated_and_unplaced_items_apart_and_bad_filters_are_said(served,
                                                                                    browser):
    context, page, _ = _signed_in(served, browser, "investigator")
    page.goto(f"{served.base}/search?since=2016-10-01&until=2017-12-31"
              "&bbox=30,20,45,40&list_unplaced=1")
    found = {r.get_attribute("data-sha256")
             for r in page.locator("#results-h ~ div table.results tbody tr").all()}
    assert found == {served.sha["aleppo-gps.jpg"], served.sha["homs-loci.mp4"]}
    unplaced = page.locator("section", has=page.locator("#unplaced-h"))
    assert served.sha["clock-no-offset.jpg"] in unplaced.inner_html()  # no GPS: listed apart

    for query, status, said in [
        ("near=abc&within_km=5", 400, "--near 'abc' is not LAT,LON"),
        ("near=36.2,37.13&within_km=far", 400, "--within-km must be a number, not 'far'"),
        ("since=yesterday", 400, "--since: time 'yesterday' is not an RFC 3339 time"),
        ("bbox=45,40,30", 400, "is not WEST,SOUTH,EAST,NORTH"),
        ("case=NO-SUCH-CASE", 404, "no case 'NO-SUCH-CASE'"),
    ]:
        response = page.goto(f"{served.base}/search?{query}")
        assert response.status == status, query
        assert said in page.get_by_role("alert").inner_text(), query
        assert page.get_by_label("Near (LAT,LON)").count() == 1  # the form is still there
    context.close()


def test_a_crossref_upload_shows_the_matches_with_distances_on_a_map_and_a_timeline(
        served, browser, tmp_path):
    context, page, csp = _signed_in(served, browser, "investigator")
    page.goto(f"{served.base}/crossref")
    page.get_by_label("Track file").set_input_files(TRACKS / "flights.gpx")
    page.get_by_label("Within (km)").fill("5")
    page.get_by_label("And within (minutes)").fill("15")
    page.get_by_role("button", name="Cross-reference").click()
    page.wait_for_selector("#map[data-ready]")
    rows = page.locator("table.matches tbody tr")
    assert [rows.nth(i).get_attribute("data-sha256") for i in range(rows.count())] == [
        served.sha["homs-loci.mp4"], served.sha["aleppo-gps.jpg"]]  # best first, as the CLI
    assert rows.nth(0).locator(".distance").inner_text() == "0.892"
    assert rows.nth(1).locator(".distance").inner_text() == "2.343"
    assert rows.nth(1).locator(".dt").inner_text() == "+8.3"
    assert page.locator("ol.timeline li").count() == 2
    assert page.locator(".leaflet-marker-icon").count() == 2
    assert page.locator("path.track-line").count() == 4  # the four flights
    assert "flights.gpx" in page.locator("#track-h ~ dl").inner_text()
    assert csp == []

    bad = tmp_path / "bad.gpx"
    bad.write_text("<kml><Document/></kml>")
    page.get_by_label("Track file").set_input_files(bad)
    page.get_by_role("button", name="Cross-reference").click()
    assert "bad.gpx" in page.get_by_role("alert").first.inner_text()

    big = tmp_path / "big.csv"  # refused in the browser before it is sent, and by the server
    big.write_text("time,lat,lon\n" + "2016-10-03T11:00:00Z,36.2,37.1\n" * 8000)
    page.get_by_label("Track file").set_input_files(big)
    page.get_by_role("button", name="Cross-reference").click()
    assert "larger than this server takes" in page.locator("#upload-problem").inner_text()
    response = httpx.post(f"{served.base}/crossref", files={"track": big.read_bytes()})
    assert response.status_code == 413
    assert "larger than this server takes" in response.text
    assert response.headers["content-type"].startswith("text/html")
    context.close()


def test_the_arabic_search_page_is_right_to_left_with_arabic_labels(served, browser):
    context, page, _ = _signed_in(served, browser)
    page.goto(f"{served.base}/search?lang=ar&near=36.2,37.13&within_km=5")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("html").get_attribute("lang") == "ar"
    assert page.get_by_role("heading", level=1).inner_text() == "بحث"
    assert page.get_by_label("بالقرب من (خط العرض، خط الطول)").count() == 1
    assert page.locator("table.results tbody tr").count() == 1
    page.wait_for_selector("#map[data-ready]")
    assert page.locator(".leaflet-marker-icon").count() == 1
    context.close()
