"""What the receiver lets anyone hold, and for how long: the public key is public, so every
limit here is one an anonymous sender on the internet runs into first, and a contribution
(a few uploads in flight, many small PATCHes, one final naming thousands of partials) never.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4
DAY = 24 * 3600.0

# Every upload costs its folder and its info.json whatever its length: charging a block for
# them makes a flood of empty uploads fill the quota instead of the file system's inodes.
RECORD_BYTES = 4 * KiB
# Below this many free inodes nothing is created, whatever the quota says.
INODE_RESERVE = 10_000


@dataclass(frozen=True)
class Limits:
    """The receiver's limits; the defaults are `pcir-upload serve`'s.

    `quota`: bytes all uploads may hold together (declared lengths count from creation, so an
    accepted upload can always finish). `reserve`: free bytes the disk keeps, whatever the
    quota. A client is one remote address (behind a trusted proxy, the address it forwards);
    it may start `client_creations` uploads a minute and have `client_uploads` unfinished at
    once; one contribution (one `Pcir-Upload-Secret`) may have `secret_uploads` unfinished.
    Unfinished means still being written: complete partials waiting for their final don't
    count. Completed uploads are deleted `keep_completed` seconds after they completed
    (0: never), unfinished ones `expire_after` seconds after their last write.
    """

    quota: int = 256 * GiB
    reserve: int = 1 * GiB
    client_creations: int = 1200
    client_uploads: int = 64
    secret_uploads: int = 32
    expire_after: float = 7 * DAY
    keep_completed: float = 30 * DAY


_SIZE = re.compile(r"^(\d{1,15})([KMGT]?)i?B?$", re.IGNORECASE)
_UNITS = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}


def parse_size(text: str) -> int:
    """A byte count as an operator writes it: 500G, 1T, 64MiB, 4096 (binary units)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size (say 4096, 512M, 20G or 1T)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def format_size(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)
