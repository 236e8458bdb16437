"""Opening a track file for the cross-reference: its format (given, or told from the content),
the size limit of a whole GeoJSON document, and text lines of bounded length, streamed to the
parsers in custody/search/tracks.py (docs/SEARCH.md §3).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from custody.core import canonical
from custody.errors import NotFound, UsageError
from custody.search import tracks
from custody.search.tracks import Tally, TrackError, TrackPoint

GEOJSON_MAX_BYTES = 32 << 20  # one GeoJSON document is parsed whole: larger ones are refused
MAX_LINE = 1 << 20  # characters in one CSV line
MAX_FEATURE_LINE = 16 << 20  # characters in one line of a GeoJSON text sequence
FORMATS = ("gpx", "geojson", "geojsonseq", "csv")
SEQ_SUFFIXES = (".geojsons", ".geojsonl", ".geojsonseq", ".ndjson", ".jsonl")


def read_track(path: Path, fmt: str | None = None, *, naive_utc: bool = False) -> tuple[
        str, Iterator[TrackPoint], Tally]:
    """(format, points as a stream, tally). The file is read as the points are consumed."""
    if not path.exists():
        raise NotFound(f"no track file at {path}")
    if not path.is_file():
        raise TrackError(f"{path} is not a file")
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    fmt = fmt or sniff(path)
    tally = Tally()
    if fmt == "geojson" and path.stat().st_size > GEOJSON_MAX_BYTES:
        raise TrackError(
            f"{path.name}: a GeoJSON document of {path.stat().st_size:,} bytes is over the "
            f"{GEOJSON_MAX_BYTES >> 20} MiB limit for one document (it is parsed whole); write "
            "it as a GeoJSON text sequence (one feature per line), GPX or CSV, which stream")
    return fmt, _points(path, fmt, tally, naive_utc), tally


def sniff(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"<"):
        return "gpx"
    if head.startswith(b"\x1e"):
        return "geojsonseq"
    if head.startswith((b"{", b"[")):
        return "geojsonseq" if path.suffix.lower() in SEQ_SUFFIXES else "geojson"
    return "csv"


def _points(path: Path, fmt: str, tally: Tally, naive_utc: bool) -> Iterator[TrackPoint]:
    try:
        with path.open("rb") as f:
            if fmt == "gpx":
                yield from tracks.parse_gpx(iter(lambda: f.read(1 << 16), b""), tally)
            elif fmt == "csv":
                yield from tracks.parse_csv(_lines(f, MAX_LINE), tally, naive_utc=naive_utc)
            elif fmt == "geojsonseq":
                yield from tracks.parse_geojson_lines(_lines(f, MAX_FEATURE_LINE), tally,
                                                      naive_utc=naive_utc)
            else:
                try:
                    doc = canonical.load_json(f.read().decode())
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    hint = (" (one object per line? use --format geojsonseq)"
                            if "Extra data" in str(exc) else "")
                    raise TrackError(f"not JSON: {exc}{hint}") from None
                yield from tracks.parse_geojson(doc, tally, naive_utc=naive_utc)
    except TrackError as exc:
        raise TrackError(f"{path.name}: {exc.message}") from None
    except OSError as exc:
        raise TrackError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None


def _lines(binary: Any, limit: int) -> Iterator[str]:
    """Text lines of at most `limit` characters (longer: an error, never a huge string)."""
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    n = 0
    while True:
        try:
            line = text.readline(limit + 1)
        except UnicodeDecodeError:
            raise TrackError(f"line {n + 1} (or the next few): not UTF-8 text") from None
        if not line:
            return
        n += 1
        if len(line) > limit:
            raise TrackError(f"line {n}: longer than {limit:,} characters")
        yield line
