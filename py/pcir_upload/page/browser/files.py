"""Reading the disc through the browser's File objects, a slice at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pyodide.ffi import JsException

from pcir_upload.page.disc.disc import DiscReadError

_PLAIN = {
    "NotReadableError": "The computer could not read this file. The disc may be scratched "
    "or dirty, or it was taken out.",
    "NotFoundError": "This file is no longer there. Was the disc taken out?",
    "SecurityError": "The browser did not allow this file to be read.",
}


def read_error(error: Any) -> DiscReadError:
    """A browser's read error (an exception or a rejection reason) in words for the patient."""
    name = str(getattr(error, "name", "") or str(error).split(":", 1)[0])
    return DiscReadError(_PLAIN.get(name, f"The file could not be read ({error})."))


class BrowserDisc:
    """A `DiscReader` over File objects (from a directory handle or a webkitdirectory input)."""

    def __init__(self, files: dict[str, Any]):
        self._files = files

    async def read(self, path: str, offset: int, length: int) -> bytes:
        try:
            buffer = await _part(self._files[path], offset, length).arrayBuffer()
        except JsException as exc:
            raise read_error(exc) from None
        return buffer.to_bytes()

    async def read_heads(self, paths: Sequence[str], length: int) -> list[bytes | DiscReadError]:
        """The first bytes of many files with one wait: every read is started, then all are
        awaited together, since each separate wait from Python costs milliseconds."""
        # Pyodide hands back each read's promise as a Python future; gather awaits them all.
        reads = [_part(self._files[path], 0, length).arrayBuffer() for path in paths]
        outcomes = await asyncio.gather(*reads, return_exceptions=True)
        return [read_error(o) if isinstance(o, BaseException) else o.to_bytes() for o in outcomes]


def _part(file: Any, offset: int, length: int) -> Any:
    """The Blob of `length` bytes at `offset`: the File itself where that is all of it, since
    each Blob.slice() costs Chromium a round trip (most of a millisecond, measured here)."""
    if offset == 0 and length >= file.size:
        return file
    return file.slice(offset, offset + length)
