"""An item's bytes in the browser, only through a logged access: the custodian's own signed
`access` statement (who reads, why) is appended before the first byte is sent, by the operation
the API's content route and `custody get` use (custody.ops.access). There is no other route to
an object's bytes in the web interface."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from custody.ops import access, statements
from custody.ops.archive import Archive
from custody.service.api import check_signer, chunks
from custody.service.auth import Caller
from custody.web.site import Refused, Web

MAX_STATEMENT_BYTES = 64 * 1024


def content_routes(web: Web) -> list[BaseRoute]:
    async def content(request: Request) -> Response:
        caller = await web.caller(request)
        web.require(caller, "access")  # a field custodian may not read content (CLI: `get`)
        form = await web.form(request)
        upload = form.get("statement")
        if not isinstance(upload, UploadFile):
            raise Refused(400, "attach your signed access statement (a custody-statement file)")
        raw = await upload.read(MAX_STATEMENT_BYTES + 1)
        if len(raw) > MAX_STATEMENT_BYTES:
            raise Refused(413, "the statement file is too large")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "the statement file is not UTF-8 text") from None
        ref = request.path_params["item"]

        def open_reader(archive: Archive) -> tuple[str, Any]:
            return _open(archive, ref, text, caller)

        sha256, reader = await web.read(open_reader)
        return StreamingResponse(chunks(reader), media_type="application/octet-stream", headers={
            "X-Custody-SHA256": sha256, "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{sha256}"'})

    return [web.page("/items/{item:str}/content", content, ("POST",))]


def _open(archive: Archive, ref: str, text: str, caller: Caller) -> tuple[str, Any]:
    signed, _ = statements.read_statement_file(text)
    check_signer(signed, caller)  # the signed-in custodian signed it; their role may `access`
    sha256 = archive.resolve_item(ref)
    return sha256, access.content_for_statement(archive, sha256, signed)
