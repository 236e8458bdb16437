"""The auditor's view of the log: its entries a page at a time, the signed checkpoints, and a
consistency proof between two of them, made and checked by the proof code `custody prove` uses."""

from __future__ import annotations

import itertools
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from custody.core import note, proofs
from custody.core.custodians import archive_key_for
from custody.errors import NotFound, UsageError
from custody.ops import checkpoints
from custody.ops.archive import Archive, registry_of
from custody.report import logs
from custody.web.site import Refused, Web

PAGE = 50


def entries_page(archive: Archive, offset: int) -> dict[str, Any]:
    """A page of `log --json`'s rows (the API's /api/v1/log) and the kept checkpoints."""
    size = archive.ledger.size()
    rows = list(itertools.islice(logs.rows(archive, None), offset, offset + PAGE))
    for row in rows:
        row["details_json"] = json.dumps(row["details"], ensure_ascii=False, indent=1,
                                         sort_keys=True)
    return {"entries": rows, "offset": offset, "total": size, "page": PAGE,
            "checkpoints": kept_checkpoints(archive)}


def kept_checkpoints(archive: Archive) -> list[dict[str, Any]]:
    out = []
    for row in archive.ledger.checkpoints():
        body = note.parse_checkpoint(note.split_note(row.note)[0])
        out.append({"id": row.id, "size": row.size, "created": row.created,
                    "root": body.root_hash.hex()})
    return out


def consistency(archive: Archive, old_id: int, new_id: int) -> dict[str, Any]:
    """`custody prove --from OLD --to NEW`'s bundle between two kept checkpoints, verified
    again as `custody verify-proof` checks it, with the archive key in force at the newer size."""
    kept = {row.id: row for row in archive.ledger.checkpoints()}
    if old_id not in kept or new_id not in kept:
        raise NotFound("no such checkpoint in this archive")
    old, new = kept[old_id], kept[new_id]
    if old.size > new.size:
        old, new = new, old
    bundle = checkpoints.consistency(archive, old.note, new.note)  # made and checked there
    keys = registry_of(archive.ledger).archive_keys
    signer = archive_key_for(keys, new.size)
    if signer is None:
        raise NotFound("no archive key is in force at that size")
    verdict = proofs.verify_bundle(bundle, proofs.archive_verifier(archive.config.origin,
                                                                   signer.public_key))
    assert verdict.old_checkpoint is not None  # a consistency bundle's verdict
    return {"old": {"id": old.id, "size": verdict.old_checkpoint.size,
                    "root": verdict.old_checkpoint.root_hash.hex(), "created": old.created},
            "new": {"id": new.id, "size": verdict.checkpoint.size,
                    "root": verdict.checkpoint.root_hash.hex(), "created": new.created},
            "proof": [h.hex() for h in proofs.proof_hashes(bundle)],
            "archive_key": signer.key_id, "bundle": bundle}


def _number(request: Request, name: str, default: int | None = None) -> int:
    value = request.query_params.get(name)
    if value is None and default is not None:
        return default
    if value is None or not value.isdigit() or len(value) > 18:
        raise UsageError(f"{name} must be a whole number")
    return int(value)


def log_routes(web: Web) -> list[BaseRoute]:
    async def log_page(request: Request) -> Response:
        await web.caller(request)  # every role may read the log, as `custody log`
        offset = _number(request, "offset", 0)
        return web.render(request, "log.html", await web.read(
            lambda a: entries_page(a, offset)))

    async def consistency_page(request: Request) -> Response:
        await web.caller(request)
        old_id, new_id = _number(request, "old"), _number(request, "new")
        if old_id == new_id:
            raise Refused(400, "choose two different checkpoints")
        shown = await web.read(lambda a: consistency(a, old_id, new_id))
        if request.query_params.get("download"):
            body = json.dumps(shown["bundle"], indent=2) + "\n"
            name = f"consistency-{shown['old']['size']}-{shown['new']['size']}.json"
            return Response(body, media_type="application/json", headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store"})
        return web.render(request, "consistency.html", shown)

    return [web.page("/log", log_page), web.page("/log/consistency", consistency_page)]
