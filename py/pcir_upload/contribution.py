"""A contribution, start to finish: disc → package → sealed chunks → upload.

Data flows one way. The packager reads and compresses while the previous chunk is on the
wire; a queue of two sealed chunks between them is the backpressure that keeps memory flat
whatever the size of the disc. Progress is reported from what the server has confirmed,
never from what was merely handed to the network.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from . import __version__
from .disc import DiscFile, DiscReader
from .envelope import SUITE_HYBRID, Recipient, Sealer
from .hpke import Primitives
from .package import Packager
from .tus import Transport, Upload

CHUNK_SIZE = 4 * 1024 * 1024
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SPEED_WINDOW = 10.0  # seconds of history behind the speed figure


def receipt_code(contribution_id: bytes) -> str:
    """A short code the patient can quote: 40 bits of the contribution id, Crockford base32."""
    n = int.from_bytes(contribution_id[:5], "big")
    chars = "".join(_CROCKFORD[(n >> shift) & 31] for shift in range(35, -1, -5))
    return f"{chars[:4]}-{chars[4:]}"


@dataclass
class Progress:
    files_done: int
    files_total: int
    disc_bytes_done: int  # disc bytes whose sealed chunks the server has confirmed
    disc_bytes_total: int
    bytes_sent: int  # encrypted bytes the server has confirmed
    speed: float | None  # disc bytes per second over the last few seconds
    seconds_left: float | None
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Receipt:
    contribution_id: str
    code: str
    files: int
    disc_bytes: int
    bytes_sent: int
    chunks: int
    post_quantum: bool  # sealed with the hybrid ML-KEM-768 + X25519 suite
    unreadable: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Speedometer:
    """Disc bytes per second over a sliding window, from confirmed progress only."""

    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])

    def update(self, done: int) -> float | None:
        now = self._clock()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= _SPEED_WINDOW:
            self._samples.popleft()
        t0, d0 = self._samples[0]
        return (done - d0) / (now - t0) if now > t0 else None


async def contribute(
    *,
    listing: Sequence[DiscFile],
    reader: DiscReader,
    manifest: dict[str, Any],
    recipient: Recipient,
    primitives: Primitives,
    transport: Transport,
    endpoint: str,
    on_progress: Callable[[Progress], None],
    level: int = 1,
    chunk_size: int = CHUNK_SIZE,
    clock: Callable[[], float] = time.monotonic,
) -> Receipt:
    """Package, seal and upload one disc; returns once the server confirmed the last byte.

    `manifest` carries what the page knows (terms, summary); the id, time and client are
    added here.
    """
    contribution_id = secrets.token_bytes(16)
    manifest = {
        **manifest,
        "contribution_id": contribution_id.hex(),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "client": {"name": "pcir-upload", "version": __version__},
    }
    packager = Packager(listing, reader, manifest, level=level)
    sealer = Sealer(primitives, recipient, contribution_id)
    upload = Upload(transport, endpoint)
    files_total = len(listing)
    disc_total = sum(f.size for f in listing)
    speedometer = _Speedometer(clock)
    queue: asyncio.Queue[tuple[bytes, bool, int, int]] = asyncio.Queue(maxsize=2)

    async def produce() -> None:
        pending = bytearray()
        async for piece in packager.stream():
            pending += piece
            # Cut only while more than a chunk is pending, so the final chunk is never empty.
            while len(pending) > chunk_size:
                sealed = await sealer.seal(bytes(pending[:chunk_size]), final=False)
                del pending[:chunk_size]
                await queue.put((sealed, False, packager.files_done, packager.bytes_read))
        sealed = await sealer.seal(bytes(pending), final=True)
        await queue.put((sealed, True, files_total, disc_total))

    async def send() -> None:
        await upload.create()
        on_progress(Progress(0, files_total, 0, disc_total, 0, None, None))
        while True:
            sealed, final, files_done, disc_done = await queue.get()
            await upload.append(sealed, final)
            speed = speedometer.update(disc_done)
            left = (disc_total - disc_done) / speed if speed else None
            on_progress(Progress(
                files_done, files_total, disc_done, disc_total, upload.offset,
                speed, left, done=final,
            ))
            if final:
                return

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(produce())
            group.create_task(send())
    except BaseExceptionGroup as failure:
        # The first failure is the story (an upload error, say); the other task was cancelled.
        raise failure.exceptions[0] from None

    return Receipt(
        contribution_id=contribution_id.hex(),
        code=receipt_code(contribution_id),
        files=files_total,
        disc_bytes=disc_total,
        bytes_sent=upload.offset,
        chunks=sealer.index,
        post_quantum=recipient.suite == SUITE_HYBRID,
        unreadable=[r for r in packager.records if "error" in r],
    )
