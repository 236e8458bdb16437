"""A real server of the tus routes alone, for tests: `python -m tests.upload_server ARCHIVE
UPLOAD_DIR PORT EXPIRE_SECONDS`, uvicorn on 127.0.0.1:PORT.

Its `authenticate` is a TEST STAND-IN, not RFC 9421: it takes the key id from the
`Custody-Test-Key` header and checks only that it names an enrolled custodian. It exists so the
upload routes can be exercised before/without the service's real request signatures.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request

from custody.core.custodians import ARCHIVE_ROLE
from custody.ops.archive import Archive, registry_of
from custody.service.uploads import upload_routes

TEST_HEADER = "Custody-Test-Key"


class StandInCaller:
    def __init__(self, key_id: str) -> None:
        self.key_id = key_id


def stand_in_authenticate(archive_root: Path):
    async def authenticate(request: Request) -> StandInCaller:
        key_id = request.headers.get(TEST_HEADER, "")
        who = registry_of(Archive.open(archive_root).ledger).by_id.get(key_id)
        if who is None or who.role == ARCHIVE_ROLE or who.ended() is not None:
            raise HTTPException(401, "not an enrolled custodian")
        return StandInCaller(key_id)

    return authenticate


class StandInKeyAuth(httpx.Auth):
    """The client half of the stand-in: names the key, signs nothing."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id

    def auth_flow(self, request: httpx.Request):
        request.headers[TEST_HEADER] = self.key_id
        yield request


def app(archive_root: Path, upload_dir: Path, expire_seconds: float) -> Starlette:
    return Starlette(routes=upload_routes(
        lambda: Archive.open(archive_root), stand_in_authenticate(archive_root), upload_dir,
        max_upload_bytes=64 << 20, expire_after=timedelta(seconds=expire_seconds)))


if __name__ == "__main__":
    root, uploads, port, expire = sys.argv[1:5]
    uvicorn.run(app(Path(root), Path(uploads), float(expire)), host="127.0.0.1",
                port=int(port), log_level="warning")
