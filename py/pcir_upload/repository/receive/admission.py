"""Whether the receiver takes a new upload, or more bytes: the quota, the disk's free-space
reserve, and what one client or one contribution may have going at once.

Refusals come before the disk is full, with an answer a tus client understands: 429 with
Retry-After (wait: your own uploads will finish) or 507 (the receiver is full for now).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread

from pcir_upload.repository.receive.index import UploadIndex
from pcir_upload.repository.receive.limits import INODE_RESERVE, RECORD_BYTES, Limits, format_size

# A client with too many uploads unfinished waits this long before asking again.
BUSY_RETRY_AFTER = 10
# How many clients the creation rate remembers; beyond, those whose budget is whole go first.
RATE_MEMORY = 10_000


class Refused(Exception):
    """The receiver does not take this now; the upload (if any) is left as it was."""


class TooMany(Refused):
    """Too many uploads from one client or one contribution: 429, with when to try again."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class ReceiverFull(Refused):
    """The quota or the disk's reserve is reached: 507."""


class CreationRate:
    """A token bucket per client: `per_minute` creations at once, then one every 60/per_minute s.

    Bounded: past RATE_MEMORY clients, the ones whose bucket has refilled are forgotten
    (forgetting them changes nothing), then the least recently seen.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.refill = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when), oldest first

    def take(self, client: str) -> float:
        """0 if `client` may create an upload now (and it is counted); else seconds to wait."""
        now = self.clock()
        tokens, when = self._buckets.pop(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - when) * self.refill)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.refill if self.refill else math.inf
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > RATE_MEMORY:
            self._forget(now)
        return wait

    def _forget(self, now: float) -> None:
        for client, (tokens, when) in list(self._buckets.items()):
            if tokens + (now - when) * self.refill >= self.capacity:
                del self._buckets[client]
        while len(self._buckets) > RATE_MEMORY:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)


def client_busy(limits: Limits) -> TooMany:
    return TooMany(f"This address has {limits.client_uploads} uploads unfinished already; "
                   "finish or cancel some first", BUSY_RETRY_AFTER)


def client_too_fast(limits: Limits, wait: float) -> TooMany:
    return TooMany(f"This address started {limits.client_creations} uploads in the last minute; slow down", wait)


def owner_busy(limits: Limits) -> TooMany:
    return TooMany(f"This contribution has {limits.secret_uploads} uploads unfinished already", BUSY_RETRY_AFTER)


def disk_free(path: Path) -> tuple[int, int]:
    """Free bytes and free inodes for an unprivileged writer, on `path`'s file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_favail


class Admission:
    def __init__(self, root: Path, limits: Limits, index: UploadIndex) -> None:
        self.root = root
        self.limits = limits
        self.index = index
        self.rate = CreationRate(limits.client_creations)

    async def creation(self, client: str | None, owner: str | None, length: int | None) -> None:
        """Raise unless a new upload of `length` bytes (None: deferred) may start now."""
        limits, index = self.limits, self.index
        if client is not None:
            if index.open_for_client(client) >= limits.client_uploads:
                raise client_busy(limits)
            wait = self.rate.take(client)
            if wait:
                raise client_too_fast(limits, wait)
        if owner is not None and index.open_for_owner(owner) >= limits.secret_uploads:
            raise owner_busy(limits)
        self.quota(RECORD_BYTES + (length or 0))
        await self.disk(length or 0)

    def quota(self, more: int) -> None:
        """Raise if `more` bytes would take the uploads past the quota."""
        if more > 0 and self.index.held + more > self.limits.quota:
            raise ReceiverFull(f"The receiver holds all it may ({format_size(self.limits.quota)}) "
                               "until the repository collects what it has; try again later")

    async def disk(self, more: int) -> None:
        """Raise if `more` bytes, beside every declared byte still to come, would eat into the
        disk's reserve (or its inodes run low)."""
        free, inodes = await anyio.to_thread.run_sync(disk_free, self.root)
        if free - self.index.pending - more < self.limits.reserve or inodes < INODE_RESERVE:
            raise ReceiverFull("The receiver's disk is nearly full; try again later")
