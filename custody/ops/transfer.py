"""Two-party custody transfer: the holder offers, the receiver accepts; both sign.

Each item of a transfer gets its own `transfer-offer` entry (sharing a `group`), so an item's
history holds its whole chain. Every step is checked against the chain of custody replayed under
the ledger's write lock, so two concurrent offers cannot both be recorded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from custody.core import entry as entries
from custody.core import permissions
from custody.core.chain import CustodyBook, Offer
from custody.core.custodians import Registry
from custody.core.replay import Replay
from custody.core.signing import SigningKey
from custody.errors import NotFound, NotPermitted, UsageError
from custody.ops import encryption
from custody.ops.archive import Archive, Draft, Refusal, replayed, utc_now
from store.ports import LedgerReads, LedgerTransaction

CHAIN_ACTIONS = ("ingest", "received", "transfer-offer", "transfer-accept", "transfer-withdraw")


def book(ledger: LedgerReads) -> tuple[CustodyBook, Registry]:
    """The chain of custody of every item and the registry beside it, from the one replay
    (custody/core/replay.py). Given the write transaction's writer, it is the log as the entry
    about to be appended will be judged by."""
    replay = replayed(ledger)
    return replay.book, replay.registry


def _checked_append(
    archive: Archive,
    key: SigningKey,
    drafts: list[Draft],
    attempted: str,
    purpose: str | None = None,
) -> list[entries.SignedEntry]:
    """Append drafts only if the replay, made inside the append's own write transaction (from
    its reads, after the lock is taken), finds that each in turn keeps the rules of
    docs/FORMAT.md §5.6 (the entry's time is the append's own, not judged here); else refuse,
    and record it."""
    state: dict[str, Replay] = {}

    def decide(writer: LedgerTransaction, draft: Draft) -> Draft:
        if "replay" not in state:
            state["replay"] = replayed(writer)
        probe = entries.Entry(
            log=archive.config.origin,
            seq=writer.next_seq,
            time=utc_now(),
            actor=key.key_id,
            action=draft.action,
            item=draft.item,
            details=draft.details,
            prev=None,
        )
        broken = [v for v in state["replay"].fold(probe) if not v.rule.startswith("time-")]
        if broken:  # all roll back on a refusal
            reason = f"{broken[0].text} (rule {broken[0].rule})"
            raise Refusal(reason, message=f"{attempted} refused: {reason}")
        return draft

    return archive.append(key, drafts, decide=decide, attempted=attempted, purpose=purpose)


@dataclass(frozen=True, slots=True)
class Offered:
    """One item's `transfer-offer` entry: `offer` is its seq; offers made together share `group`."""

    offer: int
    item: str
    to: str
    to_name: str
    group: str

    def to_json(self) -> dict[str, Any]:
        return {"offer": self.offer, "item": self.item, "to": self.to, "to_name": self.to_name,
                "group": self.group}


@dataclass(frozen=True, slots=True)
class Closed:
    """One item's accept or withdraw entry `seq` closing offer `offer`; `already` when the same
    person had done it before (a retry), `seq` then being the entry that did."""

    seq: int | None
    item: str
    offer: int
    already: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "item": self.item, "offer": self.offer}
        if self.already:
            out["already"] = True
        return out


def offer(
    archive: Archive, key: SigningKey, items: list[str], to: str, purpose: str
) -> list[Offered]:
    if not purpose.strip():
        raise UsageError("a transfer needs a stated purpose (--purpose TEXT)")
    archive.authorize(key, "transfer-offer", item=items[0], attempted="transfer", purpose=purpose)
    receiver = archive.resolve_custodian(to)
    if receiver.revoked_seq is not None:
        raise NotPermitted(f"{receiver.name} was revoked and cannot receive custody")
    if not permissions.may(receiver.role, "transfer-accept"):
        raise NotPermitted(f"{receiver.name} has role '{receiver.role}', which may not accept "
                           "custody (needs admin or investigator)")
    group = str(uuid.uuid4())
    drafts = [
        Draft(
            "transfer-offer",
            item,
            {"to": receiver.key_id, "purpose": purpose.strip(), "group": group},
        )
        for item in dict.fromkeys(items)
    ]
    signed = _checked_append(archive, key, drafts, "transfer", purpose)
    return [Offered(s.entry().seq, str(s.entry().item), receiver.key_id, receiver.name, group)
            for s in signed]


def _close(archive: Archive, key: SigningKey, offer_seq: int, action: str) -> list[Closed]:
    offers = book(archive.ledger)[0].group(offer_seq)
    if not offers:
        raise NotFound(f"no transfer offer {offer_seq}")
    pending = [o for o in offers if o.state == "pending"]
    state = "accepted" if action == "transfer-accept" else "withdrawn"
    closer = offers[0].to if action == "transfer-accept" else offers[0].sender
    if not pending and all(o.state == state for o in offers) and closer == key.key_id:
        # The same person repeating the same step (a retry after a crash or a lost reply): it
        # is done already; say which entries did it rather than fail.
        return [Closed(o.closed_by, o.item, o.seq, already=True) for o in offers]
    if not pending:
        raise UsageError(f"offer {offer_seq} is already {offers[0].state}")
    attempted = "accept" if action == "transfer-accept" else "withdraw"
    archive.authorize(key, action, item=pending[0].item, attempted=attempted)
    drafts = [Draft(action, o.item, {"offer": o.seq}) for o in pending]
    signed = _checked_append(archive, key, drafts, attempted)
    return [Closed(s.entry().seq, str(s.entry().item), int(s.entry().details["offer"]))
            for s in signed]


def accept(archive: Archive, key: SigningKey, offer_seq: int) -> list[Closed]:
    """Accept offer `offer_seq` and every other pending offer made with it."""
    return _close(archive, key, offer_seq, "transfer-accept")


def withdraw(archive: Archive, key: SigningKey, offer_seq: int) -> list[Closed]:
    return _close(archive, key, offer_seq, "transfer-withdraw")


def offer_json(o: Offer, archive: Archive) -> dict[str, Any]:
    reg = archive.registry()
    return {
        "offer": o.seq,
        "item": o.item,
        "from": o.sender,
        "from_name": reg.name_of(o.sender),
        "to": o.to,
        "to_name": reg.name_of(o.to),
        "purpose": offer_purpose(archive, o),
        "state": o.state,
        "closed_by": o.closed_by,
        "group": o.group,
    }


def offer_purpose(archive: Archive, o: Offer) -> str | None:
    """The offer's stated purpose: sealed in a sealed archive's entry (FORMAT.md §12.2), so read
    from the entry with the content key; None when it stays sealed (no key)."""
    if archive.sealer is None:
        return o.purpose
    found = encryption.opened_member(archive.ledger, archive.content_key, o.seq, "purpose")
    return found if isinstance(found, str) else None


def listing(archive: Archive, pending_only: bool = False) -> list[dict[str, Any]]:
    b = book(archive.ledger)[0]
    offers = b.pending() if pending_only else list(b.offers.values())
    return [offer_json(o, archive) for o in sorted(offers, key=lambda o: o.seq)]
