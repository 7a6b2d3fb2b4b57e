"""The session marker's place in the browser: the page's localStorage, reached from the worker.

Workers have no localStorage of their own, so this goes through PyScript's bridge to the
page. Storage may be missing or refuse (private windows, storage turned off, Safari after
seven days): then there is simply no marker, and nothing fails.
"""

from __future__ import annotations

from pyscript import window

from ..marker import STORAGE_KEY


def load() -> str | None:
    try:
        value = window.localStorage.getItem(STORAGE_KEY)
    except Exception:
        return None
    return None if value is None else str(value)


def save(text: str) -> bool:
    try:
        window.localStorage.setItem(STORAGE_KEY, text)
    except Exception:
        return False
    return True
