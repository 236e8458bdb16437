"""Exporting an item as an evidence package from its page: `custody export ITEM` in phases, each
thing the exporter signs made into a draft they sign on their own computer (docs/WEB.md,
"Exporting a package"). The package is made by custody/package/export_drafts.py, the CLI's code.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute

from custody.core.signing import SigningKey
from custody.errors import NotPermitted
from custody.ops import drafts, statements
from custody.ops import items as views
from custody.ops.archive import Archive
from custody.package import export_drafts
from custody.package.layout import EXPORT_ROLES
from custody.service.auth import Caller
from custody.web.site import Refused, Web

DESTINATION = "web export (custody serve)"
MAX_SESSIONS = 1000
MAX_DRAFTS = 5  # a session's unsigned export drafts kept (the oldest dropped)


@dataclass(frozen=True, slots=True)
class Step:
    """An export waiting for the exporter's signature: first over their access statement
    (`unsigned` None), then over the package statement."""

    item: str
    purpose: str
    body: bytes  # the exact bytes they must sign
    unsigned: export_drafts.Unsigned | None = None


class Steps:
    """Every session's export steps awaiting a signature, in memory (gone with the session)."""

    def __init__(self) -> None:
        self._by_session: OrderedDict[str, OrderedDict[str, Step]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, session_id: str, step: Step) -> str:
        draft_id = uuid.uuid4().hex
        with self._lock:
            waiting = self._by_session.pop(session_id, None) or OrderedDict()
            self._by_session[session_id] = waiting
            waiting[draft_id] = step
            while len(waiting) > MAX_DRAFTS:
                waiting.popitem(last=False)
            while len(self._by_session) > MAX_SESSIONS:
                self._by_session.popitem(last=False)
        return draft_id

    def get(self, session_id: str, draft_id: str, item: str) -> Step:
        with self._lock:
            step = (self._by_session.get(session_id) or OrderedDict()).get(draft_id)
        if step is None or step.item != item:
            raise Refused(409, "this export draft is no longer waiting (signed already, or from "
                               "an ended session): start the export again")
        return step

    def drop(self, session_id: str, draft_id: str) -> None:
        """A draft is used once: dropped once its signature was taken."""
        with self._lock:
            (self._by_session.get(session_id) or OrderedDict()).pop(draft_id, None)


def may_export(caller: Caller) -> bool:
    """The CLI's rule: `access`, and a role that may send evidence away (not reviewer, field)."""
    return caller.role in EXPORT_ROLES


def export_routes(web: Web, archive_key: SigningKey | None) -> list[BaseRoute]:
    steps = Steps()

    def allowed(caller: Caller) -> None:
        web.require(caller, "access")
        if not may_export(caller):
            raise NotPermitted(f"a custodian of role {caller.role} may not export evidence "
                               f"(needs {' or '.join(EXPORT_ROLES)})")
        if archive_key is None:
            raise Refused(409, "this server signs no checkpoints (custody serve "
                               "--checkpoint-every 0), and a package needs one: export with "
                               "custody export on the archive's machine")

    def form_field(form: object, name: str) -> str:
        value = form.get(name)  # type: ignore[attr-defined]
        if not isinstance(value, str) or not value.strip():
            raise Refused(400, f"the form's {name} is empty")
        return value.strip()

    async def start(request: Request) -> Response:
        caller = await web.caller(request)
        allowed(caller)  # before any draft, as on the command line
        sha = str(request.path_params["sha256"])
        purpose = form_field(await web.form(request), "purpose")

        def compose(a: Archive) -> tuple[bytes, dict[str, object]]:
            sha_found = a.resolve_item(sha)
            if sha_found != sha:
                raise Refused(404, "an item is exported by its full SHA-256")
            export_drafts.check_exporter(a, caller.key_id)
            body = drafts.compose(a.config.origin, caller.key_id, "access", sha,
                                  {"purpose": purpose, "kind": "export",
                                   "destination": DESTINATION})
            return body, views.show(a, sha)

        body, item = await web.read(compose)
        draft_id = steps.add(web.session(request).id, Step(sha, purpose, body))
        text = drafts.as_text(body)
        return web.render(request, "sign.html", {
            "item": item, "kind": "export", "draft_id": draft_id, "draft": text,
            "lines": drafts.described(drafts.read(text)[1]), "step": 1,
            "signed_url": f"/items/{sha}/export/signed"})

    async def signed(request: Request) -> Response:
        caller = await web.caller(request)
        allowed(caller)  # a role changed since the draft applies now
        sha = str(request.path_params["sha256"])
        form = await web.form(request)
        session_id = web.session(request).id
        draft = form_field(form, "draft")
        step = steps.get(session_id, draft, sha)
        pasted = form_field(form, "statement")
        if step.unsigned is None:  # step 1: the access statement, appended before any read
            statement, _ = statements.read_statement_file(pasted)
            if statement.body != step.body:
                raise Refused(422, "the signed statement is not the draft this page made: sign "
                                   "the draft shown, with custody sign-statement")
            assert archive_key is not None  # allowed() said so

            def log_and_prepare(a: Archive) -> tuple[export_drafts.Unsigned, dict[str, object]]:
                a.append_statement(statement)
                return (export_drafts.prepare(a, caller.key_id, archive_key, [sha],
                                              step.purpose), views.show(a, sha))

            unsigned, item = await web.read(log_and_prepare)
            steps.drop(session_id, draft)
            draft_id = steps.add(session_id, Step(sha, step.purpose, unsigned.statement,
                                                  unsigned))
            text = export_drafts.as_text(unsigned.statement)
            return web.render(request, "sign.html", {
                "item": item, "kind": "export", "draft_id": draft_id, "draft": text,
                "lines": export_drafts.described(export_drafts.read(text)[1]), "step": 2,
                "signed_url": f"/items/{sha}/export/signed"})

        unsigned = step.unsigned  # step 2: the package statement's signature
        signature = export_drafts.read_signature(pasted, unsigned.statement)
        folder = Path(tempfile.mkdtemp(prefix="custody-web-export-"))
        name = f"package-{sha[:16]}.zip"
        try:
            summary = await web.read(
                lambda a: export_drafts.finish(a, unsigned, signature, folder / name))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise  # the draft stays: a wrong signature can be replaced by the right one
        steps.drop(session_id, draft)
        return FileResponse(folder / name, media_type="application/zip", filename=name,
                            headers={"Cache-Control": "no-store",
                                     "X-Custody-Package-SHA256": str(summary["package_sha256"])},
                            background=BackgroundTask(shutil.rmtree, folder, True))

    base = "/items/{sha256}/export"
    return [web.page(base, start, ("POST",)), web.page(base + "/signed", signed, ("POST",))]
