"""The lineage proof a package carries for a derivative exported without its original: the first
record of every ancestor, with its inclusion proof (docs/FORMAT.md §11.3 `lineage`, §11.5).

An outsider then checks what the derivative was made from (the original's SHA-256, digests, size
and who recorded it, all signed) without the original's bytes.
"""

from __future__ import annotations

from typing import Any

from custody.core import entry as entries
from custody.core.chain import FIRST_RECORD
from custody.core.replay import Replay
from store.ports import EntryRow, Ledger


def rows_to_carry(ledger: Ledger, replay: Replay, chosen: list[str], size: int) -> list[EntryRow]:
    """The first records of the chosen items' ancestors that are not chosen themselves, below
    the checkpoint's size, in log order."""
    seqs: set[int] = set()
    for item in chosen:
        for ancestor in replay.ancestors(item):
            first = replay.first_record(ancestor)
            if ancestor not in chosen and first is not None and first.seq < size:
                seqs.add(first.seq)
    rows = [ledger.row(seq) for seq in sorted(seqs)]
    return [r for r in rows if r is not None]


def signed_seqs(statement: dict[str, Any], problems: list[str]) -> set[int]:
    """The statement's `lineage` (absent: none), checked to be a list of entry seqs."""
    value = statement.get("lineage", [])
    if not isinstance(value, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in value):
        problems.append("custody/package.json: lineage is not a list of entry seqs")
        return set()
    return set(value)


def carried_for_lineage(seq: int, e: entries.Entry, lineage: set[int]) -> bool:
    """True when an entry about an item the package does not hold is a lineage entry."""
    return seq in lineage and e.action in FIRST_RECORD


def check(
    lineage: set[int], carried: dict[int, tuple[entries.SignedEntry, entries.Entry]],
    replay: Replay, wanted: set[str], problems: list[str],
) -> list[dict[str, Any]]:
    """Every signed lineage seq is carried and is the first record of an ancestor of a held
    derivative; every held derivative's ancestors' first records are carried. The lineage, as
    (derivative, original, the original's first record) rows for the report."""
    ancestors = {a for item in wanted for a in replay.ancestors(item)}
    for seq in sorted(lineage):
        if seq not in carried:
            problems.append(f"lineage entry {seq} is signed in the statement but not carried")
            continue
        e = carried[seq][1]
        if e.action not in FIRST_RECORD or e.item in wanted or e.item not in ancestors:
            problems.append(f"entry {seq}: carried as lineage but is not the first record of "
                            "an original of a derivative in the package")
    shown: list[dict[str, Any]] = []
    for item in sorted(wanted):
        for ancestor in replay.ancestors(item):
            first = replay.first_record(ancestor)
            if first is None:
                continue  # the replay's rule derived-original said so
            if ancestor not in wanted and first.seq not in lineage:
                problems.append(f"item {item[:16]}…: the first record of its original "
                                f"{ancestor[:16]}… (entry {first.seq}) is not in the lineage")
        original = replay.original_of(item)
        if original is not None:
            first = replay.first_record(original)
            shown.append({"derivative": item, "original": original,
                          "original_first_record": first.seq if first else None,
                          "original_held": original in wanted})
    return shown
