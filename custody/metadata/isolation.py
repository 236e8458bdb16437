"""Keeping secrets out of reach: the allow-listed environment the file parsers run in, and the
owner-only, non-dumpable settings of the process that holds keys (docs/ARCHITECTURE.md).

The metadata worker and its ExifTool parse hostile files; they are exec'd (never forked) with only
the variables below, so no passphrase, token or cloud credential reaches them.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

# What a parser needs: finding programs, locale, time zone, temp files, a chosen magic database,
# Perl modules of a non-Debian ExifTool, and shared libraries of a non-system Python.
READER_VARIABLES = frozenset(
    {"PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "MAGIC", "PERL5LIB", "LD_LIBRARY_PATH"}
)
READER_PREFIXES = ("LC_",)
# Never passed even if allow-listed by name above (a belt: the list above is what admits).
SECRET_MARKERS = ("CUSTODY", "PASS", "SECRET", "TOKEN", "CREDENTIAL", "KEY", "AWS_", "AUTH")
# No home: ExifTool's ~/.ExifTool_config and libmagic's ~/.magic.mgc would change what is read.
READER_HOME = "/nonexistent"
# Set whatever the caller has: OpenBLAS (loaded by numpy/scipy for the perceptual hashes) reserves
# memory per thread, one thread per core by default, which on a many-core machine passes the
# worker's address-space limit (docs/SIMILAR.md). One thread each.
READER_FIXED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_PR_SET_DUMPABLE = 4


def looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def reader_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment a file parser starts with: allow-listed names only."""
    source = os.environ if environ is None else environ
    env = {
        name: value
        for name, value in source.items()
        if (name in READER_VARIABLES or name.startswith(READER_PREFIXES)) and not looks_secret(name)
    }
    env["HOME"] = READER_HOME
    env.update(READER_FIXED)
    return env


def harden_process() -> None:
    """For a process about to hold keys: create files owner-only, and (on Linux) make it
    non-dumpable, so no core file holds a key and other processes of the same user (a parser
    taken over by a hostile file, say) cannot read its memory through ptrace or /proc/PID/mem.
    """
    os.umask(0o077)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl here: the umask still holds
            pass
