"""The indexer's JSON reading, with orjson's C encoder and parser where they give exactly what the
standard readers give: `entry` is `entry.parse` (the canonical-form check included), `document`
is `json.loads` (docs/SEARCH.md "Reading entries and documents fast").

Whatever orjson might read or write differently goes to the standard reader itself.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from custody.core import entry as entries
from custody.core.canonical import MAX_DEPTH

_FIRST_NOT_PLAIN_KEY_BYTE = 0xED  # UTF-8 lead byte of U+D000..U+DFFF: keys from U+D800 on
_PLAIN = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER  # refuses integers beyond 2^53 - 1
# orjson (3.8) reads an integer beyond 64 bits as a float, where json.loads keeps an int: a
# document with a run of 19 digits anywhere is read by json.
_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19
# json.loads recurses once per level and fails beyond Python's recursion limit (1,000), where
# orjson reads on: a document with more arrays and objects than this (a real one has about 20; a
# video's keyframes add one each) is read by json, nesting too deep failing as it always did.
_ORJSON_MAX_BRACKETS = 400


class _NotPlain(Exception):
    """A float or a constant: canonical.decode's RFC 8785 encoder decides, not this shortcut."""


def _refuse(_text: str) -> Any:
    raise _NotPlain


# json.loads(text, parse_float=_refuse, parse_constant=_refuse), its decoder made once, not per
# entry: json.loads makes a decoder for any keyword argument
_ENTRY_DECODER = json.JSONDecoder(parse_float=_refuse, parse_constant=_refuse)


def entry(body: bytes) -> entries.Entry:
    """`entries.parse(body)`: the same Entry, or MalformedEntry for the same bytes.

    canonical.decode re-encodes the value with json.dumps when it holds no float, no integer
    beyond 2^53 and no key from U+D800 on (its fast path), and refuses bytes that differ; for such
    values orjson's sorted compact encoding is json.dumps's, byte for byte, and ~6 times faster.
    So: the same parse (a float or NaN stops the shortcut), the same checks on the bytes, orjson's
    encoding compared with `body`. Anything else, and any doubt, goes to `entries.parse`."""
    if not (body.isascii() or max(body) < _FIRST_NOT_PLAIN_KEY_BYTE) \
            or body.count(b"[") + body.count(b"{") > MAX_DEPTH:
        return entries.parse(body)
    try:
        value = _ENTRY_DECODER.decode(body.decode("utf-8"))
        plain = orjson.dumps(value, option=_PLAIN) == body
    except (ValueError, RecursionError, TypeError, _NotPlain):  # orjson's errors subclass these
        plain = False
    # outside the try: entries.parse's MalformedEntry (a ValueError) is the verdict, not a doubt
    return entries.shaped(value) if plain else entries.parse(body)


def document(raw: bytes) -> Any:
    """`json.loads(raw)`: the same value, or the same exception. orjson refuses what json reads
    leniently (NaN, a byte-order mark, lone surrogates, numbers beyond a double, other UTFs):
    json then reads it, as it always did."""
    if raw.count(b"[") + raw.count(b"{") <= _ORJSON_MAX_BRACKETS \
            and _LONG_DIGITS not in raw.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)
