"""Statement drafts: a statement (docs/FORMAT.md §5.8) composed by the archive for a custodian to
sign on their own device (`custody sign-statement`), so that a web page can record an action
without the server ever holding the custodian's key (docs/WEB.md, "Actions").

A draft is the statement's exact RFC 8785 bytes, base64url without padding, after the prefix
`custody-draft:`. Signing one signs those bytes as they are; nothing in a draft is trusted by the
signer without being shown to them first.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Any

from custody.core import canonical
from custody.core import entry as entries
from custody.core.signing import SigningKey
from custody.errors import UsageError
from custody.ops.statements import statement_file

PREFIX = "custody-draft:"


def compose(log: str, actor: str, action: str, item: str | None, details: dict[str, Any],
            now: datetime | None = None) -> bytes:
    """The canonical bytes of a new statement by `actor`: its time now, a fresh nonce."""
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    statement = entries.Statement(log=log, actor=actor, action=action, item=item,
                                  details=details, time=when, nonce=secrets.token_hex(16))
    body = canonical.encode(statement.to_json())
    entries.parse_statement(body)  # a draft is a well-formed statement, or none is made
    return body


def as_text(body: bytes) -> str:
    return PREFIX + base64.urlsafe_b64encode(body).decode("ascii").rstrip("=")


def read(text: str) -> tuple[bytes, entries.Statement]:
    """A draft's statement bytes and what they say; UsageError, one line, for anything else."""
    text = "".join(text.split())  # a draft pasted over several lines
    if not text.startswith(PREFIX):
        raise UsageError(f"not a statement draft (it must start with {PREFIX})")
    raw = text[len(PREFIX):]
    try:
        body = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        return body, entries.parse_statement(body)
    except (ValueError, entries.MalformedEntry) as exc:
        raise UsageError(f"not a well-formed statement draft ({exc})") from None


def sign(key: SigningKey, text: str) -> dict[str, Any]:
    """The statement file of a draft signed by `key`, which must be the draft's actor."""
    body, statement = read(text)
    if statement.actor != key.key_id:
        raise UsageError(f"this draft is for key {statement.actor}, not yours ({key.key_id})")
    signed = entries.SignedStatement(body=body, signature=key.sign(entries.STATEMENT_TAG + body))
    return statement_file(signed)


def described(statement: entries.Statement) -> list[str]:
    """What a draft says, one fact a line, for the signer to read before they sign."""
    lines = [f"action:  {statement.action}", f"item:    {statement.item or '-'}",
             f"archive: {statement.log}", f"signer:  {statement.actor}",
             f"time:    {statement.time}"]
    lines += [f"  {k}: {canonical.encode(v).decode('utf-8')}"
              for k, v in sorted(statement.details.items())]
    return lines
