"""What the page's Python worker tells the page (app.js, `fromWorker`): what to store,
progress, notices. By a message on the worker's own port, which needs no SharedArrayBuffer
(WebKitGTK has none even when cross-origin isolated, and PyScript's synchronous `window`
fails there) and keeps order: the page has every message before the answer of the call
that sent it."""

from __future__ import annotations

from typing import Any

import js

from pcir_upload.page.browser._js import js_object


def tell_page(message: dict[str, Any]) -> None:
    js.postMessage(js_object({"pcir": message}))
