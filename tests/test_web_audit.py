"""The web interface against hostile input, roles and accessibility, and the auditor's view of
the log, in a real browser on the real server (docs/WEB.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from custody.service.signing import access_statement
from tests.web_helpers import (  # noqa: F401 - fixtures
    MEDIA,
    browser,
    entries,
    make_web_archive,
    sign_in,
)

pytestmark = pytest.mark.slow

SCRIPT_NAME = '"><img src=x onerror=alert(1)>.jpg'
RLO_NAME = "invoice\u202egpj.exe.jpg"  # shows as "invoicejpg.exe" without isolation
SCRIPT_NOTE = '<script>alert("note")</script> \u202eتحذير'
LONG_NOTE = "A" * 10_000
SCRIPT_MAKE = '<script>alert("make")</script>'


def _hostile_jpeg(path: Path) -> Path:
    """A real JPEG whose EXIF Make is a script tag (the metadata reader reads it as written)."""
    image = Image.open(MEDIA / "clock-no-offset.jpg")
    exif = image.getexif()
    exif[0x010F] = SCRIPT_MAKE
    image.save(path, exif=exif, quality=90)
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("web-hostile")
    files = tmp / "files"
    files.mkdir()
    for name, source in [(SCRIPT_NAME, "aleppo-gps.jpg"), (RLO_NAME, "carbon-south-west.jpg")]:
        (files / name).write_bytes((MEDIA / source).read_bytes())
    made = make_web_archive(tmp, [files / SCRIPT_NAME, files / RLO_NAME,
                                  _hostile_jpeg(files / "exif.jpg")])
    cli = made.cli
    cli("note", made.items[0], SCRIPT_NOTE, check=True)
    cli("checkpoint", check=True)
    cli("note", made.items[1], LONG_NOTE, check=True)
    cli("checkpoint", check=True)
    yield made
    made.server.stop()


@pytest.fixture
def watched(browser):
    """A fresh browser context and page that record every dialog and console error."""
    context = browser.new_context()
    page = context.new_page()
    seen: list[str] = []
    page.on("dialog", lambda d: (seen.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("console", lambda m: seen.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.append(f"pageerror: {e}"))
    yield page, seen
    context.close()


NO_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth + 1"


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 375, "height": 740}])
def test_hostile_names_notes_and_metadata_are_shown_as_text(hostile, watched, viewport):
    page, seen = watched
    page.set_viewport_size(viewport)
    sign_in(page, hostile.login_url("reviewer"))
    for path in ["/", "/log", "/?lang=ar"]:
        page.goto(hostile.base + path)
        assert page.evaluate(NO_OVERFLOW), f"{path}: the page scrolls sideways"
        assert page.locator("img[src=x]").count() == 0
        if path != "/log":
            assert page.get_by_text(SCRIPT_NAME, exact=True).count() == 1
            assert page.get_by_text(SCRIPT_MAKE).count() == 1
            # the override is isolated inside its own <bdi dir=auto>: it cannot flip the row
            rlo = page.get_by_text(RLO_NAME, exact=True)
            assert rlo.evaluate("e => e.tagName") == "BDI"
            assert rlo.get_attribute("dir") == "auto"
    page.goto(hostile.base + "/log")
    page.locator("details").evaluate_all("ds => ds.forEach(d => d.open = true)")
    text = page.locator("main").inner_text()
    # as text (in the entries' JSON, where quotes are escaped)
    assert '<script>alert(\\"note\\")</script>' in text
    assert "<img src=x onerror=alert(1)>.jpg" in text
    assert page.evaluate(NO_OVERFLOW), "the 10,000-character note widens the page"
    cell = page.locator("td.details").filter(has_text="AAAA").first.bounding_box()
    assert cell is not None and cell["width"] <= viewport["width"]
    assert page.locator("script").count() == 0
    assert seen == []


def test_the_log_shows_entries_checkpoints_and_a_verified_consistency_proof(hostile, watched):
    page, seen = watched
    sign_in(page, hostile.login_url("reviewer"))
    page.goto(hostile.base + "/log")
    assert page.get_by_role("heading", name="Checkpoints").count() == 1
    total = len(entries(hostile.cli))
    assert page.locator("table.log tbody tr").count() == min(total, 50)
    assert page.locator("#entry-0").count() == 1
    sizes = [int(t) for t in page.locator(".proof-form tbody td:first-child").all_inner_texts()]
    assert len(sizes) == 2 and sizes[0] < sizes[1]
    page.get_by_role("button", name="Prove the newer extends the older").click()
    assert "Verified" in page.get_by_role("status").inner_text()
    assert page.locator("ol.hashes li").count() >= 1
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the proof").click()
    bundle = json.loads(Path(download.value.path()).read_text())
    assert bundle["type"] and bundle["proof"]
    vkey = hostile.cli("checkpoint", "--json", check=True).json()
    proof_file = hostile.tmp / "consistency.json"
    proof_file.write_text(json.dumps(bundle))
    checked = hostile.cli("verify-proof", proof_file, "--archive-key",
                          vkey["verifier_key"], "--json")
    assert checked.code == 0, checked.stderr
    assert seen == []


def test_a_field_custodian_cannot_read_content_and_a_reviewer_reads_it_only_logged(hostile,
                                                                                  browser):
    item = hostile.items[0]
    log_id = json.loads((hostile.cli.archive / "custody.json").read_text())["origin"]
    before = len(entries(hostile.cli))
    for who, status in [("field", 403), ("reviewer", 200)]:
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, hostile.login_url(who))
        csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
        statement = access_statement(hostile.keys[who], log_id, item, f"{who} reads it")
        answer = context.request.post(f"{hostile.base}/items/{item}/content", multipart={
            "csrf_token": csrf, "statement": {"name": "access.json", "mimeType":
                                              "application/json",
                                              "buffer": json.dumps(statement).encode()}})
        assert answer.status == status, answer.text()[:300]
        if who == "field":
            assert "may not access" in answer.text()
            assert len(entries(hostile.cli)) == before  # nothing appended
        else:
            assert answer.body() == (MEDIA / "aleppo-gps.jpg").read_bytes()
            assert answer.headers["content-type"] == "application/octet-stream"
            last = entries(hostile.cli)[-1]
            assert last["action"] == "access" and last["item"] == item
            assert last["details"]["purpose"] == "reviewer reads it"
        context.close()


def test_the_main_pages_have_no_serious_accessibility_violation(hostile, browser):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    found = {}
    for lang in ("en", "ar"):
        context = browser.new_context(bypass_csp=True)  # axe is injected as a script
        page = context.new_page()
        page.goto(hostile.login_url("reviewer") + f"&lang={lang}")
        pages = {"sign-in": None, "dashboard": "/", "log": "/log"}
        for name, path in pages.items():
            if path is not None:
                if name == "dashboard":
                    page.locator("form[action='/signin'] button").click()
                    page.wait_for_url("**/")
                else:
                    page.goto(hostile.base + path)
            results = axe.run(page)
            assert results.response["testEngine"]["name"] == "axe-core"  # it ran on the page
            bad = [(v["id"], v["impact"], len(v["nodes"])) for v in results.response["violations"]
                   if v["impact"] in ("serious", "critical")]
            if bad:
                found[f"{name} ({lang})"] = bad
        context.close()
    assert found == {}


def test_revoking_a_key_ends_its_browser_sessions_at_the_next_page(hostile, browser):
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, hostile.login_url("investigator"))
    assert page.get_by_role("heading", level=1).inner_text() == "Case dashboard"
    hostile.cli("revoke", hostile.keys["investigator"].key_id, "--reason", "device seized",
                check=True)
    page.goto(hostile.base + "/log")
    assert page.url.endswith("/signin")
    page.goto(hostile.login_url("investigator"))  # and no new link signs them in
    assert "not an active custodian" in page.get_by_role("alert").inner_text()
    context.close()
