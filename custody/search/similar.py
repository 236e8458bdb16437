"""Look-alikes: `custody similar ITEM` (items whose perceptual hashes are near an item's) and the
check ingest makes of each new file against the items already held. docs/SIMILAR.md.

A look-alike is a lead for a person to examine, never a finding that two files are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from custody import display
from custody.errors import CustodyError, UsageError
from custody.ops.archive import Archive
from custody.search.fingerprints import (
    ALGORITHM,
    BITS,
    DEFAULT_MAX_DISTANCE,
    Fingerprints,
    Match,
    index_rows,
)
from custody.search.indexer import open_index, refresh
from store.index_port import SearchIndex

LOOKS_LIKE_MAX = 10  # named per new file at ingest; `custody similar` lists every one
RULE = ("distance: the fewest differing bits between any 64-bit pHash of one item and any of the "
        "other (an image has one hash, a video one per keyframe hashed)")


@dataclass(frozen=True, slots=True)
class LookAlike:
    match: Match
    mime: str | None
    names: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"item": self.match.item, "distance": self.match.distance, "mime": self.mime,
                "names": list(self.names), "t": self.match.t, "query_t": self.match.query_t}


@dataclass(frozen=True, slots=True)
class SimilarResult:
    item: str
    hashes: int
    max_distance: int
    similar: tuple[LookAlike, ...]
    not_compared: tuple[tuple[str, str], ...]  # (item, why): images and videos without a hash

    def to_json(self) -> dict[str, Any]:
        return {"item": self.item, "algorithm": ALGORITHM, "bits": BITS, "hashes": self.hashes,
                "max_distance": self.max_distance, "rule": RULE,
                "count": len(self.similar), "similar": [s.to_json() for s in self.similar],
                "not_compared_count": len(self.not_compared),
                "not_compared": [{"item": i, "reason": r} for i, r in self.not_compared]}


def check_distance(max_distance: int) -> int:
    if not 0 <= max_distance <= BITS:
        raise UsageError(f"--max-distance must be 0 to {BITS} (bits of the hash), "
                         f"not {max_distance}")
    return max_distance


def similar(archive: Archive, ref: str, max_distance: int = DEFAULT_MAX_DISTANCE) -> SimilarResult:
    """Items that look like item `ref`, best first; and the items that could not be compared."""
    check_distance(max_distance)
    sha256 = archive.resolve_item(ref)
    store = open_index(archive)
    try:
        refresh(archive, store)
        return _similar(store, sha256, max_distance)
    finally:
        store.close()


def _similar(store: SearchIndex, sha256: str, max_distance: int) -> SimilarResult:
    rows = list(store.perceptual_rows())
    everyone = Fingerprints(rows)
    unhashed = dict(store.unhashed())
    mine = [(t, h) for item, t, h in rows if item == sha256]
    if not mine:
        row = store.item(sha256)
        why = unhashed.get(sha256) or f"not an image or video ({row.mime if row else None})"
        raise CustodyError(f"item {sha256} has no perceptual hash to compare: {why}",
                           hint="docs/SIMILAR.md says which files are hashed")
    found = []
    for match in everyone.nearest(mine, max_distance, exclude=sha256):
        row = store.item(match.item)
        found.append(LookAlike(match, row.mime if row else None,
                               tuple(row.names) if row else ()))
    others = tuple((i, r) for i, r in sorted(unhashed.items()) if i != sha256)
    return SimilarResult(sha256, len(mine), max_distance, tuple(found), others)


class LookAlikes:
    """Ingest's check: is a new file near one already held (or ingested earlier in this run)?
    The index is brought up to date and read once, on the first new image or video."""

    def __init__(self, archive: Archive, max_distance: int = DEFAULT_MAX_DISTANCE) -> None:
        self.archive = archive
        self.max_distance = max_distance
        self._known: Fingerprints | None = None
        self.problem: str | None = None  # why no check could be made (the index failed)

    def check(self, sha256: str, doc: dict[str, Any] | None,
              mime: str | None) -> list[dict[str, Any]] | None:
        """`[{"item", "distance"}]`, the LOOKS_LIKE_MAX best ([] for none); None when it could not
        be checked (the file has no hash, or the index could not be read)."""
        hashes, _ = index_rows(doc or {}, mime)
        if not hashes or self.problem is not None:
            return None
        if self._known is None:
            try:
                self._known = self._load()
            except Exception as exc:  # derived facts: whatever fails here, the ingest goes on
                self.problem = (f"look-alikes not checked: the search index failed "
                                f"({type(exc).__name__}: {exc})")
                return None
        found = self._known.nearest(hashes, self.max_distance, exclude=sha256,
                                    limit=LOOKS_LIKE_MAX)
        self._known.add(sha256, hashes)
        return [{"item": m.item, "distance": m.distance} for m in found]

    def _load(self) -> Fingerprints:
        store = open_index(self.archive)
        try:
            refresh(self.archive, store)
            return Fingerprints(store.perceptual_rows())
        finally:
            store.close()


# Text for people (custody/display.py escapes and aligns) ------------------------------------------

SHOWN_NOT_COMPARED = 20  # named one by one in text; --json lists every one


def similar_lines(result: SimilarResult) -> list[str]:
    """`custody similar` as a table, best first, then the items that were not compared."""
    lines = [f"look-alikes of {result.item} ({result.hashes} hash(es); pHash distance of at most "
             f"{result.max_distance} of {BITS} bits; a lead to examine, not proof of identity):"]
    if result.similar:
        rows = [(s.match.distance, s.match.item, s.mime, _at(s.match),
                 ", ".join(s.names) or "-") for s in result.similar]
        lines += display.table(("distance", "item", "type", "frames (s)", "names"), rows,
                               right=("distance",))
    else:
        lines.append("none found")
    if result.not_compared:
        lines.append(f"not compared: {len(result.not_compared)} image(s)/video(s) without a "
                     "perceptual hash:")
        lines += [f"  {item}  {why}" for item, why in result.not_compared[:SHOWN_NOT_COMPARED]]
        if len(result.not_compared) > SHOWN_NOT_COMPARED:
            lines.append(f"  and {len(result.not_compared) - SHOWN_NOT_COMPARED} more "
                         "(--json lists them all)")
    return lines


def _at(match: Match) -> str:
    """Which frames matched: `this item's time -> the other's` (`-` for an image)."""
    if match.t is None and match.query_t is None:
        return "-"
    return f"{_seconds(match.query_t)} -> {_seconds(match.t)}"


def _seconds(t: float | None) -> str:
    return "image" if t is None else f"{t:g}"


def looks_like_line(path: str, sha256: str, found: list[dict[str, Any]]) -> str:
    """Ingest's line for a new file that looks like items already held."""
    shown = ", ".join(f"{f['item'][:16]} (distance {f['distance']})" for f in found[:3])
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return (f"looks like: {path} resembles {shown}{more} held already (a lead, not proof; "
            f"custody similar {sha256[:16]} lists them)")
