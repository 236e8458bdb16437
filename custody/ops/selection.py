"""Which files found in a folder (or in a dump) ingest takes: operating-system junk is left out
by default, and --include / --exclude patterns choose among the rest (docs/CLI.md, ingest).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from custody.ops.ingest import Found, find_files, shown

# Files and folders an operating system leaves on a card or in a copy, not put there by a person
# (compared case-folded). Thumbs.db and .Trashes can hold thumbnails or deleted files: an examiner
# imaging seized media keeps them with --keep-junk.
JUNK_NAMES = frozenset(n.casefold() for n in (
    ".DS_Store", ".localized", ".apdisk", "Icon\r",  # macOS Finder
    ".Trashes", ".Trash", ".Spotlight-V100", ".fseventsd", ".TemporaryItems",  # macOS volumes
    ".DocumentRevisions-V100", ".VolumeIcon.icns", ".com.apple.timemachine.donotpresent",
    ".AppleDouble", ".AppleDB", ".AppleDesktop", "__MACOSX",  # AppleDouble stores, zips by Finder
    "Thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini",  # Windows Explorer
    "$RECYCLE.BIN", "RECYCLER", "System Volume Information",  # Windows volumes
))
JUNK_PATTERNS = ("._*", ".Trash-*")  # AppleDouble resource forks; freedesktop trash on media


def is_junk_name(name: str) -> bool:
    folded = name.casefold()
    return folded in JUNK_NAMES or any(fnmatch.fnmatchcase(folded, p.casefold())
                                       for p in JUNK_PATTERNS)


def matches(pattern: str, rel: str) -> bool:
    """A pattern without `/` matches a file or folder name at any depth; one with `/` matches the
    whole path relative to the folder given, `*` crossing folders. Case-insensitive."""
    pattern, rel = pattern.casefold(), rel.casefold()
    if "/" not in pattern.rstrip("/"):
        return fnmatch.fnmatchcase(PurePosixPath(rel).name, pattern.rstrip("/"))
    return fnmatch.fnmatchcase(rel, pattern.strip("/"))


@dataclass(frozen=True, slots=True)
class Selection:
    """--include / --exclude patterns and whether junk is kept. Precedence: an excluded path is
    skipped; then junk (unless kept), which no --include brings back; then, if any --include is
    given, a file must match one. Paths named on the command line are always taken."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    keep_junk: bool = False

    def skip_reason(self, rel: str, is_dir: bool = False) -> tuple[str, str] | None:
        """(kind, reason) if the file (or folder) at `rel` is left out: `excluded` or `junk`."""
        parts = PurePosixPath(rel).parts
        for i in range(1, len(parts) + 1):  # a folder excluded (or junk) leaves out all below it
            prefix = "/".join(parts[:i])
            for p in self.exclude:
                if matches(p, prefix):
                    return "excluded", f"excluded by --exclude {p!r}"
            if not self.keep_junk and is_junk_name(parts[i - 1]):
                return "junk", "operating-system junk (--keep-junk keeps it)"
        if self.include and not is_dir and not any(matches(p, rel) for p in self.include):
            return "excluded", "matched no --include pattern"
        return None

    def skip(self, rel: str, shown_path: str, is_dir: bool = False) -> dict[str, str] | None:
        """The `skipped` record of a left-out path (its `selected` says why: junk or excluded)."""
        why = self.skip_reason(rel, is_dir)
        if why is None:
            return None
        return {"path": shown_path, "reason": why[1], "selected": why[0]}


def select_files(
    paths: list[Path], skipped: list[dict[str, str]], selection: Selection
) -> list[Found]:
    """find_files, then the selection applied to what was found inside each folder given. What
    the walk skipped inside a left-out folder (an unreadable .Trashes) is counted as left out."""
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        find_files(missing, [])  # raises the walk's one "no such file or folder"
    found: list[Found] = []
    for top in paths:
        walk_skips: list[dict[str, str]] = []
        files = find_files([top], walk_skips)
        if not Path(top).is_dir() or Path(top).is_symlink():
            found += files
            skipped += walk_skips
            continue
        top_shown = shown(top)
        for f in files:
            left_out = selection.skip(_relative(f.path, top), shown(f.path))
            if left_out is not None:
                skipped.append(left_out)
            else:
                found.append(f)
        for s in walk_skips:
            rel = _relative_shown(s["path"], top_shown)
            left_out = selection.skip(rel, s["path"], is_dir=True) if rel else None
            skipped.append(left_out if left_out is not None else s)
    return found


def _relative(path: Path, top: Path) -> str:
    return shown(path.relative_to(top)).replace(os.sep, "/")


def _relative_shown(path: str, top: str) -> str | None:
    return path[len(top):].lstrip("/") if path.startswith(top.rstrip("/") + "/") else None
