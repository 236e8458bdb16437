"""Progress for people: a bar on stderr (terminals only) and, for ingest, a line per file.

The per-file lines go to stdout and are printed only once the file's entry is committed, so a
line on screen means the file is safely stored. Names in them are escaped (custody.display).
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from custody.display import clean

STATUS_WORDS = {"new": "new", "present": "present", "failed": "FAILED", "unchanged": "unchanged"}
# ingest --dry-run: what a run would do (nothing is stored)
DRY_RUN_WORDS = {"new": "to-store", "present": "to-sight", "failed": "FAILED",
                 "unchanged": "unchanged"}


class ByteProgress:
    """A bar of bytes done out of `total`, shown only when stderr is a terminal."""

    label = "progress"

    def __init__(self, total: int) -> None:
        self.total = total
        self._console = Console(stderr=True)
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> ByteProgress:
        if self._console.is_terminal:
            self._bar = Progress(
                TextColumn(self.label),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)


class ExportProgress(ByteProgress):
    label = "export"


class IngestProgress(ByteProgress):
    """The ingest bar and the per-file lines (remembering which entries were shown)."""

    label = "ingest"

    def __init__(self, files: list[Any], quiet: bool = False, dry_run: bool = False) -> None:
        super().__init__(sum(f.size for f in files))
        self.quiet = quiet
        self.words = DRY_RUN_WORDS if dry_run else STATUS_WORDS
        self.printed: set[int] = set()  # entry numbers whose line was shown

    def file_done(self, result: Any) -> None:
        if result.seq is not None:
            self.printed.add(result.seq)
        if self.quiet:
            return
        word = self.words.get(result.status, result.status)
        digest = result.sha256 or "-" * 64
        line = f"{word:<8} {digest}  {clean(result.path)}"
        if result.error:
            line += f"  ({clean(result.error)})"
        if self._bar is not None and sys.stdout.isatty():
            # One terminal shows both: print through the live bar so lines do not tear it.
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            # The record of what was stored belongs on stdout (the bar lives on stderr).
            print(line, file=sys.stdout, flush=True)


class StageProgress:
    """`custody migrate`'s bar on stderr (terminals only): one task per stage, done of total."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._console = Console(stderr=True)
        self._bar: Progress | None = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> StageProgress:
        if self._console.is_terminal:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"),
                                 TimeRemainingColumn(), console=self._console, transient=True)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._bar is None:
            return
        if stage not in self._tasks:
            self._tasks[stage] = self._bar.add_task(f"{self.label} {stage}", total=total)
        self._bar.update(self._tasks[stage], completed=done, total=total)
