"""The session marker's place in the browser: the page's localStorage, reached from the worker.

Workers have no localStorage of their own, so this goes through PyScript's bridge to the
page. Storage may be missing or refuse (private windows, storage turned off, Safari after
seven days): then there is simply no marker, and nothing fails.
"""

from __future__ import annotations

from pyscript import window

from pcir_upload.page.session.marker import STORAGE_KEY

# The resumption record of an unfinished contribution (see docs/FORMAT.md, "Resuming"): no
# names, no keys; gone once the contribution is done or cancelled.
RESUME_KEY = "pcir-resume"


def load(key: str = STORAGE_KEY) -> str | None:
    try:
        value = window.localStorage.getItem(key)
    except Exception:
        return None
    return None if value is None else str(value)


def save(text: str | None, key: str = STORAGE_KEY) -> bool:
    """Store `text` under `key`; None removes it."""
    try:
        if text is None:
            window.localStorage.removeItem(key)
        else:
            window.localStorage.setItem(key, text)
    except Exception:
        return False
    return True
