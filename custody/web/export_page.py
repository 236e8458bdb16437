"""Exporting an item as an evidence package from its page: `custody export ITEM` in phases, each
thing the exporter signs made into a draft they sign on their own computer (docs/WEB.md,
"Exporting a package"). The package is made by custody/package/export_drafts.py, the CLI's code.
"""

from __future__ import annotations

import shutil
import tempfile
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
from custody.web.awaiting import Awaiting
from custody.web.site import Refused, Web

DESTINATION = "web export (custody serve)"
MAX_DRAFTS = 5  # a session's unsigned export drafts kept (the oldest dropped)


@dataclass(frozen=True, slots=True)
class Step:
    """An export waiting for the exporter's signature: first over their access statement
    (`unsigned` None), then over the package statement, bound to the access entry step 1
    appended (`unsigned.accesses`)."""

    purpose: str
    body: bytes  # the exact bytes they must sign
    unsigned: export_drafts.Unsigned | None = None


def may_export(caller: Caller) -> bool:
    """The CLI's rule: `access`, and a role that may send evidence away (not reviewer, field)."""
    return caller.role in EXPORT_ROLES


def export_routes(web: Web, archive_key: SigningKey | None) -> list[BaseRoute]:
    steps: Awaiting[Step] = Awaiting(MAX_DRAFTS)

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
        draft_id = steps.add(web.session(request).id, sha, Step(purpose, body))
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
        pasted = form_field(form, "statement")
        # Claimed before anything is appended or read: the same form sent twice at once makes
        # one access and one package, the other gets 409 (a refusal below puts it back).
        with steps.claim(session_id, draft, sha) as step:
            if step.unsigned is None:
                unsigned, item = await log_access(caller, sha, step, pasted)
            else:
                return await package(sha, step.unsigned, pasted)
        draft_id = steps.add(session_id, sha, Step(step.purpose, unsigned.statement, unsigned))
        text = export_drafts.as_text(unsigned.statement)
        return web.render(request, "sign.html", {
            "item": item, "kind": "export", "draft_id": draft_id, "draft": text,
            "lines": export_drafts.described(export_drafts.read(text)[1]), "step": 2,
            "signed_url": f"/items/{sha}/export/signed"})

    async def log_access(caller: Caller, sha: str, step: Step, pasted: str
                         ) -> tuple[export_drafts.Unsigned, dict[str, object]]:
        """Step 1: the access statement appended before any read, and the package drafted on
        that one entry (its seq), not on any earlier access with the same purpose."""
        statement, _ = statements.read_statement_file(pasted)
        if statement.body != step.body:
            raise Refused(422, "the signed statement is not the draft this page made: sign "
                               "the draft shown, with custody sign-statement")
        assert archive_key is not None  # allowed() said so

        def log_and_prepare(a: Archive) -> tuple[export_drafts.Unsigned, dict[str, object]]:
            seq = a.append_statement(statement).entry().seq
            return (export_drafts.prepare(a, caller.key_id, archive_key, [sha], step.purpose,
                                          {sha: seq}), views.show(a, sha))

        return await web.read(log_and_prepare)

    async def package(sha: str, unsigned: export_drafts.Unsigned, pasted: str) -> Response:
        """Step 2: the package statement's signature checked, the package made and sent."""
        signature = export_drafts.read_signature(pasted, unsigned.statement)
        folder = Path(tempfile.mkdtemp(prefix="custody-web-export-"))
        name = f"package-{sha[:16]}.zip"
        try:
            summary = await web.read(
                lambda a: export_drafts.finish(a, unsigned, signature, folder / name))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise  # the draft waits again: a wrong signature can be replaced by the right one
        return FileResponse(folder / name, media_type="application/zip", filename=name,
                            headers={"Cache-Control": "no-store",
                                     "X-Custody-Package-SHA256": str(summary["package_sha256"])},
                            background=BackgroundTask(shutil.rmtree, folder, True))

    base = "/items/{sha256}/export"
    return [web.page(base, start, ("POST",)), web.page(base + "/signed", signed, ("POST",))]
