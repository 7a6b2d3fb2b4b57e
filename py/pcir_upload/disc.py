"""What the patient pointed the page at: a disc (CD, folder, USB stick) as a flat listing of files.

The browser hands over files two ways (a directory handle, or `<input webkitdirectory>`);
both end up here as the same listing, so nothing downstream knows which one it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DiscFile:
    """One file on the disc: its path relative to the chosen folder ('/'-separated) and size."""

    path: str
    size: int


def relative_path(raw: str) -> str:
    """Normalise a browser-supplied relative path: '/' separators, no empty or '.' parts.

    `webkitRelativePath` starts with the chosen folder's own name; callers strip that
    before calling, so both ways of choosing a folder yield identical listings.
    """
    parts = [p for p in raw.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"not a relative file path: {raw!r}")
    return "/".join(parts)


class DiscReadError(OSError):
    """A file on the disc could not be read; the message is for the patient, in plain words."""


class DiscReader(Protocol):
    """Reads bytes of the disc's files; the browser and the tests each supply one."""

    async def read(self, path: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes of `path` from `offset`; raises DiscReadError when it cannot."""
