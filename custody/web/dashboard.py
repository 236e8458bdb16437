"""The case dashboard: items, incidents, holders, pending transfers, the last verification and
checkpoint, and the problems they show; read through the CLI's own operations."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from custody.core import entry as entries
from custody.ops import annotate, transfer
from custody.ops import items as views
from custody.ops.archive import Archive, replayed
from custody.web.site import Web

SHOWN_ITEMS = 200  # the dashboard lists this many; search finds the rest


def overview(archive: Archive) -> dict[str, Any]:
    items = views.listing(archive)  # `list --json`
    replay = replayed(archive.ledger)
    registry = replay.registry
    holders: dict[str, int] = {}
    for row in items:
        name = views.holder_name(replay.holder(row["sha256"]), registry) or "—"
        holders[name] = holders.get(name, 0) + 1
    verifications = list(archive.ledger.rows_with_action("verification"))
    last_verification = None
    if verifications:
        e = entries.parse(verifications[-1].body)
        last_verification = {"seq": e.seq, "time": e.time, "by": registry.name_of(e.actor),
                             **e.details}
    kept = archive.ledger.checkpoints()
    size = archive.ledger.size()
    covered = kept[-1].size if kept else 0
    checkpoint = {"size": covered, "created": kept[-1].created} if kept else None
    problems: list[dict[str, Any]] = []
    if last_verification is not None and not last_verification.get("ok", True):
        problems.append({"kind": "verification", "count": last_verification.get("problems")})
    if covered < size:
        problems.append({"kind": "uncovered", "count": size - covered})
    for row in items:
        if row["metadata_errors"] or row["gps_problems"]:
            problems.append({"kind": "item", "item": row["sha256"], "name": row["name"],
                             "errors": [*row["metadata_errors"], *row["gps_problems"]]})
    return {"items": items[:SHOWN_ITEMS], "item_count": len(items),
            "incidents": annotate.incidents(archive),
            "holders": sorted(holders.items()),
            "pending": transfer.listing(archive, pending_only=True),
            "verification": last_verification, "checkpoint": checkpoint, "log_size": size,
            "problems": problems}


def dashboard_routes(web: Web) -> list[BaseRoute]:
    async def dashboard(request: Request) -> Response:
        await web.caller(request)  # every custodian may read the dashboard, as `list` and `log`
        return web.render(request, "dashboard.html", await web.read(overview))

    return [web.page("/", dashboard)]
