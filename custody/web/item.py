"""The item page `/items/<sha256>` and its actions: a logged preview, hashes, clocks, place, device,
the custody timeline, verification, the inclusion proof, and the writes (a copy, a note, a tag, a
transfer offer or acceptance), each a statement the custodian signs on their own device.

docs/WEB.md "The item page": the server holds no custodian's key, so every action makes a
statement draft (custody/ops/drafts.py) that the custodian signs with `custody sign-statement`
and pastes back; the server then appends it through the API's own operations.
"""

from __future__ import annotations

import re
import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute

from custody.core import permissions
from custody.metadata.clocks import disagreement, is_modification, listed_once
from custody.ops import access, checkpoints, drafts, encryption, statements
from custody.ops import items as views
from custody.ops.archive import Archive, registry_of
from custody.ops.verify import audit
from custody.service.api import chunks
from custody.service.auth import Caller
from custody.web.awaiting import Awaiting
from custody.web.export_page import may_export
from custody.web.site import Refused, Web
from store.ports import CHUNK

MAX_SESSIONS = 1000  # per-session previews kept in memory (the oldest dropped)
MAX_DRAFTS = 20  # a session's unsigned drafts kept (the oldest dropped)
PREVIEW_DESTINATION = "web preview (custody serve)"
COPY_DESTINATION = "web download (custody serve)"
DIGEST = re.compile(r"^[0-9a-f]{64}$")
# What each action asks the custodian to sign: (the role rule, the statement's action)
ACTIONS = {"copy": "access", "preview": "access", "note": "note", "tag": "tag",
           "offer": "transfer-offer", "accept": "transfer-accept"}


@dataclass(frozen=True, slots=True)
class Pending:
    """A draft this session asked for: what it is for and the exact statement bytes."""

    kind: str  # a key of ACTIONS
    body: bytes


class Previews:
    """Each session's previews it has logged accesses for, in memory (lost on restart, as the
    sessions are; the least recently used session's dropped)."""

    def __init__(self) -> None:
        self._by_session: OrderedDict[str, dict[str, tuple[bytes | None, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, session_id: str) -> dict[str, tuple[bytes | None, str]]:
        with self._lock:
            shown = self._by_session.pop(session_id, None) or {}
            self._by_session[session_id] = shown
            while len(self._by_session) > MAX_SESSIONS:
                self._by_session.popitem(last=False)
            return shown


def page_data(archive: Archive, sha256: str, caller: Caller) -> dict[str, Any]:
    """Everything the item page shows, from the CLI's own operations (`show`, `verify ITEM`)."""
    item = views.show(archive, sha256)
    doc = item["metadata"]
    found = doc.get("clocks") or []
    spread = disagreement(found, doc.get("duration_s"))
    clocks = []
    for clock in listed_once(found):
        source = str(clock.get("source", ""))
        clocks.append({**clock, "modification": is_modification(source),
                       "conflict": spread is not None and clock.get("utc") in spread})
    report = audit(archive, sha256)
    registry = registry_of(archive.ledger)
    offer_to = [c for c in registry.by_id.values()
                if c.ended() is None and c.key_id != caller.key_id
                and permissions.may(c.role, "transfer-accept")]
    return {
        "item": item, "clocks": clocks, "clock_spread": spread,
        "verification": {"ok": report.ok, "problems": report.problems + report.unreadable,
                         "notices": report.notices, "entries": report.entries},
        "offer_to": sorted(offer_to, key=lambda c: c.name),
        "offers_to_me": [o for o in item["pending_offers"] if o["to"] == caller.key_id],
        "may": {**{kind: permissions.may(caller.role, action)
                   for kind, action in ACTIONS.items()},
                "export": may_export(caller)},
        "covered": bool(archive.ledger.checkpoints()),
    }


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Refused(400, f"the form's {name} is empty")
    return value.strip()


def _download_name(item: dict[str, Any]) -> str:
    """A safe file name for a download: the item's digest and its first name's suffix."""
    names = item.get("names") or []
    suffix = Path(names[0]).suffix if names else ""
    return str(item["sha256"]) + (suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else "")


def item_routes(web: Web) -> list[BaseRoute]:
    waiting: Awaiting[Pending] = Awaiting(MAX_DRAFTS)
    shown = Previews()
    makers: list[Any] = []  # the one preview worker, started on the first preview

    def previews() -> Any:
        if not makers:
            from custody.metadata.preview import Previews

            makers.append(Previews())
        return makers[0]

    def resolve(request: Request) -> str:
        ref = str(request.path_params["sha256"])
        if not DIGEST.fullmatch(ref):
            raise Refused(404, "an item page is named by the item's full SHA-256 (64 hex digits)")
        return ref

    async def show(request: Request) -> Response:
        caller = await web.caller(request)  # every custodian may read, as `show` and `log`
        sha = resolve(request)
        data = await web.read(lambda a: page_data(a, a.resolve_item(sha), caller))
        preview = shown.of(web.session(request).id).get(sha)
        return web.render(request, "item.html", {**data, "preview": preview,
                                                 "exports": web.exports})

    async def preview_png(request: Request) -> Response:
        await web.caller(request)
        sha = resolve(request)
        made = shown.of(web.session(request).id).get(sha)
        if made is None or made[0] is None:
            raise Refused(403, "no preview without a logged access: ask for the preview on the "
                               "item's page (an access entry with your purpose)")
        return Response(made[0], media_type="image/png",
                        headers={"Cache-Control": "no-store", "Content-Disposition": "inline"})

    async def proof(request: Request) -> Response:
        await web.caller(request)
        sha = resolve(request)
        from custody.display import json_text

        text = await web.read(lambda a: json_text(checkpoints.prove_item(a, sha).to_json()))
        return Response(text, media_type="application/json", headers={
            "Content-Disposition": f'attachment; filename="{sha}.proof.json"'})

    def details_of(kind: str, form: Any, sha: str) -> dict[str, Any]:
        if kind in ("copy", "preview"):
            return {"purpose": _field(form, "purpose"), "kind": "get",
                    "destination": COPY_DESTINATION if kind == "copy" else PREVIEW_DESTINATION}
        if kind == "note":
            return {"text": _field(form, "text"), "supersedes": None}
        if kind == "tag":
            return {"tag": _field(form, "tag"), "removed": False}
        if kind == "offer":
            return {"to": _field(form, "to"), "purpose": _field(form, "purpose"),
                    "group": str(uuid.uuid4())}
        offer = _field(form, "offer")
        if not offer.isdigit():
            raise Refused(400, "the offer is named by its entry number")
        return {"offer": int(offer)}

    def draft_page(kind: str) -> Any:
        async def handler(request: Request) -> Response:
            caller = await web.caller(request)
            web.require(caller, ACTIONS[kind])  # the command line's role rule, before any draft
            sha = resolve(request)
            details = details_of(kind, await web.form(request), sha)

            def compose(a: Archive) -> tuple[bytes, dict[str, Any]]:
                a.resolve_item(sha)  # a NotFound page for an item this archive lacks
                return (drafts.compose(a.config.origin, caller.key_id, ACTIONS[kind], sha,
                                       details), views.show(a, sha))

            body, item = await web.read(compose)
            draft_id = waiting.add(web.session(request).id, sha, Pending(kind, body))
            return web.render(request, "sign.html", {
                "item": item, "kind": kind, "draft_id": draft_id, "draft": drafts.as_text(body),
                "lines": drafts.described(drafts.read(drafts.as_text(body))[1])})

        return handler

    async def signed(request: Request) -> Response:
        caller = await web.caller(request)
        sha = resolve(request)
        form = await web.form(request)
        session_id = web.session(request).id
        # Claimed before it is acted on: the same form sent twice at once is appended once,
        # the other gets 409 (a refusal below puts the draft back for a right signature).
        with waiting.claim(session_id, _field(form, "draft"), sha) as pending:
            web.require(caller, ACTIONS[pending.kind])  # a role changed since applies now
            signed_statement, _ = statements.read_statement_file(_field(form, "statement"))
            if signed_statement.body != pending.body:
                raise Refused(422, "the signed statement is not the draft this page made: sign "
                                   "the draft shown, with custody sign-statement")
            if pending.kind == "copy":
                def open_copy(a: Archive) -> tuple[Any, str]:
                    reader = access.content_for_statement(a, sha, signed_statement)
                    return reader, _download_name(views.show(a, sha))

                reader, name = await web.read(open_copy)
                return StreamingResponse(chunks(reader), media_type="application/octet-stream",
                                         headers={"X-Custody-SHA256": sha,
                                                  "Cache-Control": "no-store",
                                                  "Content-Disposition":
                                                      f'attachment; filename="{name}"'})
            if pending.kind == "preview":
                def make(a: Archive) -> tuple[bytes | None, str]:
                    with access.content_for_statement(a, sha, signed_statement) as reader, \
                            tempfile.TemporaryDirectory(prefix="custody-preview-",
                                                        dir=encryption.working_folder(a)) as folder:
                        path = Path(folder) / "content"  # no extension: the worker reads bytes
                        with open(path, "xb") as out:
                            while chunk := reader.read(CHUNK):
                                out.write(chunk)
                        made: tuple[bytes | None, str] = previews().make(str(path))
                        return made

                shown.of(session_id)[sha] = await web.read(make)
            else:
                await web.read(lambda a: a.append_statement(signed_statement))
        return RedirectResponse(f"/items/{sha}", status_code=303)

    async def report_pdf(request: Request) -> Response:
        await web.caller(request)  # `report` without --purpose reads no content: every role
        sha = resolve(request)
        from custody.report import model as reports
        from custody.report import pdf

        def build(a: Archive) -> bytes:
            built = reports.build(a, [a.resolve_item(sha)])
            with tempfile.TemporaryDirectory(prefix="custody-web-report-") as folder:
                path = Path(folder) / "report.pdf"
                pdf.write(built, path)
                return path.read_bytes()

        data = await web.read(build)
        return Response(data, media_type="application/pdf", headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{sha}.report.pdf"'})

    base = "/items/{sha256}"
    return [
        web.page(base, show),
        web.page(base + "/preview.png", preview_png),
        web.page(base + "/proof", proof),
        *(web.page(f"{base}/{kind}", draft_page(kind), ("POST",)) for kind in ACTIONS),
        web.page(base + "/signed", signed, ("POST",)),
        web.page(base + "/report", report_pdf, ("POST",)),
    ]
