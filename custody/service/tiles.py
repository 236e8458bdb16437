"""The ledger served as a C2SP tlog-tiles log (`/checkpoint`, `/tile/…`, `/tile/entries/…`), so a
monitor or witness written for Tessera- or Sigsum-style logs can follow it (docs/SERVICE.md).

Tiles are read from the ledger's stored tree nodes (one range read per tile), never recomputed,
and only for trees the latest signed checkpoint covers.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from itertools import islice

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from custody.core import note, tiles
from custody.core.note import parse_checkpoint, split_note
from custody.ops import witness
from custody.ops.archive import Archive
from custody.service.errors import error_response
from custody.service.openapi import Operation, error_responses, path_param
from store.ports import CheckpointRow

FULL_TILE_CACHE = "public, max-age=31536000, immutable"  # a full tile never changes
PARTIAL_TILE_CACHE = "public, max-age=60"  # the full tile replaces it once the log grows
CHECKPOINT_CACHE = "no-cache"  # the spec: no caching beyond a few seconds
OCTETS = "application/octet-stream"


def _error(status: int, code: str, message: str) -> Response:
    return error_response(status, code, message)


def tile_routes(
    open_archive: Callable[[], Archive], *, public_entries: bool = False
) -> list[BaseRoute]:
    """The tlog-tiles routes. Hash tiles and the checkpoint reveal only the log's size and
    hashes; entry bundles hold every entry in clear (notes, purposes, names), so they are served
    only with `public_entries` (`custody serve --public-log`)."""

    def checkpoint(request: Request) -> Response:
        """The latest signed checkpoint, with the witness cosignatures the archive keeps of it."""
        archive = open_archive()
        latest = archive.ledger.latest_checkpoint()
        if latest is None:
            return _error(404, "no-checkpoint", "this archive has signed no checkpoint yet")
        return Response(_with_cosignatures(archive, latest),
                        media_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": CHECKPOINT_CACHE})

    def tile(request: Request) -> Response:
        """A tile of tree hashes or an entry bundle (C2SP tlog-tiles)."""
        try:
            wanted = tiles.parse_path(request.path_params["path"])
        except tiles.TileError as exc:
            return _error(404, "no-such-tile", exc.message)
        if wanted.level is None and not public_entries:
            return _error(404, "entries-not-public",
                          "this server does not publish the log's entries (--public-log)")
        archive = open_archive()
        size = _latest_size(archive)
        if size is None or wanted.end() > size:
            return _error(404, "tile-not-in-tree",
                          f"{wanted.path} is beyond the latest checkpoint's tree")
        if wanted.level is None:
            return _bundle(archive, wanted, request)
        return _hashes(archive, wanted)

    return [
        Route("/checkpoint", checkpoint, methods=["GET"]),
        Route("/tile/{path:path}", tile, methods=["GET"]),
    ]


def _latest_size(archive: Archive) -> int | None:
    """The tree size of the latest kept checkpoint: what may be served."""
    latest = archive.ledger.latest_checkpoint()
    if latest is None:
        return None
    return parse_checkpoint(split_note(latest.note)[0]).size


def _with_cosignatures(archive: Archive, row: CheckpointRow) -> str:
    """The checkpoint as signed, plus each kept witness cosignature (docs/FORMAT.md §9.4) that
    still verifies: a client checks the ones of witnesses it trusts (the spec: a checkpoint MAY
    carry other signatures). A damaged record is left out here; `custody verify` reports it."""
    body = split_note(row.note)[0]
    lines: list[str] = []
    for extra in archive.ledger.checkpoint_extras(row.id):
        if extra.kind != "cosignature":
            continue
        try:
            record = json.loads(extra.data)
            line = record["line"] if record["line"].endswith("\n") else record["line"] + "\n"
            witness.cosignature_valid(body, line, record["witness_key"])
        except (ValueError, KeyError, TypeError, AttributeError, note.NoteError):
            continue
        if line not in lines and line not in row.note:
            lines.append(line)
    return row.note + "".join(lines[: note.MAX_SIGNATURES - 1])


def _cache(tile: tiles.Tile) -> dict[str, str]:
    return {"Cache-Control": FULL_TILE_CACHE if tile.full else PARTIAL_TILE_CACHE}


def _hashes(archive: Archive, tile: tiles.Tile) -> Response:
    last = tile.first + tile.width - 1
    found = archive.ledger.nodes_between(tile.node_level, tile.first, last)
    if [i for i, _ in found] != list(range(tile.first, last + 1)):
        return _error(500, "ledger-damaged",
                      f"the ledger lacks tree nodes of {tile.path}: run 'custody verify'")
    return Response(tiles.encode_hashes([h for _, h in found]), media_type=OCTETS,
                    headers=_cache(tile))


def _bundle(archive: Archive, tile: tiles.Tile, request: Request) -> Response:
    rows = archive.ledger.rows(tile.first)
    try:
        found = [(row.seq, row.body) for row in islice(rows, tile.width)]
    finally:
        close = getattr(rows, "close", None)  # end the ledger's read at once
        if close is not None:
            close()
    if [seq for seq, _ in found] != list(range(tile.first, tile.first + tile.width)):
        return _error(500, "ledger-damaged", f"the ledger lacks entries of {tile.path}")
    bodies = [body for _, body in found]
    try:
        data = tiles.encode_bundle(tile.first, bodies)
    except tiles.EntryTooLarge as exc:
        return _error(422, "entry-too-large", exc.message)
    headers = _cache(tile)
    if "gzip" in request.headers.get("accept-encoding", ""):  # the spec: SHOULD compress
        data = gzip.compress(data, mtime=0)
        headers |= {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    return Response(data, media_type=OCTETS, headers=headers)


def tile_operations() -> list[Operation]:
    """The public log's routes in the OpenAPI document (the layout: https://c2sp.org/tlog-tiles)."""
    octets = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    return [
        Operation("get", "/checkpoint", "The log's latest signed checkpoint (C2SP "
                  "tlog-checkpoint, signed-note), then the kept witness cosignature lines",
                  {"200": {"description": "The checkpoint note",
                           "content": {"text/plain": {"schema": {"type": "string"}}}}},
                  signed=False),
        Operation("get", "/tile/{path}", "A tile of tree hashes (<L>/<N>[.p/<W>]) or an entry "
                  "bundle (entries/<N>[.p/<W>], only with --public-log); <N> in three-digit "
                  "groups, all but the last prefixed x",
                  {"200": {"description": "32-byte hashes, or uint16-length-prefixed entries",
                           "content": octets}, **error_responses(422)},
                  [path_param("path", "The tile's path after /tile/")], signed=False),
    ]
