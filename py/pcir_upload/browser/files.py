"""Reading the disc through the browser's File objects, a slice at a time."""

from __future__ import annotations

from typing import Any

from pyodide.ffi import JsException

from ..disc import DiscReadError

_PLAIN = {
    "NotReadableError": "The computer could not read this file. The disc may be scratched "
    "or dirty, or it was taken out.",
    "NotFoundError": "This file is no longer there. Was the disc taken out?",
    "SecurityError": "The browser did not allow this file to be read.",
}


class BrowserDisc:
    """A `DiscReader` over File objects (from a directory handle or a webkitdirectory input)."""

    def __init__(self, files: dict[str, Any]):
        self._files = files

    async def read(self, path: str, offset: int, length: int) -> bytes:
        try:
            buffer = await self._files[path].slice(offset, offset + length).arrayBuffer()
        except JsException as exc:
            name = getattr(exc, "name", "") or str(exc).split(":", 1)[0]
            raise DiscReadError(_PLAIN.get(name, f"The file could not be read ({exc}).")) from None
        return buffer.to_bytes()
