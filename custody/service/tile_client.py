"""Reading a tlog-tiles log over HTTP (httpx): its checkpoint and tiles, for `custody witness
cosign URL`. Nothing read is trusted here: the witness checks signatures and proofs."""

from __future__ import annotations

import httpx

from custody.core import tiles
from custody.errors import CustodyError

MAX_CHECKPOINT = 1 << 16  # a checkpoint note is a few hundred bytes (plus cosignatures)
TIMEOUT = 30.0


class LogUnreachable(CustodyError):
    """The log's server cannot be reached or does not serve what was asked."""


class HttpTileLog:
    """A log served under `prefix` (`<prefix>/checkpoint`, `<prefix>/tile/…`)."""

    def __init__(self, prefix: str, client: httpx.Client | None = None) -> None:
        self.prefix = prefix.rstrip("/")
        self._client = client or httpx.Client(timeout=TIMEOUT, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpTileLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, limit: int) -> bytes:
        url = f"{self.prefix}/{path}"
        try:
            with self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise LogUnreachable(f"{url} answered HTTP {response.status_code}")
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise LogUnreachable(f"{url} sent more than {limit} bytes")
                return bytes(data)
        except httpx.HTTPError as exc:
            raise LogUnreachable(f"cannot read {url}: {exc}") from None

    def checkpoint(self) -> str:
        data = self._get("checkpoint", MAX_CHECKPOINT)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise LogUnreachable(f"{self.prefix}/checkpoint is not UTF-8 text") from None

    def tile(self, tile: tiles.Tile) -> bytes:
        # A hash tile is width·32 bytes; an entry bundle at most width·65,537.
        per = tiles.HASH_SIZE if tile.level is not None else tiles.MAX_ENTRY_SIZE + 2
        return self._get(tile.path, tile.width * per)
