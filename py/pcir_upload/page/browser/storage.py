"""The session marker's and the resumption record's place in the browser: the page's
localStorage, which workers do not have.

The page hands the worker what it holds at the start of the session (`seed`), and the
worker tells the page what to store (`topage`). Neither waits on the page: reaching it
synchronously needs SharedArrayBuffer, which WebKitGTK lacks even when cross-origin isolated. Storage may be missing or refuse (private windows, storage
turned off, Safari after seven days): then there is simply no marker, and nothing fails.
"""

from __future__ import annotations

from typing import Any

from pcir_upload.page.browser.topage import tell_page
from pcir_upload.page.session.marker import STORAGE_KEY

# The resumption record of an unfinished contribution (see docs/FORMAT.md, "Resuming"): no
# names, no keys; gone once the contribution is done or cancelled.
RESUME_KEY = "pcir-resume"
_held: dict[str, str] = {}  # what the page's storage holds under our keys, as far as we know


def seed(stored: dict[str, Any]) -> None:
    """What the page read from its storage when the session started."""
    _held.clear()
    _held.update({str(k): str(v) for k, v in stored.items() if isinstance(v, str)})


def load(key: str = STORAGE_KEY) -> str | None:
    return _held.get(key)


def save(text: str | None, key: str = STORAGE_KEY) -> None:
    """Store `text` under `key`; None removes it."""
    if text is None:
        _held.pop(key, None)
    else:
        _held[key] = text
    tell_page({"kind": "store", "key": key, "value": text})
