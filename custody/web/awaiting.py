"""Drafts a session has been shown and waits to have signed, each taken back at most once: every
page that takes a signed statement back (item.py, export_page.py) claims its draft through here.

`claim` removes the draft under a lock BEFORE the action it stands for runs, so the same form
sent twice at once acts once; the other request finds nothing and is refused 409 (docs/WEB.md
"Drafts are used once"). An action that fails puts its draft back for a corrected signature.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from custody.web.site import Refused

T = TypeVar("T")
MAX_SESSIONS = 1000  # sessions whose drafts are kept in memory (the least recently used dropped)
GONE = ("this draft is no longer waiting (signed and sent already, or from an ended session): "
        "make the request again")


class Awaiting(Generic[T]):
    """Every session's drafts awaiting a signature, each for one item, in memory (lost on
    restart, as the sessions are): at most `per_session` a session, the oldest dropped."""

    def __init__(self, per_session: int, sessions: int = MAX_SESSIONS) -> None:
        self._by_session: OrderedDict[str, OrderedDict[str, tuple[str, T]]] = OrderedDict()
        self._per_session = per_session
        self._sessions = sessions
        self._lock = threading.Lock()

    def add(self, session_id: str, item: str, draft: T) -> str:
        """Keep `draft` (about `item`) for this session; its id, for the sign page's form."""
        draft_id = uuid.uuid4().hex
        self._put(session_id, draft_id, item, draft)
        return draft_id

    @contextmanager
    def claim(self, session_id: str, draft_id: str, item: str) -> Iterator[T]:
        """The draft, removed at once: no other request can claim it while this one acts.
        Refused 409 if it is not waiting (claimed already, dropped, or for another item). If
        the action raises, the draft waits again (a wrong signature can be replaced by the
        right one); a cancelled request (BaseException) leaves it used."""
        with self._lock:
            waiting = self._by_session.get(session_id)
            held = None if waiting is None else waiting.get(draft_id)
            if waiting is None or held is None or held[0] != item:
                raise Refused(409, GONE)
            del waiting[draft_id]
        try:
            yield held[1]
        except Exception:
            self._put(session_id, draft_id, item, held[1])
            raise

    def _put(self, session_id: str, draft_id: str, item: str, draft: T) -> None:
        with self._lock:
            waiting = self._by_session.pop(session_id, None) or OrderedDict()
            self._by_session[session_id] = waiting  # the most recently used session last
            waiting[draft_id] = (item, draft)
            while len(waiting) > self._per_session:
                waiting.popitem(last=False)
            while len(self._by_session) > self._sessions:
                self._by_session.popitem(last=False)
