"""A streamed JSON document (display.out_json_streamed) is byte for byte the one out_json prints
for the same document built whole, whichever encoder each row takes: orjson where it provably
writes json's bytes, json's own form otherwise. The claims orjson's fast path rests on are tested
here directly against json: every code point, every kind of float, ints past 64 bits."""

from __future__ import annotations

import enum
import io
import json
import math
import random
import struct
import sys

import orjson
import pytest

from custody import display


def _whole(document: dict, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """What `out_json` prints for the document with its Streamed members as lists."""
    built = {k: list(v.rows) if isinstance(v, display.Streamed) else v
             for k, v in document.items()}
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="\n")
    monkeypatch.setattr(sys, "stdout", stdout)
    display.out_json(built)
    return stdout.buffer.getvalue()  # type: ignore[attr-defined]


def _streamed(make: object, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """What `out_json_streamed` prints to the command's stdout (its binary buffer); the same
    written to a plain text stream must be the same text."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="\n")
    monkeypatch.setattr(sys, "stdout", stdout)
    display.out_json_streamed(make())  # type: ignore[operator]
    written = stdout.buffer.getvalue()  # type: ignore[attr-defined]
    text = io.StringIO()
    display.out_json_streamed(make(), text)  # type: ignore[operator]
    assert text.getvalue().encode("utf-8") == written
    return written


def _same_bytes(rows: list, monkeypatch: pytest.MonkeyPatch) -> bytes:
    def make() -> dict:
        return {"query": {"text": "é"}, "count": len(rows), "items": display.Streamed(iter(rows)),
                "undetermined": display.Streamed(iter([]))}

    out = _streamed(make, monkeypatch)
    assert out == _whole(make(), monkeypatch)
    return out


def _neighbours(x: float, n: int) -> list[float]:
    out = [x]
    lo = hi = x
    for _ in range(n):
        lo, hi = math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf)
        out += [lo, hi]
    return out


FLOAT_EDGES = [0.0, -0.0, 1e-4, -1e-4, 1e-5, 9.999999999999999e-05, 1.5e-7, 1e-300, 5e-324,
               2.2250738585072014e-308, 1e16, 9999999999999998.0, 1.5e16, 1e22, 1e300,
               sys.float_info.max, -sys.float_info.max, math.nan, math.inf, -math.inf, 0.1, 1 / 3,
               36.2012345, 37.14, -0.00001, 8848.86, -430.5, 2.0**53, 412.0]


def _random_floats(n: int) -> list[float]:
    rng = random.Random(13)
    out = []
    while len(out) < n:  # every magnitude: random bit patterns
        f = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(f):
            out.append(f)
    out += [round(rng.uniform(-90, 90), rng.randrange(0, 9)) for _ in range(n)]  # GPS as read
    out += [rng.uniform(-1e-3, 1e-3) for _ in range(n // 10)]
    return out


def test_orjson_writes_every_float_the_check_lets_through_as_repr_does():
    """The fast path's float claim: in [1e-4, 1e16) and zero, orjson's text is repr's."""
    floats = (FLOAT_EDGES + _random_floats(100_000) + _neighbours(1e-4, 2000)
              + _neighbours(1e16, 2000))
    taken = [f for f in floats if display._orjson_exact(f)]
    assert len(taken) > 100_000
    assert orjson.dumps(taken) == json.dumps(taken, separators=(",", ":")).encode()
    for f in floats:  # and what it refuses does differ (or is out of the range)
        if not display._orjson_exact(f):
            assert not (f == 0.0 or 1e-4 <= abs(f) < 1e16)


def test_orjson_escapes_every_code_point_as_json_does():
    """The fast path's string claim (ensure_ascii=False): every code point but the surrogates,
    one at a time and all at once; a lone surrogate is refused, not written."""
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    assert orjson.dumps(chars) == json.dumps(chars, ensure_ascii=False,
                                             separators=(",", ":")).encode("utf-8")
    text = "".join(chars)
    assert orjson.dumps(text) == json.dumps(text, ensure_ascii=False).encode("utf-8")
    for lone in ("\ud800", "a\udfffb", "\udc80"):
        with pytest.raises(orjson.JSONEncodeError):
            orjson.dumps([lone])


def _item(n: int, **changes: object) -> dict:
    row = {"sha256": f"{n:064x}", "names": [f"IMG_{n}.JPG"], "mime": "image/jpeg",
           "captured_at": "2016-10-03T11:22:05Z", "captured_at_basis": "gps",
           "gps": {"lat": 36.2012345, "lon": 37.1401, "alt": 412.0},
           "device": {"make": "samsung", "model": "SM-G935F"}, "cases": ["ALEPPO-2016"],
           "incidents": [], "tags": [], "notes": [], "c2pa": "none"}
    row.update(changes)
    return row


class Level(enum.IntEnum):
    HIGH = 3


class Degrees(float):
    def __repr__(self) -> str:
        return f"Degrees({float(self)})"


class Name(str):
    pass


# Each a row the fast path must hand to json's form, or one orjson writes as json does.
ROWS = {
    "float edges in gps": [_item(i, gps={"lat": f, "lon": -f, "alt": f})
                           for i, f in enumerate(FLOAT_EDGES)],
    "non-ascii names and notes": [_item(1, names=["صورة حلب.jpg", "Homs—ambulance ✓.jpg",
                                                  "日本語.heic", "😀.mov"],
                                        notes=["نقل إلى المستشفى", 'a "quoted" \\ note\n\ttab',
                                               "\x00\x1f\x7f\u2028\u202e"])],
    "none everywhere": [_item(2, gps=None, device=None, mime=None, captured_at=None,
                              captured_at_basis=None, names=[])],
    "nested lists and dicts": [_item(3, warnings=[["a", [1, [2.5, {"x": 1e-7}]]], {}, [],
                                                  {"deep": {"deeper": [None, True, False]}}])],
    "ints at and past 64 bits": [_item(4, warnings=[2**63 - 1, -2**63, 2**64 - 1]),
                                 _item(5, warnings=[2**64]), _item(6, warnings=[-2**63 - 1]),
                                 _item(7, warnings=[10**40])],
    "a tuple": [_item(8, warnings=(1.5, "x", (2e-5,)))],
    "subclasses": [_item(9, warnings=[Level.HIGH]), _item(10, gps={"lat": Degrees(36.2)}),
                   _item(11, names=[Name("kept.jpg")])],
    "a non-string key": [_item(12, gps={1: 2.0})],
    "bare values": ["text", 1.5, 1e-9, None, [], {}, 0, True],
}


@pytest.mark.parametrize("kind", list(ROWS))
def test_a_streamed_document_is_the_document_built_whole(kind, monkeypatch):
    _same_bytes(ROWS[kind], monkeypatch)


@pytest.mark.parametrize("count", [0, 1, 511, 512, 513, 1025])
def test_rows_are_the_same_across_write_batches_with_odd_rows_among_them(count, monkeypatch):
    """Rows go to orjson a batch at a time; a row it cannot write exactly (a tiny float, a
    huge int, NaN) sends its batch row by row, the others still by orjson."""
    odd = {7: {"lat": 1e-5}, 300: {"alt": math.inf}, 512: {"lat": math.nan}, 900: {"lat": 1e17}}
    rows = [_item(i, gps=odd.get(i, {"lat": 36.0 + i / 1e4, "lon": 37.1, "alt": None}),
                  warnings=[2**70] if i == 600 else [])
            for i in range(count)]
    _same_bytes(rows, monkeypatch)


def test_a_row_holding_a_lone_surrogate_is_written_ascii_escaped_by_itself(monkeypatch):
    """As before the fast path: the row that cannot be UTF-8 is escaped, the others are not."""
    rows = [_item(1, names=["é.jpg"]), _item(2, names=["bad\udc80.jpg"]), _item(3, notes=["ü"])]
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="\n")
    monkeypatch.setattr(sys, "stdout", stdout)
    display.out_json_streamed({"items": display.Streamed(rows)})
    text = stdout.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    assert json.loads(text) == {"items": rows}
    assert '"é.jpg"' in text and '"ü"' in text and '"bad\\udc80.jpg"' in text
    escaped = json.dumps(rows[1], indent=2, ensure_ascii=True).replace("\n", "\n    ")
    assert escaped in text


def test_a_lone_surrogate_in_the_plain_members_escapes_the_whole_document(monkeypatch):
    def make() -> dict:
        return {"query": {"text": "bad\udc80"}, "items": display.Streamed([_item(1, names=["é"])])}

    assert _streamed(make, monkeypatch) == _whole(make(), monkeypatch)
    assert _whole(make(), monkeypatch).isascii()
