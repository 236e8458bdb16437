"""Where orjson (a C encoder) writes exactly the bytes json.dumps does: search's rows and a
package's tag files are written by orjson for speed, byte for byte as before, and by json where
this says the two would differ. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def orjson_writes_as_json(value: Any) -> bool:
    """Whether orjson (OPT_INDENT_2) writes `value` byte for byte as json.dumps(indent=2,
    ensure_ascii=False) does, or refuses it. Strings, ints, bools and None it writes the same
    (every code point escaped alike: tests/test_streamed_json.py) or refuses (a lone surrogate,
    an int past 64 bits). Floats differ outside [1e-4, 1e16): json writes repr's 1e-05, 1e+16,
    NaN and Infinity, orjson 0.00001, 1e16 and null. Any other type (a subclass too) is left to
    json."""
    kind = type(value)
    if kind is dict:
        values: Iterable[Any] = value.values()
    elif kind is list or kind is tuple:
        values = value
    elif kind is float:
        number: float = value
        return number == 0.0 or 1e-4 <= abs(number) < 1e16  # False for NaN and the infinities
    else:
        return kind is str or kind is int or kind is bool or value is None
    for v in values:  # the common members tested here: a call for each would double the cost
        kind = type(v)
        if kind is str or v is None or (kind is list and (not v or len(v) == 1
                                                           and type(v[0]) is str)):
            continue
        if not orjson_writes_as_json(v):
            return False
    return True
