"""The web interface's foundation in a real browser: sign-in with the custodian's key, sessions,
CSRF, the security headers, and Arabic right to left (docs/WEB.md)."""

from __future__ import annotations

import base64
import json
import secrets
import time

import pytest

from custody.core import login_token
from custody.core.signing import SigningKey
from tests.web_helpers import browser, sign_in, web_archive  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

NO_INLINE = """() => ({
  inline_scripts: document.querySelectorAll('script:not([src])').length,
  style_attributes: document.querySelectorAll('[style]').length,
  style_elements: document.querySelectorAll('style').length,
  handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.attributes])
             .filter(a => a.name.startsWith('on')).length,
})"""


def _refusal(page) -> str:
    return page.get_by_role("alert").inner_text()


def test_a_login_link_signs_in_once_and_only_once(web_archive, browser):
    url = web_archive.login_url("reviewer")
    first = browser.new_context()
    page = first.new_page()
    sign_in(page, url)
    assert page.get_by_role("heading", level=1).inner_text() == "Case dashboard"
    assert "Rami Reviewer" in page.locator(".who").inner_text()
    first.close()

    again = browser.new_context()
    page = again.new_page()
    page.goto(url)
    page.get_by_role("button", name="Sign in").click()
    assert "used already" in _refusal(page)
    page.goto(web_archive.base + "/")
    assert page.url.endswith("/signin")  # not signed in
    again.close()


def _forged(served, who_signs: SigningKey, key_id: str | None = None, age: int = 0) -> str:
    origin = login_token.origin(served.base)
    token = login_token.make(who_signs, origin, int(time.time()) - age, secrets.token_urlsafe(24))
    if key_id is None:
        return f"{served.base}/signin?token={token}"
    head, tail = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    claims["key_id"] = key_id  # claim to be someone else, keep the signature
    head = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":"),
                                               sort_keys=True).encode()).rstrip(b"=").decode()
    return f"{served.base}/signin?token={head}.{tail}"


@pytest.mark.parametrize("case,reason", [
    ("expired", "has expired"),
    ("forged", "signature does not verify"),
    ("revoked", "not an active custodian"),
    ("unknown", "not an active custodian"),
    ("damaged", "damaged"),
    ("other-server", "not this server"),
])
def test_a_bad_login_link_is_refused_with_a_readable_page(web_archive, browser, case, reason):
    keys = web_archive.keys
    url = {
        "expired": lambda: _forged(web_archive, keys["reviewer"],
                                   age=login_token.LIFETIME_SECONDS + 60),
        "forged": lambda: _forged(web_archive, keys["field"], key_id=keys["admin"].key_id),
        "revoked": lambda: web_archive.login_url("revoked"),
        "unknown": lambda: _forged(web_archive, SigningKey.generate("Stranger")),
        "damaged": lambda: web_archive.base + "/signin?token=" + "x" * 40,
        "other-server": lambda: web_archive.login_url("reviewer").replace("127.0.0.1",
                                                                          "localhost"),
    }[case]()
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(url)
    assert response.status == 401
    assert reason in _refusal(page)
    assert page.get_by_role("button", name="Sign in").count() == 0
    context.close()


def test_sign_out_ends_the_session_and_the_cookie(web_archive, browser):
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, web_archive.login_url("investigator"))
    cookie = next(c for c in context.cookies() if c["name"] == "custody_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin")
    assert not [c for c in context.cookies() if c["name"] == "custody_session"
                and c["value"] == cookie["value"]]
    # the old session id, replayed by hand, is no session any more
    other = browser.new_context()
    other.add_cookies([{**cookie}])
    page = other.new_page()
    page.goto(web_archive.base + "/")
    assert page.url.endswith("/signin")
    context.close()
    other.close()


def test_a_post_without_the_csrf_token_is_refused(web_archive, browser):
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, web_archive.login_url("reviewer"))
    for form in ({}, {"csrf_token": "not-the-token"}):
        refused = context.request.post(web_archive.base + "/signout", form=form,
                                       max_redirects=0)
        assert refused.status == 403
        assert "CSRF" in refused.text()
    page.goto(web_archive.base + "/")  # still signed in: the forged sign-out did nothing
    assert page.get_by_role("heading", level=1).inner_text() == "Case dashboard"
    context.close()


def test_every_page_has_a_csp_without_inline_code(web_archive, browser):
    context = browser.new_context()
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text
            else None)
    sign_in(page, web_archive.login_url("reviewer"))
    for path in ["/", "/signin", "/?lang=ar", "/no-such-page-here"]:
        response = page.goto(web_archive.base + path)
        csp = response.headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        if response.headers["content-type"].startswith("text/html"):
            assert page.evaluate(NO_INLINE) == {"inline_scripts": 0, "style_attributes": 0,
                                                "style_elements": 0, "handlers": 0}
    assert violations == []
    context.close()


def test_arabic_renders_right_to_left_with_names_isolated(web_archive, browser):
    context = browser.new_context(locale="ar-SY", extra_http_headers={
        "Accept-Language": "ar-SY,ar;q=0.9"})
    page = context.new_page()
    page.goto(web_archive.login_url("field"))
    html = page.locator("html")
    assert html.get_attribute("dir") == "rtl" and html.get_attribute("lang") == "ar"
    page.get_by_role("button", name="تسجيل الدخول").click()
    page.wait_for_url("**/")
    assert page.get_by_role("heading", level=1).inner_text() == "لوحة القضية"
    assert page.locator(".who bdi[dir=auto]").get_attribute("dir") == "auto"
    assert page.locator(".who bdi[dir=auto]").inner_text() == "فرح الميدانية"
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    page.get_by_role("link", name="English").click()  # the switch, kept in a cookie
    assert page.locator("html").get_attribute("dir") == "ltr"
    page.goto(web_archive.base + "/")
    assert page.get_by_role("heading", level=1).inner_text() == "Case dashboard"
    assert page.locator(".who bdi[dir=auto]").inner_text() == "فرح الميدانية"  # Arabic name, English page
    context.close()
