"""The web maps' tile server (docs/WEB.md "Maps"): what `custody serve --tile-url` takes, and
the Content-Security-Policy it widens (only by the tile server's origin)."""

from __future__ import annotations

import pytest

from custody.errors import UsageError
from custody.web import maps, security
from tests.conftest import one_line_error


@pytest.mark.parametrize("url", [
    "ftp://tiles.example.org/{z}/{x}/{y}.png",  # not http(s)
    "https://tiles.example.org/tiles.png",  # no {z}/{x}/{y}
    "https://tiles.example.org/{z}/{x}/{y}.png?k={key}",  # a placeholder Leaflet cannot fill
    "https://tiles.example.org/{z}/{x}/{y}.png\"onerror=\"x",  # a quote
    "tiles.example.org/{z}/{x}/{y}.png",  # no scheme
    "https://tiles.{s}.example.org/{z}/{x}/{y}.png",  # {s} not the host's first label
])
def test_a_tile_url_that_cannot_be_a_tile_template_is_refused(url):
    with pytest.raises(UsageError):
        maps.tiles_from(url)


def test_no_tile_server_by_default_and_osm_names_openstreetmaps():
    assert maps.tiles_from(None) is None and maps.tiles_from("") is None
    osm = maps.tiles_from("osm")
    assert osm is not None and osm.origin == "https://tile.openstreetmap.org"
    assert osm.attribution == "© OpenStreetMap contributors"
    mine = maps.tiles_from("https://{s}.tiles.example.org:8443/{z}/{x}/{y}{r}.png", "Ours")
    assert mine is not None and mine.origin == "https://*.tiles.example.org:8443"


def test_the_csp_allows_images_from_the_tile_server_and_nowhere_else():
    before = security.content_security_policy()
    assert security.content_security_policy(maps.image_sources(None)) == before
    tiles = maps.tiles_from("https://tiles.example.org/{z}/{x}/{y}.png")
    img = next(d for d in security.content_security_policy(maps.image_sources(tiles))
               .split("; ") if d.startswith("img-src"))
    assert img == "img-src 'self' data: https://tiles.example.org"
    assert security.content_security_policy() == before  # nothing shared was widened


def test_serve_refuses_a_bad_tile_url_before_listening(cli_archive):
    result = cli_archive("serve", "--listen", "127.0.0.1:9", "--checkpoint-every", "0",
                         "--tile-url", "ftp://tiles.example.org/{z}/{x}/{y}.png")
    assert result.code == 2
    assert "--tile-url" in one_line_error(result)
