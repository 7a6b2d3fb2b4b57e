"""The tus transport on the browser's fetch: one request, an answer or a TransportError."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import js
from pyodide.ffi import JsException, create_once_callable

from pcir_upload.page.upload.tus import Response, TransportError
from pcir_upload.page.browser._js import js_object, uint8array

# fetch reports no upload progress, so a stall is judged against the body's size: two chunks
# sharing a poor uplink (8 KiB/s each) still get through, a dead connection is given up on.
_BASE_TIMEOUT_MS = 30_000
_SLOWEST_BYTES_PER_MS = 8


class FetchTransport:
    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> Response:
        controller = js.AbortController.new()
        timeout = _BASE_TIMEOUT_MS + (len(body) if body else 0) // _SLOWEST_BYTES_PER_MS
        timer = js.setTimeout(create_once_callable(lambda: controller.abort()), timeout)
        init = {
            "method": method,
            "headers": js_object(dict(headers)),
            "signal": controller.signal,
            "cache": "no-store",
            "credentials": "same-origin",
            "redirect": "error",
        }
        if body is not None:
            init["body"] = uint8array(body)
        try:
            response = await js.fetch(url, js_object(init))
            await response.arrayBuffer()  # drain, so the connection is free for the next one
        except JsException as exc:
            raise TransportError(f"{method} {url}: {exc}") from None
        except asyncio.CancelledError:
            controller.abort()  # paused or cancelled: stop the bytes too, not just the wait
            raise
        finally:
            js.clearTimeout(timer)
        names = {}
        for pair in response.headers.entries():
            names[str(pair[0]).lower()] = str(pair[1])
        return Response(response.status, names)
