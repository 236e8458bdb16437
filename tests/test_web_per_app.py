"""What one `custody serve` app holds is its own: two apps in one process with different tile
servers each allow images from theirs only; and the crossref API names the track its caller
uploaded, never the temporary file the server reads it from (as the crossref page does)."""

from __future__ import annotations

import httpx

from custody.ops.keyfiles import load_key
from custody.service.app import ServiceSettings, create_app
from custody.service.signing import RequestSigner
from tests.conftest import PASSPHRASE
from tests.service_server import Threaded


def _img_src(response: httpx.Response) -> str:
    policy = response.headers["content-security-policy"]
    return next(d for d in policy.split("; ") if d.startswith("img-src"))


def test_two_apps_in_one_process_each_allow_images_from_their_own_tile_server(cli_archive):
    servers = [Threaded(create_app(ServiceSettings(
        cli_archive.archive, checkpoint_every=0, tile_url=url)))
        for url in ("https://tiles.one.example/{z}/{x}/{y}.png",
                    "https://{s}.tiles.two.example/{z}/{x}/{y}.png", None)]
    try:
        seen = [_img_src(httpx.get(s.base + "/signin")) for s in servers]
    finally:
        for s in servers:
            s.stop()
    assert seen == ["img-src 'self' data: https://tiles.one.example",
                    "img-src 'self' data: https://*.tiles.two.example",
                    "img-src 'self' data:"]


def test_the_crossref_api_names_the_uploaded_track_not_a_temporary_file(cli_archive):
    key = load_key(cli_archive.key, PASSPHRASE)
    server = Threaded(create_app(ServiceSettings(cli_archive.archive, checkpoint_every=0)))
    try:
        with httpx.Client(base_url=server.base, auth=RequestSigner(key), timeout=60) as c:
            untimed = b"lat,lon,time\n36.2,37.1,\n"
            named = c.post("/api/v1/crossref", content=untimed,
                           params={"km": 5, "minutes": 30, "name": "flight-IL76.csv"})
            unnamed = c.post("/api/v1/crossref", content=untimed,
                             params={"km": 5, "minutes": 30})
            long_arabic = c.post("/api/v1/crossref", content=untimed,  # 600 bytes of name
                                 params={"km": 5, "minutes": 30, "name": "مسار" * 75 + ".csv"})
            good = b"lat,lon,time\n36.2,37.1,2016-12-01T10:00:00Z\n"
            matched = c.post("/api/v1/crossref", content=good,
                             params={"km": 5, "minutes": 30, "name": "../../etc/flight.csv"})
    finally:
        server.stop()
    assert named.status_code == 400, named.text
    said = named.json()["error"]["message"]
    assert said.startswith("flight-IL76.csv: no timed points"), said
    assert unnamed.status_code == 400
    said = unnamed.json()["error"]["message"]
    assert said.startswith("uploaded-track: no timed points") and "custody-track" not in said
    assert long_arabic.status_code == 400, long_arabic.text  # its end kept, not a 500
    assert long_arabic.json()["error"]["message"].split(": ")[0].endswith("مسار.csv")
    assert matched.status_code == 200, matched.text
    assert matched.json()["track"]["file"] == "flight.csv"  # no server path, no folders
