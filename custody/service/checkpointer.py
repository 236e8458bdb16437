"""Checkpoints made by the service while it runs.

A statement appended for a remote custodian (entry format 2, docs/FORMAT.md §5.8) is signed by
them without its position (`seq`, `prev`): until an archive-signed checkpoint covers it, someone
able to rewrite the ledger could reorder or drop it and recompute the chain. The service therefore
signs a checkpoint whenever the log has grown, at most every few seconds, which bounds that window
(docs/SERVICE.md "Checkpoints"); a checkpoint that already covers the log is reused, not re-signed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from custody.core.signing import SigningKey
from custody.ops import checkpoints
from custody.ops.archive import Archive
from custody.service.errors import log


class Checkpointer:
    """`once()` signs a checkpoint if the log grew; `running()` does so every `every` seconds
    while the app runs, and once more as it stops."""

    def __init__(self, open_archive: Callable[[], Archive], archive_key: SigningKey,
                 every: float) -> None:
        self.open_archive = open_archive
        self.archive_key = archive_key
        self.every = every

    def once(self) -> int | None:
        """The size of a newly signed checkpoint, or None when the latest already covers the log."""
        issued = checkpoints.issue(self.open_archive(), self.archive_key)
        return issued.row.size if issued.new else None

    async def _tick(self) -> None:
        try:
            await run_in_threadpool(self.once)
        except Exception as exc:  # a full disk or a moved archive must not stop the server
            log.error("could not sign a checkpoint: %s", exc)

    @contextlib.asynccontextmanager
    async def running(self, app: Any) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await self._tick()
                await asyncio.sleep(self.every)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._tick()
