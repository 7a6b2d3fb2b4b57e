"""Who may look: one secret (a token printed at start, or a password file), then sessions.

The review page shows what identifies patients, so nothing is served without a session:
an HttpOnly, SameSite=Strict cookie that lapses after IDLE of no use, and every form carries
the session's CSRF token. The operator's name is asked at login and goes with every decision.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "pcir_review"
IDLE = 8 * 3600  # seconds without a request before a session lapses
LONGEST = 24 * 3600  # and at most this long after login, however busy


@dataclass
class Session:
    operator: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    started: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    """The login secret and the sessions it opened, in memory: a restart logs everyone out."""

    def __init__(self, secret: str):
        if len(secret) < 12:
            raise ValueError("the review page's password must be at least 12 characters")
        self._secret = secret.encode()
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def login(self, secret: str, operator: str) -> str | None:
        """A new session id, or None for a wrong secret or no name."""
        if not hmac.compare_digest(secret.encode(), self._secret) or not operator.strip():
            return None
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[sid] = Session(operator.strip())
        return sid

    def get(self, sid: str | None) -> Session | None:
        """The live session for a cookie's value; a lapsed one is forgotten."""
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.seen > IDLE or now - session.started > LONGEST:
                del self._sessions[sid]
                return None
            session.seen = now
            return session

    def logout(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


def csrf_ok(session: Session, token: str) -> bool:
    return hmac.compare_digest(session.csrf.encode(), token.encode())


def new_token() -> str:
    return secrets.token_urlsafe(18)
