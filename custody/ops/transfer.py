"""Two-party custody transfer: the holder offers, the receiver accepts; both sign.

Each item of a transfer gets its own `transfer-offer` entry (sharing a `group`), so an item's
history holds its whole chain. Every step is checked against the chain of custody replayed under
the ledger's write lock, so two concurrent offers cannot both be recorded.
"""

from __future__ import annotations

import uuid
from typing import Any

from custody.core import entry as entries
from custody.core.chain import ChainError, CustodyBook, Offer
from custody.core.custodians import REGISTRY_ACTIONS, Registry
from custody.core.signing import SigningKey
from custody.errors import NotFound, NotPermitted, UsageError
from custody.ops.archive import Archive, Draft
from store.ports import LedgerReads, LedgerTransaction

CHAIN_ACTIONS = ("ingest", "received", "transfer-offer", "transfer-accept", "transfer-withdraw")


def book(ledger: LedgerReads) -> tuple[CustodyBook, Registry]:
    """The chain of custody of every item, replayed from the log with the registry beside it
    (the first holder depends on the ingester's role at the time)."""
    b = CustodyBook()
    registry = Registry()
    for row in ledger.rows_with_action(*CHAIN_ACTIONS, *REGISTRY_ACTIONS):
        e = entries.parse(row.body)
        if e.action in REGISTRY_ACTIONS:
            registry.apply(e)
        else:
            signer = registry.signer(e.actor, e.seq)
            b.apply(e, signer.role if signer else None)
    return b, registry


def _checked_append(
    archive: Archive,
    key: SigningKey,
    drafts: list[Draft],
    attempted: str,
    purpose: str | None = None,
) -> list[entries.SignedEntry]:
    """Append drafts only if the chain replayed under the write lock accepts each in turn."""
    state: dict[str, tuple[CustodyBook, Registry]] = {}

    def decide(writer: LedgerTransaction, draft: Draft) -> Draft:
        if "book" not in state:
            state["book"] = book(archive.ledger)
        current, registry = state["book"]
        signer = registry.signer(key.key_id, writer.next_seq)
        probe = entries.Entry(
            log=archive.config.origin,
            seq=writer.next_seq,
            time="",
            actor=key.key_id,
            action=draft.action,
            item=draft.item,
            details=draft.details,
            prev=None,
        )
        current.apply(probe, signer.role if signer else None)  # ChainError: all roll back
        return draft

    try:
        return archive.append(key, drafts, check_signer=False, decide=decide)
    except ChainError as exc:
        archive.record_refusal(key, attempted, str(exc), item=drafts[0].item, purpose=purpose)
        raise NotPermitted(f"{attempted} refused: {exc}") from None


def offer(
    archive: Archive, key: SigningKey, items: list[str], to: str, purpose: str
) -> list[dict[str, Any]]:
    if not purpose.strip():
        raise UsageError("a transfer needs a stated purpose (--purpose TEXT)")
    archive.authorize(key, "transfer-offer", item=items[0], attempted="transfer", purpose=purpose)
    receiver = archive.resolve_custodian(to)
    if receiver.revoked_seq is not None:
        raise NotPermitted(f"{receiver.name} was revoked and cannot receive custody")
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
    return [
        {
            "offer": s.entry().seq,
            "item": s.entry().item,
            "to": receiver.key_id,
            "to_name": receiver.name,
            "group": group,
        }
        for s in signed
    ]


def _close(archive: Archive, key: SigningKey, offer_seq: int, action: str) -> list[dict[str, Any]]:
    offers = book(archive.ledger)[0].group(offer_seq)
    if not offers:
        raise NotFound(f"no transfer offer {offer_seq}")
    pending = [o for o in offers if o.state == "pending"]
    state = "accepted" if action == "transfer-accept" else "withdrawn"
    closer = offers[0].to if action == "transfer-accept" else offers[0].sender
    if not pending and all(o.state == state for o in offers) and closer == key.key_id:
        # The same person repeating the same step (a retry after a crash or a lost reply): it
        # is done already; say which entries did it rather than fail.
        return [{"seq": o.closed_by, "item": o.item, "offer": o.seq, "already": True}
                for o in offers]
    if not pending:
        raise UsageError(f"offer {offer_seq} is already {offers[0].state}")
    attempted = "accept" if action == "transfer-accept" else "withdraw"
    archive.authorize(key, action, item=pending[0].item, attempted=attempted)
    drafts = [Draft(action, o.item, {"offer": o.seq}) for o in pending]
    signed = _checked_append(archive, key, drafts, attempted)
    return [
        {"seq": s.entry().seq, "item": s.entry().item, "offer": s.entry().details["offer"]}
        for s in signed
    ]


def accept(archive: Archive, key: SigningKey, offer_seq: int) -> list[dict[str, Any]]:
    """Accept offer `offer_seq` and every other pending offer made with it."""
    return _close(archive, key, offer_seq, "transfer-accept")


def withdraw(archive: Archive, key: SigningKey, offer_seq: int) -> list[dict[str, Any]]:
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
        "purpose": o.purpose,
        "state": o.state,
        "closed_by": o.closed_by,
        "group": o.group,
    }


def listing(archive: Archive, pending_only: bool = False) -> list[dict[str, Any]]:
    b = book(archive.ledger)[0]
    offers = b.pending() if pending_only else list(b.offers.values())
    return [offer_json(o, archive) for o in sorted(offers, key=lambda o: o.seq)]
