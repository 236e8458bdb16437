"""Durability on a local filesystem: what a rename or a new file needs to survive a power cut."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_folder(path: Path) -> None:
    """Flush a folder's entries (a rename or a new name in it) to disk.

    fsync on a file makes its bytes durable, not its name: the folder holding the name must be
    flushed too before the name is relied on (before a ledger entry points at it, say).
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
