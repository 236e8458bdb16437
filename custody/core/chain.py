"""The chain of custody as the log states it, pure: who holds each item, and the transfer offers.

Holders are never stored: replaying `ingest` and `transfer-*` entries in order gives them, as of any
entry. The same replay refuses an impossible sequence (an offer by someone who does not hold the
item, an acceptance by someone else than the receiver), which is how verify catches one.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

from custody.core.entry import Entry

Tables = Callable[[str], MutableMapping[Any, Any]]
"""Where a fold keeps its state per item: a fresh table for each name. A dict by default; a
verifier of a huge log passes tables that keep most values out of memory (store/spill.py)."""


def in_memory(_name: str) -> MutableMapping[Any, Any]:
    return {}

ARCHIVE_HOLDER = "archive"
"""The holder of an item a field custodian ingested: field teams hand evidence in to the archive
(their role may not transfer), and admins or investigators then act for the archive."""
CAN_HOLD = ("admin", "investigator")
FIRST_RECORD = ("ingest", "received", "derived")  # the entries that bring an item into the archive


class ChainError(ValueError):
    """An entry that the chain of custody so far does not allow; `rule` names the rule it breaks
    (docs/FORMAT.md §5.6)."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True, slots=True)
class Offer:
    seq: int
    group: str
    item: str
    sender: str
    to: str
    purpose: str
    state: str = "pending"  # "pending", "accepted" (by seq `closed_by`) or "withdrawn"
    closed_by: int | None = None


@dataclass(frozen=True, slots=True)
class Holding:
    """One period of custody: `holder` held `item` from entry `since` (and its time)."""

    holder: str
    since_seq: int
    since_time: str

    def __reduce__(self) -> tuple[type[Holding], tuple[str, int, str]]:
        """Pickled as its fields (verify keeps holdings in scratch tables: store/spill.py)."""
        return Holding, (self.holder, self.since_seq, self.since_time)


class CustodyBook:
    """Apply entries in log order; ask for holders and offers at that point."""

    def __init__(self, tables: Tables = in_memory) -> None:
        self.holdings: MutableMapping[str, list[Holding]] = tables("holdings")
        self.offers: MutableMapping[int, Offer] = tables("offers")
        # item -> the seq of its pending offer (an item has one at most: rule offer-pending)
        self._pending: MutableMapping[str, int] = tables("pending-offers")

    def holder(self, item: str, at_seq: int | None = None) -> str | None:
        """The holder now, or just after entry `at_seq`."""
        periods = [p for p in self.holdings.get(item, [])
                   if at_seq is None or p.since_seq <= at_seq]
        return periods[-1].holder if periods else None

    def pending_for(self, item: str) -> Offer | None:
        seq = self._pending.get(item)
        return self.offers[seq] if seq is not None else None

    def pending(self) -> list[Offer]:
        return [o for o in self.offers.values() if o.state == "pending"]

    def group(self, seq: int) -> list[Offer]:
        """Every offer made together with offer `seq` (one `custody transfer` of many items)."""
        first = self.offers.get(seq)
        if first is None:
            return []
        return [o for o in self.offers.values() if o.group == first.group]

    def apply(self, e: Entry, actor_role: str | None) -> None:
        """Fold in one entry; `actor_role` is its signer's role as enrolled at that entry."""
        d = e.details
        if e.action in FIRST_RECORD and e.item is not None and e.item not in self.holdings:
            first = e.actor if actor_role in CAN_HOLD else ARCHIVE_HOLDER
            self.holdings[e.item] = [Holding(first, e.seq, e.time)]
        elif e.action == "transfer-offer":
            self._offer(e, str(e.item), str(d.get("to")))
        elif e.action in ("transfer-accept", "transfer-withdraw"):
            self._close(e, d.get("offer"))

    def rotate(self, old: str, new: str, seq: int, time: str) -> None:
        """A custodian's key replaced (`key-rotate`): the new key holds what the old one held,
        receives the offers made to it and may withdraw the offers it made."""
        for item, periods in self.holdings.items():
            if periods[-1].holder == old:
                self.holdings[item] = [*periods, Holding(new, seq, time)]
        for n, offer in self.offers.items():
            if offer.state == "pending" and offer.to == old:
                self.offers[n] = replace(offer, to=new)
            elif offer.state == "pending" and offer.sender == old:
                self.offers[n] = replace(offer, sender=new)

    def _offer(self, e: Entry, item: str, to: str) -> None:
        holder = self.holder(item)
        if holder is None:
            raise ChainError(f"offers item {item[:16]}, which was never ingested", "first-record")
        if holder != e.actor and holder != ARCHIVE_HOLDER:
            raise ChainError(f"offers item {item[:16]} but is not its holder", "offer-holder")
        if to == holder:
            raise ChainError("offers an item to its own holder", "offer-receiver")
        if self.pending_for(item) is not None:
            raise ChainError(f"offers item {item[:16]}, which already has a pending offer",
                             "offer-pending")
        self.offers[e.seq] = Offer(
            e.seq, str(e.details.get("group")), item, e.actor, to, str(e.details.get("purpose"))
        )
        self._pending[item] = e.seq

    def _close(self, e: Entry, offer_seq: object) -> None:
        offer = self.offers.get(offer_seq) if isinstance(offer_seq, int) else None
        if offer is None:
            raise ChainError(f"refers to offer {offer_seq!r}, which is not a transfer offer",
                             "offer-open")
        if offer.state != "pending":
            raise ChainError(f"refers to offer {offer.seq}, which is already {offer.state}",
                             "offer-open")
        if e.item != offer.item:
            raise ChainError(f"names item {str(e.item)[:16]} but offer {offer.seq} is for another",
                             "offer-same-item")
        if e.action == "transfer-accept":
            if e.actor != offer.to:
                raise ChainError(f"accepts offer {offer.seq}, which was made to someone else",
                                 "accept-receiver")
            self.offers[offer.seq] = replace(offer, state="accepted", closed_by=e.seq)
            del self._pending[offer.item]
            self.holdings[offer.item] = [*self.holdings[offer.item],
                                         Holding(e.actor, e.seq, e.time)]
        else:
            if e.actor != offer.sender:
                raise ChainError(f"withdraws offer {offer.seq}, which someone else made",
                                 "withdraw-offerer")
            self.offers[offer.seq] = replace(offer, state="withdrawn", closed_by=e.seq)
            del self._pending[offer.item]
