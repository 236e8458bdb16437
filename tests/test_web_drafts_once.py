"""A signed draft is taken back once: the same form sent twice at once acts once (the other gets
409), and a web export's package is bound to the one access entry its step 1 appended
(docs/WEB.md "Exporting a package", "Drafts are used once"). HTTP-level against the real
`custody serve` (a browser adds nothing to two concurrent POSTs); statements are signed with the
custodian's key as `custody sign-statement` signs them."""

from __future__ import annotations

import html
import io
import re
import threading
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from custody.core import canonical
from custody.ops import drafts
from custody.package import export_drafts
from tests.web_helpers import MEDIA, WebArchive, entries, make_web_archive


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebArchive]:
    # the server holds the archive key (a web export signs a checkpoint)
    web = make_web_archive(tmp_path_factory.mktemp("webonce"), [MEDIA / "aleppo-gps.jpg"],
                           serve_args=("--checkpoint-every", "3600"))
    yield web
    web.server.stop()


class Browser:
    """A signed-in session spoken to over HTTP: the forms a page would send, CSRF token and all."""

    def __init__(self, served: WebArchive, who: str) -> None:
        self.served = served
        self.who = who
        self.client = httpx.Client(base_url=served.base, timeout=120, follow_redirects=False)
        confirm = self.client.get(served.login_url(who))
        token = _field(confirm.text, "token")
        signed_in = self.client.post("/signin", data={"token": token,
                                                      "csrf_token": _field(confirm.text,
                                                                           "csrf_token")})
        assert signed_in.status_code == 303, signed_in.text
        self.csrf = _field(self.client.get("/").text, "csrf_token")

    def post(self, path: str, **form: str) -> httpx.Response:
        return self.client.post(path, data={"csrf_token": self.csrf, **form})

    def twice_at_once(self, path: str, **form: str) -> list[httpx.Response]:
        """The same form sent on two connections at the same instant (a double click, a retry)."""
        clients = [httpx.Client(base_url=self.served.base, timeout=300,
                                cookies=self.client.cookies) for _ in range(2)]
        start = threading.Barrier(2)
        got: list[httpx.Response] = []

        def send(client: httpx.Client) -> None:
            start.wait()
            got.append(client.post(path, data={"csrf_token": self.csrf, **form}))

        threads = [threading.Thread(target=send, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        for c in clients:
            c.close()
        return sorted(got, key=lambda r: r.status_code)

    def signed(self, page: httpx.Response) -> dict[str, str]:
        """What the custodian pastes back for a sign page: its draft id and the signed text."""
        assert page.status_code == 200, page.text
        draft = html.unescape(re.search(r'id="command">custody sign-statement ([^<]+)</pre>',
                                        page.text).group(1)).strip()
        key = self.served.keys[self.who]
        made = (export_drafts.sign(key, draft) if export_drafts.is_draft(draft)
                else drafts.sign(key, draft))
        return {"draft": _field(page.text, "draft"), "statement": canonical.encode(made).decode()}


def _field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no {name} in the page"
    return html.unescape(found.group(1))


def _export_accesses(served: WebArchive) -> list[dict]:
    return [e for e in entries(served.cli)
            if e["action"] == "access" and e["details"]["kind"] == "export"]


def test_a_note_signed_and_sent_twice_at_once_is_appended_once(served):
    jpeg = served.items[0]
    me = Browser(served, "reviewer")
    form = me.signed(me.post(f"/items/{jpeg}/note", text="seen twice, logged once"))
    before = len(entries(served.cli))
    ok, refused = me.twice_at_once(f"/items/{jpeg}/signed", **form)
    assert ok.status_code == 303, ok.text
    assert refused.status_code == 409, refused.text
    assert "no longer waiting" in refused.text
    notes = [e for e in entries(served.cli)[before:] if e["action"] == "note"]
    assert len(entries(served.cli)) == before + 1 and len(notes) == 1


def test_a_package_signed_and_sent_twice_at_once_is_made_once(served):
    jpeg = served.items[0]
    me = Browser(served, "investigator")
    purpose = "hand-over to the mechanism (sent twice)"
    step2 = me.post(f"/items/{jpeg}/export/signed",
                    **me.signed(me.post(f"/items/{jpeg}/export", purpose=purpose)))
    assert "step 2 of 2" in step2.text
    accesses = [e for e in _export_accesses(served) if e["details"]["purpose"] == purpose]
    assert len(accesses) == 1
    ok, refused = me.twice_at_once(f"/items/{jpeg}/export/signed", **me.signed(step2))
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/zip", ok.text
    assert refused.status_code == 409, refused.text[:500]
    assert "no longer waiting" in refused.text
    with zipfile.ZipFile(io.BytesIO(ok.content)) as package:
        assert any(n.endswith("custody/package.json") for n in package.namelist())
    # one access, one package: the losing submit read no content and logged nothing
    assert [e for e in _export_accesses(served) if e["details"]["purpose"] == purpose] == accesses


def test_a_second_export_with_the_same_purpose_needs_its_own_access(served):
    """A purpose used before backs no new package: the old package draft is spent, and the new
    export's package draft is made only from the access its own step 1 appends."""
    jpeg = served.items[0]
    me = Browser(served, "admin")
    purpose = "court filing (one purpose, two exports)"
    first_step2 = me.post(f"/items/{jpeg}/export/signed",
                          **me.signed(me.post(f"/items/{jpeg}/export", purpose=purpose)))
    first_form = me.signed(first_step2)
    first = me.post(f"/items/{jpeg}/export/signed", **first_form)
    assert first.status_code == 200, first.text[:500]
    assert me.post(f"/items/{jpeg}/export/signed", **first_form).status_code == 409

    second_step1 = me.post(f"/items/{jpeg}/export", purpose=purpose)
    second_form = me.signed(second_step1)
    # the first export's signed package statement is not this export's step 1
    assert me.post(f"/items/{jpeg}/export/signed",
                   **{**first_form, "draft": second_form["draft"]}).status_code == 422
    assert len([e for e in _export_accesses(served) if e["details"]["purpose"] == purpose]) == 1
    second_step2 = me.post(f"/items/{jpeg}/export/signed", **second_form)
    second = me.post(f"/items/{jpeg}/export/signed", **me.signed(second_step2))
    assert second.status_code == 200, second.text[:500]
    assert len([e for e in _export_accesses(served) if e["details"]["purpose"] == purpose]) == 2
