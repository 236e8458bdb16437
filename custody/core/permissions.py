"""Who may do what: the role table, pure, used both to refuse commands and by verify to reject
entries a role could not have made (so a custodian who bypasses the command line is still caught).
"""

from __future__ import annotations

ALL_ROLES = frozenset({"admin", "field", "investigator", "reviewer"})

# action (as written in entries) -> roles that may sign it
MAY_SIGN: dict[str, frozenset[str]] = {
    "enroll": frozenset({"admin"}),
    "revoke": frozenset({"admin"}),
    "ingest": frozenset({"admin", "field", "investigator"}),
    "sighting": frozenset({"admin", "field", "investigator"}),
    # ExifTool's reading of an item the fast path left it for (docs/METADATA.md "The fast path")
    "enriched": frozenset({"admin", "field", "investigator"}),
    "received": frozenset({"admin", "investigator"}),  # an item imported from a package
    "access": frozenset({"admin", "investigator", "reviewer"}),
    "transfer-offer": frozenset({"admin", "investigator"}),
    "transfer-accept": frozenset({"admin", "investigator"}),
    "transfer-withdraw": frozenset({"admin", "investigator"}),
    "case-add": frozenset({"admin", "investigator"}),
    "case-remove": frozenset({"admin", "investigator"}),
    "incident": frozenset({"admin", "investigator"}),
    "incident-add": frozenset({"admin", "investigator"}),
    "note": frozenset({"admin", "field", "investigator", "reviewer"}),
    "tag": frozenset({"admin", "field", "investigator"}),
    "verification": ALL_ROLES,
    "refused": ALL_ROLES,  # a refusal is signed by the one refused: attempts matter in an audit
    # a derivative's first record: it reads its original, so the roles that may read content
    "derived": frozenset({"admin", "investigator", "reviewer"}),
    # keys (docs/KEYS.md): one's own key by oneself; another's (after a loss) or the archive's by
    # an admin, a rule the replay states (`rotate-by`, `key-own`)
    "key-rotate": ALL_ROLES,
    "archive-key-rotate": frozenset({"admin"}),
    "key-backup": ALL_ROLES,
    "key-restore": ALL_ROLES,
    # the last entry of a copy of the log on other storage (`custody migrate`, docs/BACKENDS.md)
    "migrated": frozenset({"admin"}),
    "held-elsewhere": frozenset({"admin", "field", "investigator"}),  # travel (FORMAT.md §12.4)
    # a centre's signed receipt for an item this archive handed in (`custody sync`)
    "handed_in": frozenset({"admin", "field", "investigator"}),
}


def may(role: str, action: str) -> bool:
    """True when a custodian of `role` may sign an entry of `action`."""
    return role in MAY_SIGN.get(action, frozenset())


def roles_for(action: str) -> tuple[str, ...]:
    return tuple(sorted(MAY_SIGN.get(action, frozenset())))
