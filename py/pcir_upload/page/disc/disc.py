"""What the patient pointed the page at: a disc (CD, folder, USB stick) as a flat listing of files.

The browser hands over files two ways (a directory handle, or `<input webkitdirectory>`);
both end up here as the same listing, so nothing downstream knows which one it was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


# A package path is relative, '/'-separated, and harmless on any file system the repository
# may unpack on: no empty, '.' or '..' part, no drive letter, no backslash, no control
# character. The page and `unpack` apply this one rule, so what the page sends always unpacks.
MAX_PATH_BYTES = 4096
_DRIVE = re.compile(r"^[A-Za-z]:")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class DiscFile:
    """One file on the disc: its package path, its size, its own name if that had to change,
    and what the scan found it to be (see discovery's roles; "document" for the patient's
    scanned papers), which the manifest records."""

    path: str
    size: int
    original: str | None = None
    role: str | None = None


def path_problem(path: str) -> str | None:
    """Why `path` may not name a file in a package, or None when it may."""
    if not path or len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return "it is empty or too long"
    if path.startswith("/") or _DRIVE.match(path):
        return "it is not relative"
    if _UNSAFE.search(path):
        return "it holds a control character or a backslash"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "it has an empty, '.' or '..' part"
    return None


def package_path(raw: str) -> str:
    """The package path for a browser-given relative path, changed only where the rule demands.

    Browser paths are '/'-separated already; a backslash is a character of a name there.
    """
    parts = [_UNSAFE.sub("_", p) for p in _unicode(raw).split("/") if p not in ("", ".")]
    parts = ["_" if p == ".." else p for p in parts]
    if parts and _DRIVE.match(parts[0]):
        parts[0] = parts[0][0] + "_" + parts[0][2:]
    path = "/".join(parts)
    problem = path_problem(path)
    if problem:
        raise ValueError(f"{raw!r} cannot be a package path: {problem}")
    return path


def _unicode(raw: str) -> str:
    """JavaScript strings may hold lone surrogates (broken UTF-16 names); UTF-8 cannot."""
    return raw.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def make_listing(entries: Sequence[tuple[str, int]]) -> list[tuple[int, DiscFile]]:
    """The disc's listing from (browser path, size) pairs: sorted by path, each with its index.

    Both ways of choosing a folder give the same pairs in some order; sorting makes the same
    listing of them. A name that had to change keeps its original in the manifest; names that
    need no change keep theirs, and changed ones that collide are numbered, so no file is
    ever dropped.
    """
    paths = [package_path(raw) for raw, _ in entries]
    files: list[DiscFile | None] = [None] * len(entries)
    taken: set[str] = set()
    for index, (path, (raw, size)) in enumerate(zip(paths, entries)):
        if path == raw and path not in taken:
            taken.add(path)
            files[index] = DiscFile(path, size)
    for index, (path, (raw, size)) in enumerate(zip(paths, entries)):
        if files[index] is None:
            candidate, n = path, 1
            while path in taken:
                n += 1
                path = f"{candidate} ({n})"
            taken.add(path)
            files[index] = DiscFile(path, size, _unicode(raw))
    return sorted(enumerate(files), key=lambda pair: pair[1].path)  # type: ignore[union-attr]


class DiscReadError(OSError):
    """A file on the disc could not be read; the message is for the patient, in plain words."""


class DiscReader(Protocol):
    """Reads bytes of the disc's files; the browser and the tests each supply one."""

    async def read(self, path: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes of `path` from `offset`; raises DiscReadError when it cannot."""

    async def read_heads(self, paths: Sequence[str], length: int) -> list[bytes | DiscReadError]:
        """The first `length` bytes (fewer for short files) of each path, in order, in one call.

        A file that cannot be read gets its DiscReadError in its place; the others still come.
        One call per batch because each call from Python into the browser costs milliseconds:
        a scan asks for at most 256 paths at a time.
        """
