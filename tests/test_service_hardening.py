"""`custody serve` under hardening: rate limits, CORS, internal errors, a lost archive, and a
schemathesis run of /openapi.json against the live server with signed requests."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from starlette.requests import Request
from starlette.routing import Route

from custody.core.signing import SigningKey
from custody.ops.keyfiles import write_new_key
from custody.service.app import ServiceSettings, create_app
from custody.service.signing import RequestSigner
from tests.conftest import PASSPHRASE, Cli
from tests.service_server import Subprocess, Threaded

MEDIA = Path(__file__).parent / "data" / "media"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, SigningKey]:
    tmp = tmp_path_factory.mktemp("hardened")
    key = write_new_key(tmp / "keys" / "admin.key", "Alice Admin", PASSPHRASE)
    cli = Cli(tmp, tmp / "archive", tmp / "keys" / "admin.key")
    cli("init", "--name", "Hardening Test Centre", check=True)
    odd = tmp / "odd"
    odd.mkdir()
    # a name as a field laptop's file system may hold it: not UTF-8 (kept with surrogateescape)
    shutil.copy(MEDIA / "carbon-south-west.jpg", os.fsdecode(bytes(odd) + b"/caf\xe9.jpg"))
    cli("ingest", MEDIA / "aleppo-gps.jpg", odd, "--case", "H-1", check=True)
    return cli, key


@pytest.fixture
def threaded():
    servers: list[Threaded] = []

    def start(settings: ServiceSettings) -> Threaded:
        servers.append(Threaded(create_app(settings)))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def test_a_key_past_its_rate_gets_429(archive, threaded):
    cli, key = archive
    server = threaded(ServiceSettings(cli.archive, rate_per_second=0.01, rate_burst=2))
    with httpx.Client(base_url=server.base, auth=RequestSigner(key)) as c:
        codes = [c.get("/api/v1/whoami").status_code for _ in range(3)]
        r = c.get("/api/v1/whoami")
    assert codes == [200, 200, 429]
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate-limited"


def test_an_allowed_origin_gets_its_cors_preflight(archive, threaded):
    cli, _ = archive
    server = threaded(ServiceSettings(cli.archive, allow_origins=("https://review.example",)))
    asked = {"Access-Control-Request-Method": "GET"}
    ok = httpx.options(server.base + "/api/v1/items",
                       headers={"Origin": "https://review.example", **asked})
    other = httpx.options(server.base + "/api/v1/items",
                          headers={"Origin": "https://evil.example", **asked})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://review.example"
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


def test_a_name_that_is_not_utf8_is_served_as_list_json_shows_it(archive, threaded):
    cli, key = archive
    server = threaded(ServiceSettings(cli.archive))
    with httpx.Client(base_url=server.base, auth=RequestSigner(key)) as c:
        r = c.get("/api/v1/items")
    assert r.status_code == 200, r.text
    assert r.json() == cli("list", "--json", check=True).json()
    assert "caf\\xe9.jpg" in [n for item in r.json() for n in item["names"]]


def test_an_internal_error_shows_no_trace_or_path(archive, threaded):
    cli, _ = archive
    secret = str(cli.archive / "ledger.db")

    async def boom(request: Request) -> None:
        raise RuntimeError(f"disk I/O error at {secret}")

    server = threaded(ServiceSettings(cli.archive, extra_routes=(Route("/boom", boom),)))
    r = httpx.get(server.base + "/boom")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal-error", "message": r.json()["error"][
        "message"]}}
    assert secret not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text


def test_a_lost_archive_gets_503_without_its_path_and_the_server_recovers(archive, tmp_path):
    cli, key = archive
    copy = tmp_path / "copy"
    shutil.copytree(cli.archive, copy)
    server = Subprocess(copy, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=server.base, auth=RequestSigner(key)) as c:
            assert c.get("/api/v1/items").status_code == 200
            (copy / "custody.json").rename(tmp_path / "custody.json")
            r = c.get("/api/v1/items")
            assert r.status_code == 503 and r.json()["error"]["code"] == "archive-unavailable"
            assert str(tmp_path) not in r.text and "Traceback" not in r.text
            (tmp_path / "custody.json").rename(copy / "custody.json")
            assert c.get("/api/v1/items").status_code == 200
    finally:
        server.stop()
    lines = [json.loads(x) for x in (tmp_path / "serve.log").read_text().splitlines()
             if x.startswith("{")]
    assert [x["status"] for x in lines if x["path"] == "/api/v1/items"] == [200, 503, 200]


# schemathesis: every route of /openapi.json, signed and unsigned, against the live server --------

@pytest.fixture(scope="module")
def live(archive):
    cli, key = archive
    server = Threaded(create_app(ServiceSettings(cli.archive, rate_per_second=1000,
                                                 rate_burst=1000)))
    yield server, key
    server.stop()


@pytest.fixture(scope="module")
def api_schema(live):
    import schemathesis
    from schemathesis.config import SchemathesisConfig

    server, _ = live
    # Examples and fuzzing; the coverage phase (every boundary of every parameter, some
    # hundreds of cases for search's 15 filters) is left to a manual run: CI time
    # (docs/SERVICE.md "schemathesis").
    config = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
    return schemathesis.openapi.from_url(server.base + "/openapi.json", config=config)


schema = pytest.importorskip("schemathesis").pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=6, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_5xx_and_no_schema_violation(case, live):
    import requests
    from schemathesis import checks

    from custody.service.signing import RequestsSigner

    server, key = live
    # Signed, every check but three that expect the request to stay without (or with bad) auth
    # (our signer adds a valid signature after schemathesis removed or spoiled its header; the
    # unsigned call runs them), and positive_data_acceptance: a schema-valid statement file is
    # still refused (422) unless its bytes are a statement signed by an enrolled custodian,
    # which no JSON Schema can say (docs/SERVICE.md "schemathesis").
    overridden = [checks.ignored_auth, checks.missing_required_header,
                  checks.negative_data_rejection, checks.positive_data_acceptance]
    with requests.Session() as signed:
        signed.auth = RequestsSigner(key)
        case.call_and_validate(base_url=server.base, session=signed,
                               excluded_checks=overridden)
    case.call_and_validate(base_url=server.base)  # unsigned: a documented 401 everywhere
