"""Canonical JSON (RFC 8785, JCS): the one byte encoding of everything custody signs or hashes.

A thin wrapper over the maintained `rfc8785` package, plus the strict parse that checks bytes read
back are exactly the canonical form (so two encodings of one value can never both verify).
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785


class NotCanonical(ValueError):
    """Bytes that are not the RFC 8785 encoding of the value they hold."""


def encode(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"cannot canonicalise: {exc}") from None


def decode(data: bytes) -> Any:
    """Parse canonical JSON, refusing bytes that would not re-encode to themselves."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotCanonical(f"not JSON: {exc}") from None
    if encode(value) != data:
        raise NotCanonical("JSON is not in RFC 8785 canonical form")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, val in pairs:
        if key in result:
            raise NotCanonical(f"duplicate key {key!r}")
        result[key] = val
    return result
