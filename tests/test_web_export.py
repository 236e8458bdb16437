"""Exporting a package from the item page in the real browser: the exporter signs their access
(logged before any byte is read), then the package statement, each with `custody sign-statement`;
the zip downloaded passes `custody verify-package`; a reviewer or field custodian may not export
(docs/WEB.md "Exporting a package")."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.web_helpers import (  # noqa: F401
    MEDIA,
    WebArchive,
    browser,
    make_web_archive,
    opened,
    sign_in,
    sign_on_device,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebArchive]:
    # the server holds the archive key (it signs checkpoints): a package needs a fresh one
    web = make_web_archive(tmp_path_factory.mktemp("webexport"), [MEDIA / "aleppo-gps.jpg"],
                           serve_args=("--checkpoint-every", "3600"))
    yield web
    web.server.stop()


def log_of(served: WebArchive, item: str) -> list[dict]:
    return [json.loads(x) for x in served.cli("log", item, "--json", check=True).stdout.splitlines()]


def test_an_investigator_exports_a_package_that_verifies_offline(served, browser, tmp_path):
    jpeg = served.items[0]
    purpose = "تسليم إلى آلية الأمم المتحدة (IIIM hand-over)"
    context = browser.new_context(accept_downloads=True)
    page = opened(context)
    sign_in(page, served.login_url("investigator"))
    page.goto(f"{served.base}/items/{jpeg}")
    page.fill("#export-purpose", purpose)
    page.click("#export-form button")
    assert "step 1 of 2" in page.locator("#export-step").inner_text()
    said = sign_on_device(page, served, "investigator")
    assert "action:  access" in said and '"export"' in said
    page.click("#signed-form button")
    # the access is in the log before any byte was read, signed by the investigator
    exports = [e for e in log_of(served, jpeg)
               if e["action"] == "access" and e["details"]["kind"] == "export"]
    assert [(e["actor"], e["details"]["purpose"]) for e in exports] == [
        (served.keys["investigator"].key_id, purpose)]

    assert "step 2 of 2" in page.locator("#export-step").inner_text()
    said = sign_on_device(page, served, "investigator")
    assert "signing this evidence package" in said and jpeg in said
    with page.expect_download(timeout=120_000) as got:
        page.click("#signed-form button")
    package = tmp_path / "package.zip"
    got.value.save_as(package)
    checked = served.cli("verify-package", package, "--json", check=True).json()
    assert checked["ok"] and checked["purpose"] == purpose
    assert checked["exported_by"]["key_id"] == served.keys["investigator"].key_id
    assert [i["sha256"] for i in checked["items"]] == [jpeg]
    context.close()


def test_a_package_signature_for_another_draft_is_refused(served, browser):
    jpeg = served.items[0]
    context = browser.new_context()
    page = opened(context)
    sign_in(page, served.login_url("admin"))
    page.goto(f"{served.base}/items/{jpeg}?lang=ar")  # the Arabic page offers it too
    assert "تصدير حزمة" in page.locator("#export-form").inner_text()
    page.fill("#export-purpose", "court filing")
    page.click("#export-form button")
    assert "الخطوة 1 من 2" in page.locator("#export-step").inner_text()
    sign_on_device(page, served, "admin")
    page.click("#signed-form button")
    page.fill("#statement", '{"format": "custody-package-signature", '
                            '"package_statement": "00", "signature": "AAAA"}')
    page.click("#signed-form button")
    assert "another package draft" in page.content()
    context.close()


def test_a_reviewer_or_field_custodian_may_not_export(served, browser):
    jpeg = served.items[0]
    for who in ("reviewer", "field"):
        context = browser.new_context()
        page = opened(context)
        sign_in(page, served.login_url(who))
        page.goto(f"{served.base}/items/{jpeg}?lang=en")
        assert page.locator("#export-form").count() == 0
        before = len(log_of(served, jpeg))
        token = page.locator("#report-form input[name=csrf_token]").input_value()
        refused = context.request.post(f"{served.base}/items/{jpeg}/export",
                                       form={"csrf_token": token, "purpose": "curious"})
        assert refused.status == 403 and "may not" in refused.text()
        assert len(log_of(served, jpeg)) == before
        context.close()
