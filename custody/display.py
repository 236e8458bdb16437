"""Human output: untrusted text made safe to print, aligned tables, one date style, JSON documents.

Every line custody prints for a person goes through `line`/`note` here, so a file name, note or
EXIF field can never forge a line, move the cursor or reverse text on the reader's terminal.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, BinaryIO, TextIO

from custody.core.json_exact import orjson_writes_as_json as _orjson_exact
from custody.metadata.clocks import CAMERA_NO_OFFSET

# C0 and C1 controls (DEL too), the Unicode bidi controls (embeddings and overrides U+202A-E,
# isolates U+2066-9, marks U+200E/F and U+061C), line and paragraph separators, and lone
# surrogates (an undecodable byte kept by surrogateescape: it cannot be printed at all).
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u2028\u2029\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: object) -> str:
    """`value` as text with every control, bidi and separator character shown as an escape
    (`\\n`, `\\x1b`, `\\u202e`): exactly one line, reading in the order it is stored."""
    return UNSAFE.sub(_escape, "-" if value is None else str(value))


def line(text: object = "", stream: TextIO | None = None) -> None:
    """Print one line of a command's report (stdout), escaped."""
    print(clean(text), file=stream or sys.stdout, flush=True)


def note(text: object) -> None:
    """Print one message line for a person on stderr (summaries, warnings, errors), escaped."""
    print(clean(text), file=sys.stderr, flush=True)


# Times --------------------------------------------------------------------------------------------

RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?")
UNKNOWN_OFFSET_MARK = " local"
UNKNOWN_OFFSET_LEGEND = ("local after a time: a camera clock of unknown UTC offset, its wall-clock "
                         "reading, not UTC (the instant lies within 14 h either side of it)")


def when(value: str | None, basis: str | None = None) -> str:
    """An RFC 3339 time as people read it, in one style for every command: `2016-10-03 11:22:05Z`
    (UTC, to the second). A camera clock of unknown offset is its wall-clock reading followed by
    ` local`, never `Z`, whether its record holds it with a `Z` (signed before issue 12) or
    without. A date alone stays a date; other text is shown as is."""
    if not value:
        return "-"
    m = RFC3339.fullmatch(value)
    if not m:
        return clean(value)
    day, clock, _fraction, zone = m.groups()
    if basis == CAMERA_NO_OFFSET:
        return f"{day} {clock}{UNKNOWN_OFFSET_MARK}"
    if zone in (None, "Z", "+00:00", "-00:00"):
        return f"{day} {clock}" + ("Z" if zone else "")
    return f"{day} {clock}{zone}"


def size(n: int | None) -> str:
    """A byte count as people read it: `1,684` (exact; the unit is the column's)."""
    return "-" if n is None else f"{n:,}"


def short(digest: str | None, n: int = 16) -> str:
    return digest[:n] if digest else "-"


# Tables and key-value blocks -------------------------------------------------------------------

def table(headers: Sequence[str], rows: Iterable[Sequence[object]],
          right: Sequence[str] = ()) -> list[str]:
    """Lines of an aligned table with a header row; every cell escaped. Columns named in `right`
    are right-aligned (numbers); the last column is never padded."""
    cells = [[clean(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def fmt(row: Sequence[str]) -> str:
        parts = []
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            last = i == len(widths) - 1
            if headers[i] in right:
                parts.append(cell.rjust(width))
            else:
                parts.append(cell if last else cell.ljust(width))
        return "  ".join(parts).rstrip()

    return [fmt(list(headers)), *(fmt(r) for r in cells)]


def fields(pairs: Iterable[tuple[str, object]]) -> list[str]:
    """Lines of `label: value` with the labels aligned; a list value is joined by commas."""
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    out = []
    for label, value in pairs:
        if isinstance(value, list | tuple):
            value = ", ".join(clean(v) for v in value) if value else "-"
        out.append(f"{label + ':':<{width + 1}} {clean(value)}")
    return out


# JSON ------------------------------------------------------------------------------------------

class _Stdout:
    json_written = False  # once a JSON document is out, an error must not print a second one


stdout_state = _Stdout()


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def out_json(value: Any) -> None:
    """The command's one JSON document on stdout. Exact: JSON escapes control characters itself.
    Lone surrogates (undecodable bytes) cannot be written as UTF-8, so they are escaped."""
    try:
        text = json_text(value)
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, indent=2, ensure_ascii=True) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()
    stdout_state.json_written = True


def json_line(value: Any) -> None:
    """One JSON Lines record on stdout (logs)."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    stdout_state.json_written = True


def error_document(message: str, code: int, kind: str, hint: str = "",
                   problems: list[str] | None = None) -> dict[str, Any]:
    """The JSON error object of docs/CLI.md: what `--json` prints on stdout when a command fails."""
    doc: dict[str, Any] = {"ok": False, "error": {"kind": kind, "message": message,
                                                  "hint": hint or None, "exit_code": code}}
    if problems is not None:
        doc["error"]["problems"] = problems
    return doc


# A JSON document written as it is produced ---------------------------------------------------

class Streamed:
    """A list in a streamed JSON document: its elements are written as `rows` yields them. An
    element may be `bytes`: a row already rendered by `row_text` (no JSON value is bytes), written
    as it is."""

    __slots__ = ("rows",)

    def __init__(self, rows: Iterable[Any]) -> None:
        self.rows = rows


def out_json_streamed(document: dict[str, Any], out: TextIO | None = None) -> None:
    """The command's one JSON document on stdout, byte for byte what `out_json` prints for the
    same document with each Streamed member a list, but written element by element: memory
    stays flat however many rows there are. The plain members decide, as in `out_json`, whether
    the document is written in UTF-8 or ASCII-escaped (a lone surrogate cannot be written as
    UTF-8); a row that holds one is then written ASCII-escaped by itself (still the same JSON)."""
    sink = _ByteSink(out or sys.stdout, raw=out is None)
    plain = {k: v for k, v in document.items() if not isinstance(v, Streamed)}
    try:
        json_text(plain).encode("utf-8")
        quote = _quote
    except UnicodeEncodeError:
        quote = _quote_ascii
    stdout_state.json_written = True  # from the first byte: never a second document after it
    if not document:
        sink.write("{}\n")
    else:
        sink.write("{\n")
        last = len(document) - 1
        for n, (key, value) in enumerate(document.items()):
            sink.write(f"  {quote(key)}: ")
            if isinstance(value, Streamed):
                _write_rows(sink, value.rows, quote)
            else:
                sink.write(_indented(value, "  ", quote))
            sink.write(",\n" if n < last else "\n")
        sink.write("}\n")
    sink.flush()


class _ByteSink:
    """Where a streamed document goes. The rows arrive as UTF-8 bytes (orjson's): on the
    command's stdout they go to its binary buffer, which gets the bytes the text layer would
    write (UTF-8, and no newline translation on POSIX); any other stream gets text."""

    def __init__(self, out: TextIO, raw: bool) -> None:
        self.out = out
        buffer = getattr(out, "buffer", None) if raw else None
        encoding = getattr(out, "encoding", None)
        same = (buffer is not None and encoding is not None and os.linesep == "\n"
                and codecs.lookup(encoding).name == "utf-8")
        self.buffer: BinaryIO | None = buffer if same else None
        if self.buffer is not None:
            out.flush()

    def write(self, text: str | bytes) -> None:
        if self.buffer is None:
            self.out.write(text if isinstance(text, str) else text.decode("utf-8"))
        else:
            self.buffer.write(text.encode("utf-8") if isinstance(text, str) else text)

    def flush(self) -> None:
        (self.out if self.buffer is None else self.buffer).flush()


ROWS_PER_WRITE = 512


def _write_rows(out: _ByteSink, rows: Iterable[Any], quote: Callable[[str], str]) -> None:
    """`[`, the rows indented as json.dumps(indent=2) nests them two deep, `]`."""
    batch: list[Any] = []
    opened = False
    for row in rows:
        batch.append(row)
        if len(batch) >= ROWS_PER_WRITE:
            out.write(b",\n    " if opened else b"[\n    ")
            out.write(_rows_text(batch, quote))
            opened, batch = True, []
    if batch:
        out.write(b",\n    " if opened else b"[\n    ")
        out.write(_rows_text(batch, quote))
        opened = True
    out.write(b"\n  ]" if opened else b"[]")


def _rows_text(rows: list[Any], quote: Callable[[str], str]) -> bytes:
    """`rows` (not empty) as UTF-8, each as json.dumps(indent=2) writes it two deep, joined by
    `,` and a new line: by orjson (C, several times faster than json's indented encoder, which
    is pure Python) where it provably gives the same bytes, else row by row by `_indented`."""
    import orjson

    if type(rows[0]) is bytes and all(type(row) is bytes for row in rows):
        if quote is _quote:  # rendered by row_text: the bytes this would write
            return b",\n    ".join(rows)
    elif quote is _quote and all(map(_orjson_exact, rows)):
        try:
            text = orjson.dumps(rows, option=orjson.OPT_INDENT_2)
        except orjson.JSONEncodeError:  # a lone surrogate, an int past 64 bits, another type
            pass
        else:  # "[\n  " row ",\n  " row "\n]", its new lines two deeper: strip the brackets
            return text.replace(b"\n", b"\n  ")[6:-4]
    return b",\n    ".join(_row_text(row, quote) for row in rows)


def row_text(row: Any) -> bytes:
    """`row` as a streamed document's list writes it in UTF-8 (two deep, json.dumps(indent=2)'s
    bytes): kept by the search index, so that a search writes its rows without building them
    (custody/search/render.py)."""
    return _row_text(row, _quote)


def _row_text(row: Any, quote: Callable[[str], str]) -> bytes:
    """One row two deep, by orjson when it gives json's bytes; a row holding a lone surrogate
    (cannot be UTF-8) ASCII-escaped by itself, still the same JSON. A rendered row (bytes) is
    written as it is, or, in an ASCII-escaped document, read back and escaped (JSON that
    json.dumps wrote reads back to the same value)."""
    import orjson

    if type(row) is bytes:
        return row if quote is _quote else _row_text(json.loads(row), quote)
    if quote is _quote and _orjson_exact(row):
        try:
            return orjson.dumps(row, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n    ")
        except orjson.JSONEncodeError:
            pass
    text = _indented(row, "    ", quote)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _indented(row, "    ", _quote_ascii).encode("ascii")


def _indented(value: Any, pad: str, quote: Callable[[str], str]) -> str:
    """`value` as json.dumps(value, indent=2) writes it at the nesting `pad`: a few times faster
    (no generator per value), for the types search rows hold; any other type goes to json."""
    kind = type(value)
    if kind is str:
        return quote(value)
    if kind is dict and all(type(k) is str for k in value):  # json converts other keys
        if not value:
            return "{}"
        inner = pad + "  "
        return ("{\n" + ",\n".join(f"{inner}{quote(k)}: {_indented(v, inner, quote)}"
                                    for k, v in value.items()) + f"\n{pad}}}")
    if kind is list:
        if not value:
            return "[]"
        inner = pad + "  "
        return "[\n" + ",\n".join(inner + _indented(v, inner, quote) for v in value) + f"\n{pad}]"
    if value is None:
        return "null"
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if kind is int:
        return int.__repr__(value)
    text = json.dumps(value, indent=2, ensure_ascii=quote is _quote_ascii)
    return text.replace("\n", "\n" + pad)


_quote: Callable[[str], str] = json.encoder.encode_basestring
_quote_ascii: Callable[[str], str] = json.encoder.encode_basestring_ascii
