"""Perceptual hashes as the index keeps them and as look-alikes are found: the rows an item's
metadata document gives, and the Hamming-distance comparison of one item's hashes with all others.

docs/SIMILAR.md gives the rules: an image has one hash, a video one per keyframe hashed, and the
distance of two items is the smallest distance between any hash of one and any hash of the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

ALGORITHM = "phash"
BITS = 64
DEFAULT_MAX_DISTANCE = 12  # of 64 bits: re-encodes, resizes, crops up to ~5% a side (SIMILAR.md)
NOT_YET = "ingested before perceptual hashing"
_HEX = re.compile(r"[0-9a-f]{16}")
_POPCOUNT = [bin(i).count("1") for i in range(256)]  # set bits of each byte value

Hash = tuple[float | None, str]  # (keyframe time in seconds, or None for an image; 16 hex digits)


def index_rows(doc: dict[str, Any], mime: str | None) -> tuple[list[Hash], str | None]:
    """An item's hashes from its metadata document, or (for an image or video) why it has none.
    Other kinds of file are never compared: ([], None)."""
    if (mime or "").split("/", 1)[0] not in ("image", "video"):
        return [], None
    if not doc:
        return [], "no usable metadata document"
    if "perceptual" not in doc:
        return [], NOT_YET
    value = doc["perceptual"]
    hashes: list[Hash] = []
    ours = isinstance(value, dict) and (value.get("algorithm"), value.get("bits")) == (ALGORITHM,
                                                                                   BITS)
    if ours:
        if _is_hash(value.get("image")):
            hashes.append((None, value["image"]))
        frames = value.get("frames")
        for frame in frames if isinstance(frames, list) else []:
            t, hexed = (frame.get("t"), frame.get("hash")) if isinstance(frame, dict) else (0, 0)
            if isinstance(t, (int, float)) and not isinstance(t, bool) and _is_hash(hexed):
                hashes.append((float(t), hexed))
    elif isinstance(value, dict):
        return [], f"hashed with another algorithm ({value.get('algorithm')!s:.40})"
    if hashes:
        return hashes, None
    errors = doc.get("errors")
    errors = errors if isinstance(errors, list) else []
    said = [e[len("perceptual: "):] for e in errors
            if isinstance(e, str) and e.startswith("perceptual: ")]
    return [], "not hashed" + (f": {said[0]}" if said else "")


def _is_hash(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and _HEX.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Match:
    """Another item within the distance: its best-matching hash's time (`t`, None for an image)
    and the queried item's hash it matched (`query_t`)."""

    item: str
    distance: int
    t: float | None
    query_t: float | None


class Fingerprints:
    """Every item's hashes in memory, as 64-bit integers compared in bulk (numpy)."""

    def __init__(self, rows: Iterable[tuple[str, float | None, str]] = ()) -> None:
        import numpy  # here: the indexer and every search import this module, few compare

        self._np = numpy
        self._popcount = numpy.array(_POPCOUNT, dtype=numpy.uint8)
        self._items: list[str] = []
        self._held: set[str] = set()
        self._times: list[float | None] = []
        values: list[int] = []
        keys: list[int | None] = []
        for sha256, t, hexed in rows:
            self._items.append(sha256)
            self._held.add(sha256)
            self._times.append(t)
            values.append(int(hexed, 16))
            keys.append(_order_key(sha256))
        np = numpy
        self._keyed = all(k is not None for k in keys)  # else every item name ties (exact)
        # The hashes live in a buffer with room to grow: an ingest adds each new item, and a
        # copy of every hash held per file would cost O(N) a file in a large archive. Beside
        # each, its item's order key (`_order_key`), so that the best few are picked in bulk.
        self._buffer = np.array(values, dtype=np.uint64)
        self._key_buffer = np.array([k or 0 for k in keys], dtype=np.uint64)
        self._count = len(values)

    @property
    def _hashes(self) -> Any:
        return self._buffer[:self._count]

    def add(self, sha256: str, hashes: list[Hash]) -> None:
        """Hold a new item's hashes too (one ingested in this run), unless already held."""
        if sha256 in self._held:
            return
        self._held.add(sha256)
        np = self._np
        self._items.extend(sha256 for _ in hashes)
        self._times.extend(t for t, _ in hashes)
        more = np.array([int(h, 16) for _, h in hashes], dtype=np.uint64)
        end = self._count + len(more)
        if end > len(self._buffer):  # doubling: amortised O(1) a hash
            size = max(2 * len(self._buffer), end, 64)
            self._buffer = _grown(np, self._buffer, self._count, size)
            self._key_buffer = _grown(np, self._key_buffer, self._count, size)
        self._buffer[self._count:end] = more
        key = _order_key(sha256)
        self._keyed = self._keyed and key is not None
        self._key_buffer[self._count:end] = key or 0
        self._count = end

    def _distances(self, hexed: str) -> Any:
        """Hamming distance of one hash to every hash held (uint8 each)."""
        np = self._np
        xor = self._hashes ^ np.uint64(int(hexed, 16))
        if hasattr(np, "bitwise_count"):  # numpy >= 2.0: one instruction a hash
            return np.bitwise_count(xor)
        return self._popcount[xor.view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.uint8)

    def nearest(self, query: list[Hash], max_distance: int, exclude: str,
                limit: int | None = None) -> list[Match]:
        """Items (other than `exclude`) whose best pair of hashes with `query` is within
        `max_distance` bits: best first, then by item; the first `limit` of them if given."""
        if not query or not len(self._hashes):
            return []
        np = self._np
        if len(query) == 1:  # an image: its one hash's distances are the best
            best, which = self._distances(query[0][1]), None
        else:
            best = np.full(len(self._hashes), BITS + 1, dtype=np.uint8)
            which = np.zeros(len(self._hashes), dtype=np.intp)
            for i, (_, hexed) in enumerate(query):
                distance = self._distances(hexed)
                closer = distance < best
                best[closer], which[closer] = distance[closer], i
        rows = np.flatnonzero(best <= max_distance)
        keys = self._key_buffer[:self._count][rows] if self._keyed else np.zeros(len(rows),
                                                                                 dtype=np.uint64)
        # Rows in (distance, item) order, by the item's order key; stable, so an item's rows
        # at one distance stay in held order and its first row seen is its best. Once `limit`
        # items are found, only rows tied with the last one (same distance and key) can still
        # enter: a burst of near-copies must not cost a Match each.
        order = np.lexsort((keys, best[rows]))
        found: dict[str, Match] = {}
        last: tuple[int, int] | None = None
        for row, key in zip(rows[order].tolist(), keys[order].tolist(), strict=True):
            distance = int(best[row])
            if last is not None and (distance, key) != last:
                break
            item = self._items[row]
            if item == exclude or item in found:
                continue
            matched = query[0 if which is None else int(which[row])]
            found[item] = Match(item, distance, self._times[row], matched[0])
            if limit is not None and last is None and len(found) >= limit:
                last = (distance, key)
        ordered = sorted(found.values(), key=lambda m: (m.distance, m.item))
        return ordered if limit is None else ordered[:limit]


def _order_key(item: str) -> int | None:
    """A number in the order of item names as far as their first 16 characters go: the first 64
    bits of a SHA-256 in hex (items whose keys tie are ordered by name in Python). None for a
    name that is not hex (never an item of the index): then no name is keyed."""
    head = item[:16]
    return int(head, 16) if _HEX.fullmatch(head) else None


def _grown(np: Any, buffer: Any, count: int, size: int) -> Any:
    grown = np.empty(size, dtype=buffer.dtype)
    grown[:count] = buffer[:count]
    return grown
