"""Canonical JSON (RFC 8785, JCS): the one byte encoding of everything custody signs or hashes.

The maintained `rfc8785` package is the reference. For values with no floats, no integers beyond
2^53 and no object keys at or above U+D800, RFC 8785 output is exactly what the standard library's
`json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes (same escapes, and
code-point order equals UTF-16 order below the surrogates): that fast path is taken only then, and
a property test holds the two to the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

MAX_SAFE_INTEGER = (1 << 53) - 1  # RFC 8785 §3.2.2.3: numbers are IEEE 754 doubles
# Arrays and objects nested deeper are refused before anything recurses over them: nothing custody
# writes comes near it, and Python's parsers and encoders recurse once per level.
MAX_DEPTH = 128
_FIRST_SURROGATE = "\ud800"


class NotCanonical(ValueError):
    """Bytes that are not the RFC 8785 encoding of the value they hold."""


class TooDeep(json.JSONDecodeError):
    """JSON nested more than MAX_DEPTH levels (caught wherever a JSONDecodeError is)."""

    def __init__(self, doc: str) -> None:
        super().__init__(f"arrays or objects nested more than {MAX_DEPTH} levels deep", doc, 0)

    def __str__(self) -> str:
        return self.msg


def load_json(text: str, **hooks: Any) -> Any:
    """json.loads for untrusted text, refusing nesting deeper than MAX_DEPTH (TooDeep) instead of
    running out of stack."""
    try:
        value = json.loads(text, **hooks)
    except RecursionError:
        raise TooDeep(text[:80]) from None
    if (text.count("[") + text.count("{") > MAX_DEPTH) and _depth(value) > MAX_DEPTH:
        raise TooDeep(text[:80])
    return value


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, level = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((c, level + 1) for c in children)
    return deepest


def encode(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value."""
    if _plain(value):
        try:
            return _fast(value)
        except UnicodeEncodeError:  # a lone surrogate: let the reference say what it thinks
            pass
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"cannot canonicalise: {exc}") from None


def reference_encode(value: Any) -> bytes:
    """RFC 8785 by the reference implementation alone (tests hold `encode` to it)."""
    return rfc8785.dumps(value)


def decode(data: bytes) -> Any:
    """Parse canonical JSON, refusing bytes that would not re-encode to themselves.

    Byte equality after re-encoding also rules out duplicate keys, other spacing, escapes and
    number forms, so no separate checks are needed.
    """
    flags = _Flags()
    try:
        value = load_json(
            data.decode("utf-8"),
            parse_float=flags.float,
            parse_int=flags.int,
            parse_constant=_no_constants,
        )
    except TooDeep as exc:
        raise NotCanonical(f"not accepted: {exc.msg}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotCanonical(f"not JSON: {exc}") from None
    try:
        fast = flags.plain and (data.isascii() or _plain(value))
        again = _fast(value) if fast else encode(value)
    except (ValueError, UnicodeEncodeError) as exc:
        raise NotCanonical(f"not canonicalisable: {exc}") from None
    if again != data:
        raise NotCanonical("JSON is not in RFC 8785 canonical form")
    return value


def _fast(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _plain(value: Any) -> bool:
    """True when the fast path writes RFC 8785 bytes for `value` (see the module docstring)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str) or (k and max(k) >= _FIRST_SURROGATE):
                    return False
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, float):
            return False
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_SAFE_INTEGER:
            return False
    return True


class _Flags:
    """json.loads hooks that note a float or a huge integer (which rule out the fast path)."""

    def __init__(self) -> None:
        self.plain = True

    def float(self, text: str) -> float:
        self.plain = False
        return float(text)

    def int(self, text: str) -> int:
        n = int(text)
        if abs(n) > MAX_SAFE_INTEGER:  # beyond 2^53 a JSON number is only a double
            self.plain = False
            return float(text)  # type: ignore[return-value]
        return n


def _no_constants(name: str) -> Any:
    raise NotCanonical(f"{name} is not JSON")
