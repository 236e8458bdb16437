"""The item page in the real browser: a reviewer's logged copy and preview, a video's poster frame
made in the supervised worker, an Arabic note, a field custodian's refused copy, and the PDF
report and inclusion proof that verify offline (docs/WEB.md "The item page")."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from tests.web_helpers import (  # noqa: F401
    MEDIA,
    WebArchive,
    accesses,
    browser,
    make_web_archive,
    opened,
    sign_in,
    sign_on_device,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebArchive]:
    web = make_web_archive(tmp_path_factory.mktemp("webitem"),
                           [MEDIA / "aleppo-gps.jpg", MEDIA / "homs-loci.mp4"])
    yield web
    web.server.stop()


def test_a_reviewer_requests_a_copy_and_a_preview_each_a_logged_access(served, browser, tmp_path):
    jpeg = served.items[0]
    context = browser.new_context(accept_downloads=True)
    page = opened(context)
    sign_in(page, served.login_url("reviewer"))
    page.goto(f"{served.base}/items/{jpeg}")
    assert jpeg in page.locator("dl.hashes").inner_text()  # the four hashes
    assert page.locator("#verification-state.ok").count() == 1
    # No content-derived byte without a logged access: the preview URL is refused first
    assert context.request.get(f"{served.base}/items/{jpeg}/preview.png").status == 403
    assert accesses(served, jpeg) == []

    page.fill("#copy-purpose", "Prosecutor's review of the strike")
    page.click("#copy-form button")
    assert "signing this statement" in sign_on_device(page, served, "reviewer")
    with page.expect_download(timeout=120_000) as got:
        page.click("#signed-form button")
    saved = tmp_path / "copy"
    got.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == jpeg

    page.goto(f"{served.base}/items/{jpeg}")
    page.fill("#preview-purpose", "Check the picture before review")
    page.click("#preview form button")
    assert "signing this statement" in sign_on_device(page, served, "reviewer")
    page.click("#signed-form button")
    page.wait_for_url(f"**/items/{jpeg}")
    assert page.locator("img.preview").evaluate("i => i.complete && i.naturalWidth") > 0
    assert context.request.get(f"{served.base}/items/{jpeg}/preview.png").status == 200
    timeline = page.locator("#timeline").inner_text()
    assert "Prosecutor's review of the strike" in timeline
    assert "Check the picture before review" in timeline
    logged = accesses(served, jpeg)  # and in `custody log`, signed by the reviewer
    assert [a["details"]["purpose"] for a in logged] == [
        "Prosecutor's review of the strike", "Check the picture before review"]
    assert {a["actor"] for a in logged} == {served.keys["reviewer"].key_id}
    # another session (another browser) has no logged access for the preview
    other = browser.new_context()
    page2 = opened(other)
    sign_in(page2, served.login_url("reviewer"))
    assert other.request.get(f"{served.base}/items/{jpeg}/preview.png").status == 403
    other.close()
    context.close()


def test_a_video_shows_its_poster_frame(served, browser):
    video = served.items[1]
    context = browser.new_context()
    page = opened(context)
    sign_in(page, served.login_url("investigator"))
    page.goto(f"{served.base}/items/{video}")
    page.fill("#preview-purpose", "Identify the location")
    page.click("#preview form button")
    assert "signing this statement" in sign_on_device(page, served, "investigator")
    page.click("#signed-form button")
    page.wait_for_url(f"**/items/{video}")
    assert page.locator("img.preview").evaluate("i => i.complete && i.naturalWidth") > 0
    assert "poster frame" in page.locator("#preview").inner_text()
    context.close()


def test_a_field_custodian_adds_an_arabic_note_but_may_not_copy(served, browser):
    jpeg = served.items[0]
    note = "ملاحظة: صُوِّرت من سطح المستشفى"
    context = browser.new_context()
    page = opened(context)
    sign_in(page, served.login_url("field"))
    page.goto(f"{served.base}/items/{jpeg}?lang=en")
    # the button is absent...
    assert page.locator("#copy-form").count() == 0
    assert page.locator("#preview form").count() == 0
    before = len(accesses(served, jpeg))
    # ...and the POST is refused (with the page's own CSRF token), nothing appended
    token = page.locator("#note-form input[name=csrf_token]").input_value()
    refused = context.request.post(f"{served.base}/items/{jpeg}/copy",
                                   form={"csrf_token": token, "purpose": "curious"})
    assert refused.status == 403
    assert "may not" in refused.text()
    assert len(accesses(served, jpeg)) == before

    page.fill("#note-text", note)
    page.click("#note-form button")
    assert "signing this statement" in sign_on_device(page, served, "field")
    page.click("#signed-form button")
    page.wait_for_url(f"**/items/{jpeg}")
    for lang, direction in (("en", "ltr"), ("ar", "rtl")):
        page.goto(f"{served.base}/items/{jpeg}?lang={lang}")
        assert page.locator("html").get_attribute("dir") == direction
        shown = page.locator("#notes bdi[dir=auto]", has_text=note)
        assert shown.count() == 1
        assert shown.inner_text() == note
    context.close()


def test_the_pdf_report_and_the_inclusion_proof_verify_offline(served, browser, tmp_path):
    jpeg = served.items[0]
    served.cli("checkpoint", check=True)
    context = browser.new_context(accept_downloads=True)
    page = opened(context)
    sign_in(page, served.login_url("reviewer"))
    page.goto(f"{served.base}/items/{jpeg}")
    with page.expect_download(timeout=120_000) as got:
        page.click("#report-form button")
    report = tmp_path / "report.pdf"
    got.value.save_as(report)
    assert report.read_bytes().startswith(b"%PDF")
    served.cli("verify-report", report, check=True)
    with page.expect_download(timeout=120_000) as got:
        page.click("a[href$='/proof']")
    proof = tmp_path / "proof.json"
    got.value.save_as(proof)
    assert json.loads(proof.read_text())["item"] == jpeg
    context.close()


def test_an_unknown_item_and_a_forged_statement_are_readable_pages(served, browser):
    context = browser.new_context()
    page = opened(context)
    sign_in(page, served.login_url("reviewer"))
    missing = page.goto(f"{served.base}/items/{'0' * 64}")
    assert missing.status == 404 and "Traceback" not in page.content()
    jpeg = served.items[0]
    page.goto(f"{served.base}/items/{jpeg}")
    page.fill("#copy-purpose", "a purpose")
    page.click("#copy-form button")
    page.fill("#statement", '{"format": "custody-statement", "statement": "e30=", "signature": "AA=="}')
    page.click("#signed-form button")
    assert "not the draft this page made" in page.content()
    context.close()


def test_a_transfer_is_offered_and_accepted_through_the_pages(served, browser):
    video = served.items[1]
    investigator = served.keys["investigator"].key_id
    admin_context = browser.new_context()
    page = opened(admin_context)
    sign_in(page, served.login_url("admin"))  # the admin ingested it: the holder offers
    page.goto(f"{served.base}/items/{video}")
    page.select_option("#offer-to", investigator)
    page.fill("#offer-purpose", "تسليم إلى فريق التحقيق")
    page.click("#offer-form button")
    assert "signing this statement" in sign_on_device(page, served, "admin")
    page.click("#signed-form button")
    page.wait_for_url(f"**/items/{video}")
    admin_context.close()

    context = browser.new_context()
    page = opened(context)
    sign_in(page, served.login_url("investigator"))
    page.goto(f"{served.base}/items/{video}")
    page.click(".accept-form button")
    assert "signing this statement" in sign_on_device(page, served, "investigator")
    page.click("#signed-form button")
    page.wait_for_url(f"**/items/{video}")
    assert served.cli("show", video, "--json", check=True).json()["holder"]["holder"] == investigator
    last = page.locator("#timeline tbody tr").last.inner_text()
    assert "transfer-accept" in last and "إيناس المحققة" in last
    context.close()
