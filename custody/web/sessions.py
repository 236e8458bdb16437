"""Browser sessions, kept in the server's memory: a random id in a cookie, a CSRF token, expiry.

A session starts anonymous (it carries the CSRF token of the sign-in form) and is replaced by a
fresh one when its browser signs in, so an id seen before sign-in is never a signed-in one.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, replace

from custody.service.auth import Caller

COOKIE = "custody_session"
IDLE_SECONDS = 30 * 60  # a signed-in session unused this long ends
ABSOLUTE_SECONDS = 8 * 3600  # and any session ends this long after sign-in
ANONYMOUS_SECONDS = 15 * 60
MAX_ANONYMOUS = 10_000  # the oldest anonymous sessions are dropped beyond this


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    csrf: str
    caller: Caller | None  # None: not signed in
    started: float
    last_seen: float

    def expired(self, now: float) -> bool:
        if self.caller is None:
            return now - self.started > ANONYMOUS_SECONDS
        return now - self.last_seen > IDLE_SECONDS or now - self.started > ABSOLUTE_SECONDS


class Sessions:
    """The server's sessions. Lost on restart: everyone signs in again (docs/WEB.md)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def _new(self, caller: Caller | None, now: float) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), caller, now, now)
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id (its idle clock restarted), or None."""
        if not session_id:
            return None
        now = time.time()
        with self._lock:
            found = self._by_id.get(session_id)
            if found is None:
                return None
            if found.expired(now):
                del self._by_id[session_id]
                return None
            found = replace(found, last_seen=now)
            self._by_id[session_id] = found
            return found

    def anonymous(self) -> Session:
        now = time.time()
        with self._lock:
            anonymous = [s for s in self._by_id.values() if s.caller is None]
            if len(anonymous) >= MAX_ANONYMOUS:
                for old in sorted(anonymous, key=lambda s: s.started)[:len(anonymous) // 10 + 1]:
                    del self._by_id[old.id]
            return self._new(None, now)

    def sign_in(self, old: Session | None, caller: Caller) -> Session:
        """A new session for `caller`; the old one (anonymous or another's) ends."""
        with self._lock:
            if old is not None:
                self._by_id.pop(old.id, None)
            return self._new(caller, time.time())

    def end(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(session_id, None)

    def end_all_of(self, key_id: str) -> None:
        """Every session of a key (when it is found revoked)."""
        with self._lock:
            for s in [s for s in self._by_id.values()
                      if s.caller is not None and s.caller.key_id == key_id]:
                del self._by_id[s.id]
