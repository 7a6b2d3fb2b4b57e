"""The session marker: the one thing the page keeps on the patient's computer between visits.

It holds a random contributor id (so the repository can tell that two contributions came
from the same person, inside the encrypted manifest only), which terms were agreed and when,
and when the last contribution finished. Never a name, a study, a file name or a key. It is
read strictly: anything that is not exactly a marker (an old format, a hand-edited value,
another site's data) counts as no marker, and the page simply asks again.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, timezone

STORAGE_KEY = "pcir-session"
RECONFIRM_DAYS = 30
_ID = re.compile(r"[0-9a-f]{32}")
_TIME = "%Y-%m-%dT%H:%M:%SZ"
_FIELDS = {"contributor_id", "terms_version", "agreed", "last_contribution"}


@dataclass(frozen=True)
class SessionMarker:
    contributor_id: str  # 32 hex digits, random
    terms_version: str
    agreed: str  # UTC, as _TIME
    last_contribution: str | None = None

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def now_text(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime(_TIME)


def new_marker(terms_version: str, now: datetime) -> SessionMarker:
    """A new contributor: a fresh random id, agreeing to `terms_version` now."""
    return SessionMarker(secrets.token_hex(16), terms_version, now_text(now))


def parse_marker(text: str | None) -> SessionMarker | None:
    """The marker in `text`, or None for anything that is not exactly a valid marker."""
    if not text or len(text) > 1000:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != _FIELDS:
        return None
    cid, version, agreed, last = (data[k] for k in ("contributor_id", "terms_version", "agreed", "last_contribution"))
    if not (isinstance(cid, str) and _ID.fullmatch(cid)):
        return None
    if not (isinstance(version, str) and 0 < len(version) <= 64):
        return None
    if not all(isinstance(t, str) and _parse_time(t) for t in [agreed] + ([last] if last is not None else [])):
        return None
    return SessionMarker(cid, version, agreed, last)


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, _TIME).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def still_agreed(marker: SessionMarker | None, terms_version: str, now: datetime,
                 days: int = RECONFIRM_DAYS) -> bool:
    """Whether these same terms were agreed recently enough not to ask again."""
    if marker is None or marker.terms_version != terms_version:
        return False
    agreed = _parse_time(marker.agreed)
    return agreed is not None and timedelta(0) <= now - agreed <= timedelta(days=days)


def agreed_again(marker: SessionMarker | None, terms_version: str, now: datetime) -> SessionMarker:
    """The marker after agreeing: the same contributor if there was one, else a new one."""
    if marker is None:
        return new_marker(terms_version, now)
    return replace(marker, terms_version=terms_version, agreed=now_text(now))


def contributed(marker: SessionMarker, now: datetime) -> SessionMarker:
    return replace(marker, last_contribution=now_text(now))
