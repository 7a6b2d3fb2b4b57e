"""A contribution, start to finish: disc → package → sealed chunks → upload, and it finishes.

Data flows one way. The packager reads and compresses while earlier chunks are on the wire;
at most `parallel` sealed chunks are in flight and one more is being made, which keeps
memory flat whatever the size of the disc. Each chunk is its own partial upload where the
server offers concatenation, so two can travel at once and a chunk, once confirmed, is done
for good; servers without it get one upload appended to in order (see `tus`).

The patient can pause, resume and cancel (`Contribution`); the network can drop, the
laptop can sleep, the server can restart: `tus.Link` waits all of that out. Closing the
page is survived too: after every confirmed chunk `save_record` is handed a resumption
record (see `resumption`), and a later `Contribution(resume=record)` with the same disc
sends only what the server does not hold yet. Progress is reported from what the server
has confirmed, never from what was merely handed to the network.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from pcir_upload import __version__
from pcir_upload.page.disc.disc import DiscFile
from pcir_upload.page.seal.envelope import HEADER_SIZE, SUITE_HYBRID, Recipient, Sealer, message_overhead
from pcir_upload.page.seal.hpke import Primitives
from pcir_upload.page.package.levels import Levels
from pcir_upload.page.package.package import Packager, Packer
from pcir_upload.page.upload.resumption import (
    CONTINUING, DIFFERENT_DISC, DISC_CHANGED, KEY_CHANGED, PARTS_GONE, UNUSABLE,
    Chunk, DiscChanged, Record, RecordError, Resumption, Tracker, disc_fingerprint,
    new_secret, recipient_id,
)
from pcir_upload.page.upload.tus import (
    Link, Partial, PartsGone, Retry, Server, Target, Transport, Upload, UploadError,
    concatenate, default_timeout, discover, probe, terminate,
)

CHUNK_SIZE = 8 * 1024 * 1024
PARALLEL = 2  # one request at a time leaves a fast uplink idle between chunks
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SPEED_WINDOW = 10.0  # seconds of history behind the speed figure
_PROBES = 4  # HEADs at a time when checking what an interrupted upload left on the server
_CANCEL_GRACE = 2.0  # seconds a request in flight may still answer after the patient cancelled

CANCELLED = "The upload was cancelled. Nothing of it is kept on the repository."


async def sha256(data: bytes) -> bytes:
    """SHA-256 of a whole chunk. The browser passes WebCrypto's instead: native, and off the
    worker that frames and sends, where hashing three times per chunk cost a third of its time."""
    return hashlib.sha256(data).digest()


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
    # "sending", "paused", "waiting" (offline, or backing off), "finishing" (joining the
    # chunks on the server), "done"
    state: str = "sending"
    next_try: float | None = None  # while waiting: seconds until the next try, if known

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
    resumed_chunks: int = 0  # chunks an earlier session had sent, not sent again
    notices: list[str] = field(default_factory=list)  # what the patient was told on the way

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ContributionCancelled(UploadError):
    """The patient cancelled; the server was asked to delete everything of it."""


class _Speedometer:
    """Disc bytes per second over a sliding window, from confirmed progress only."""

    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])

    def restart(self, done: int) -> None:
        """Count from here: chunks found on the server, or time paused, are not speed."""
        self._samples = deque([(self._clock(), done)])

    def update(self, done: int) -> float | None:
        now = self._clock()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= _SPEED_WINDOW:
            self._samples.popleft()
        t0, d0 = self._samples[0]
        return (done - d0) / (now - t0) if now > t0 and done > d0 else None


class _StartAgain(Exception):
    """The interrupted upload cannot be continued: a new contribution begins."""


@dataclass
class _Plan:
    """One contribution's identity, and what the server already holds of it."""

    record: Record  # the identity, in the record's terms (its chunk lists are the old ones)
    target: Target
    old: Resumption | None = None
    known: set[str] = field(default_factory=set)  # every upload URL that may be ours
    parts: list[Partial] = field(default_factory=list)  # this session's, sent or being sent
    joined: str | None = None  # the final upload, once made


class Contribution:
    """One disc's contribution: `await run()` for the receipt; `pause()`, `resume()` and
    `await cancel()` from the page's buttons.

    Callbacks: `on_progress(Progress)` on every confirmed chunk and change of state;
    `save_record(dict | None)` with the resumption record after every confirmed chunk, None
    once it is of no more use (done, cancelled, or replaced by a new contribution);
    `wait_online()` returns when the network is back (default: at once); `on_notice(text)`
    with plain sentences for the patient ("the disc has changed, so ...").

    `resume` is a record an earlier session saved: with the same disc it continues that
    contribution, otherwise a new one begins and `on_notice` says why. `concatenation=False`
    forces the single-upload way even where the server offers partial uploads.
    """

    def __init__(
        self,
        *,
        listing: Sequence[DiscFile],
        packer: Packer,
        manifest: dict[str, Any],
        recipient: Recipient,
        primitives: Primitives,
        transport: Transport,
        endpoint: str,
        on_progress: Callable[[Progress], None] = lambda progress: None,
        save_record: Callable[[dict[str, Any] | None], None] | None = None,
        resume: dict[str, Any] | None = None,
        wait_online: Callable[[], Awaitable[None]] | None = None,
        on_notice: Callable[[str], None] | None = None,
        parallel: int = PARALLEL,
        chunk_size: int = CHUNK_SIZE,
        retry: Retry = Retry(),
        timeout: Callable[[int], float] = default_timeout,
        digest: Callable[[bytes], Awaitable[bytes]] = sha256,
        concatenation: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self._listing = listing
        self._packer = packer
        self._manifest = manifest
        self._recipient = recipient
        self._primitives = primitives
        self._endpoint = endpoint
        self._on_progress = on_progress
        self._save_record = save_record
        self._resume = resume
        self._on_notice = on_notice
        self._parallel = parallel
        self._chunk_size = chunk_size
        self._concatenation = concatenation
        self._digest = digest
        self._clock = clock
        self._link = Link(
            transport, retry=retry, wait_online=wait_online, timeout=timeout, sleep=sleep,
            clock=clock, on_wait=self._on_wait,
        )
        self._files_total = len(listing)
        self._disc_total = sum(f.size for f in listing)
        self._speedometer = _Speedometer(clock)
        self._work: asyncio.Future[Receipt] | None = None
        self._finished = asyncio.Event()
        self._cancelling = False
        self._plan: _Plan | None = None
        self._single: Upload | None = None
        self._finishing = False
        self._waits = 0
        self._next_try_at: float | None = None  # the clock's time of the next try, while waiting
        self._moved = asyncio.Event()  # the contiguous prefix of confirmed chunks grew
        self.state = "new"
        self.notices: list[str] = []
        self._reset_counts()

    # --- the page's buttons

    async def run(self) -> Receipt:
        """Package, seal and upload; returns once the server holds the whole contribution.

        Raises UploadError (in words for the patient) when it cannot finish, and
        ContributionCancelled after `cancel()`. Cancelling this task itself (the page is
        going away) stops at once and keeps the resumption record.
        """
        if self._work is not None:
            raise RuntimeError("a contribution runs once")
        self._work = asyncio.ensure_future(self._contribute())
        if self._cancelling:
            self._work.cancel()
        try:
            receipt = await self._work
        except asyncio.CancelledError:
            if not self._cancelling:
                raise
            await self._terminate_all()
            self._save(None)
            self.state = "cancelled"
            raise ContributionCancelled(CANCELLED) from None
        except UploadError:
            self.state = "failed"
            raise
        finally:
            self._finished.set()
        self.state = "done"
        return receipt

    def pause(self) -> None:
        """Stop sending now (requests in flight are aborted); `resume()` goes on from what the
        server confirmed. Before `run()` too: it then sends nothing until resumed."""
        if self.state in ("new", "sending", "waiting", "finishing"):
            self._link.pause()
            self._report()

    def resume(self) -> None:
        if self._link.paused:
            self._link.resume()
            self._speedometer.restart(self._disc_done)
            self._report()

    async def cancel(self) -> None:
        """Stop, and ask the server to delete everything it holds of this contribution.

        `run()` then raises ContributionCancelled. Best effort: what cannot be deleted now
        (the network is down) expires on the server."""
        self._cancelling = True
        if self._work is None or self._work.done():
            return
        await self._link.settle(_CANCEL_GRACE)
        if not self._work.done():
            self._work.cancel()
        await self._finished.wait()

    # --- the way through

    async def _contribute(self) -> Receipt:
        self.state = "sending"
        server = await discover(self._link, self._endpoint)
        if not (server.concatenation and self._concatenation):
            if self._resume is not None:
                self._save(None)  # partial uploads cannot be continued as one upload
            return await self._send_single(server)
        plan = await self._resumed(server) if self._resume is not None else None
        if plan is None:
            plan = self._new_plan(server)
        while True:
            try:
                return await self._send_partials(plan)
            except _StartAgain as again:
                self._notice(str(again))
                await self._abandon(plan)
                plan = self._new_plan(server)

    def _new_plan(self, server: Server) -> _Plan:
        salt = secrets.token_bytes(16)
        record = Record(
            contribution_id=secrets.token_bytes(16),
            secret=new_secret(),
            created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            endpoint=self._endpoint,
            recipient=recipient_id(self._recipient),
            chunk_size=self._chunk_size,
            salt=salt,
            disc=disc_fingerprint(salt, self._listing),
        )
        plan = _Plan(record, Target(self._endpoint, server, record.secret))
        self._plan = plan
        return plan

    async def _resumed(self, server: Server) -> _Plan | None:
        """The plan that continues the record's contribution, or None (and why, told)."""
        try:
            record = Record.from_json(self._resume)
        except RecordError:
            self._notice(UNUSABLE)
            self._save(None)
            return None
        plan = _Plan(record, Target(self._endpoint, server, record.secret), Resumption(record))
        plan.known.update(record.urls)
        self._plan = plan
        if disc_fingerprint(record.salt, self._listing) != record.disc:
            why = DIFFERENT_DISC
        elif record.recipient != recipient_id(self._recipient):
            why = KEY_CHANGED
        elif record.endpoint != self._endpoint:
            why = UNUSABLE
        elif record.complete:
            return plan  # only the joining was missing: _send_partials asks for it first
        elif not await self._all_there(plan):
            why = PARTS_GONE
        else:
            return plan  # "continuing" is said once the disc has proven to be the same
        self._notice(why)
        await self._abandon(plan)
        return None

    async def _all_there(self, plan: _Plan) -> bool:
        """HEAD every partial the record names: all still there and complete?"""
        slots = asyncio.Semaphore(_PROBES)
        missing = False

        async def check(url: str) -> None:
            nonlocal missing
            async with slots:
                if missing:
                    return
                found = await probe(self._link, plan.target, url)
                if found is None or found[0] != found[1]:
                    missing = True

        async with asyncio.TaskGroup() as group:
            for url in plan.record.urls:
                group.create_task(check(url))
        return not missing

    async def _abandon(self, plan: _Plan) -> None:
        """Delete what the server holds of a contribution that will not be finished, and
        forget its record: its partials could never be joined any more."""
        self._save(None)
        await self._terminate(plan)
        self._reset_counts()
        self._plan = None

    # --- partial uploads, a few at a time

    async def _send_partials(self, plan: _Plan) -> Receipt:
        record, old = plan.record, plan.old
        levels = Levels(old.record.levels, old.record.leveled, self._clock) if old else Levels(clock=self._clock)
        packager = self._packager(record, levels)
        sealer = Sealer(self._primitives, self._recipient, record.contribution_id)
        tracker = Tracker(record, levels, old.record.others if old else ())
        joined_before = old is not None and old.record.complete
        if joined_before:
            assert old is not None
            plan.joined = await self._join(plan, old.record.ordered_urls())
            self._notice(CONTINUING)
        slots = asyncio.Semaphore(self._parallel)
        urls: dict[int, str] = {}
        verified = False

        async def store(part: Partial, chunk: Chunk, disc_done: tuple[int, int]) -> None:
            try:
                await part.store(self._link, plan.target)
            finally:
                slots.release()
            assert part.url is not None
            plan.known.add(part.url)
            urls[part.index] = part.url
            tracker.confirmed(part.index, part.url)
            # The record first: once the page shows a chunk as sent, closing it must not lose it.
            self._save(tracker.record().to_json())
            self._confirmed(part.index, part.length or 0, disc_done, sent=True)

        self._report()
        final_index = 0
        try:
            async with asyncio.TaskGroup() as group:
                async for chunk, plaintext, disc_done in self._chunks(packager, tracker):
                    final_index = chunk.index
                    sealed_size = len(plaintext) + HEADER_SIZE + message_overhead(self._recipient.suite)
                    if plan.joined is not None:  # already joined: only counting, for the receipt
                        self._confirmed(chunk.index, sealed_size, disc_done, sent=False)
                        continue
                    url = old.check(chunk) if old is not None else None
                    tracker.checked(chunk.index)
                    if url is not None:
                        urls[chunk.index] = url
                        tracker.confirmed(chunk.index, url)
                        self._confirmed(chunk.index, sealed_size, disc_done, sent=False)
                        continue
                    if old is not None and not verified:
                        verified = True  # everything before this chunk is proven the same
                        self._notice(CONTINUING)
                        self._speedometer.restart(self._disc_done)
                    sealer.index = chunk.index
                    sealed = await sealer.seal(plaintext, chunk.final)
                    waiting = time.monotonic()
                    await self._window(chunk.index)
                    await slots.acquire()
                    levels.waited(True, time.monotonic() - waiting)
                    checksum = await self._digest(sealed) if plan.target.server.sha256 else None
                    part = Partial(chunk.index, sealed, checksum=checksum)
                    plan.parts.append(part)
                    group.create_task(store(part, chunk, disc_done))
                if old is not None:
                    old.finish(final_index)
        except BaseExceptionGroup as failure:
            error = _first(failure)
            if isinstance(error, DiscChanged):
                raise _StartAgain(DISC_CHANGED) from None
            raise error from None

        if plan.joined is None:
            if old is not None:
                for url in old.stale:
                    await terminate(self._link, plan.target, url)
            self._finishing = True
            self._report()
            try:
                plan.joined = await self._join(plan, [urls[i] for i in range(final_index + 1)])
            finally:
                self._finishing = False
        self._save(None)
        self._report(done=True)
        reused = final_index + 1 if joined_before else old.reused if old is not None else 0
        return self._receipt(record, packager, final_index + 1, reused)

    async def _window(self, index: int) -> None:
        """Start chunk `index` only within a few chunks of the first one not confirmed: a chunk
        that keeps failing must not let the others run far ahead (the record lists chunks
        confirmed out of order one by one)."""
        while True:
            self._moved.clear()
            if index < self._prefix + 2 * self._parallel:
                return
            await self._moved.wait()

    async def _join(self, plan: _Plan, urls: list[str]) -> str:
        try:
            return await concatenate(self._link, plan.target, urls)
        except PartsGone:
            if plan.old is None:
                # This session's own chunks vanished: starting again could only repeat that.
                raise UploadError(
                    "The repository no longer holds part of this upload. Please try again later."
                ) from None
            raise _StartAgain(PARTS_GONE) from None

    async def _chunks(
        self, packager: Packager, tracker: Tracker
    ) -> AsyncIterator[tuple[Chunk, bytes, tuple[int, int]]]:
        """The package cut into plaintext chunks, each with (files, disc bytes) done at its end.

        Cut only while more than a chunk is pending, so the final chunk is never empty. A
        piece of the package (up to 4 MiB of one file, compressed) may end a chunk or more:
        each is credited with its share of the piece's disc bytes, not all of them, so that
        progress does not run ahead of the chunks confirmed."""
        size = self._chunk_size
        pending = bytearray()
        produced = 0  # package bytes before pending[0]
        manifest_at: int | None = None  # where the manifest entry starts in the package
        index = 0
        disc_before = 0  # disc bytes read before the current piece
        async for piece in packager.stream():
            start = produced + len(pending)  # the piece's place in the package
            if manifest_at is None and packager.files_done == self._files_total:
                manifest_at = start  # the first piece after the last file
            disc_after = packager.bytes_read
            pending += piece
            while len(pending) > size:
                view = memoryview(pending)
                plaintext = bytes(view[:size])  # one copy, where pending[:size] made two
                view.release()
                del pending[:size]
                produced += size
                holds_manifest = manifest_at is not None and manifest_at < produced
                chunk = tracker.produced(index, await self._digest(plaintext), False, holds_manifest)
                share = (disc_after - disc_before) * (produced - start) // len(piece)
                yield chunk, plaintext, (packager.files_done, disc_before + share)
                index += 1
            disc_before = disc_after
        plaintext = bytes(pending)
        chunk = tracker.produced(index, await self._digest(plaintext), True, True)
        yield chunk, plaintext, (self._files_total, self._disc_total)

    # --- one upload, in order (servers without concatenation)

    async def _send_single(self, server: Server) -> Receipt:
        contribution_id = secrets.token_bytes(16)
        record = Record(
            contribution_id, "", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            self._endpoint, "", self._chunk_size, b"", "",
        )
        levels = Levels(clock=self._clock)
        packager = self._packager(record, levels)
        sealer = Sealer(self._primitives, self._recipient, contribution_id)
        # No upload secret: a server without concatenation is not ours, and may not let the
        # header through. Nor a resumption record: a chunk cut halfway could not be resealed
        # byte for byte, so a later session could not continue inside it.
        upload = Upload(self._link, Target(self._endpoint, server))
        self._single = upload
        await upload.create()
        self._report()
        queue: asyncio.Queue[tuple[bytes, bool, tuple[int, int]]] = asyncio.Queue(maxsize=1)
        chunks = 0

        async def produce() -> None:
            tracker = Tracker(record, levels)
            async for chunk, plaintext, disc_done in self._chunks(packager, tracker):
                sealed = await sealer.seal(plaintext, chunk.final)
                waiting = time.monotonic()
                await queue.put((sealed, chunk.final, disc_done))
                levels.waited(True, time.monotonic() - waiting)

        async def send() -> None:
            nonlocal chunks
            while True:
                sealed, final, disc_done = await queue.get()
                await upload.append(sealed, final)
                self._confirmed(chunks, len(sealed), disc_done, sent=True)
                chunks += 1
                if final:
                    return

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(produce())
                group.create_task(send())
        except BaseExceptionGroup as failure:
            raise _first(failure) from None
        self._report(done=True)
        return self._receipt(record, packager, chunks, 0)

    # --- bookkeeping

    def _packager(self, record: Record, levels: Levels) -> Packager:
        manifest = {
            **self._manifest,
            "contribution_id": record.contribution_id.hex(),
            "created": record.created,
            "client": {"name": "pcir-upload", "version": __version__},
        }
        return Packager(self._listing, self._packer, manifest, levels)

    def _reset_counts(self) -> None:
        self._marks: dict[int, tuple[int, int, int]] = {}  # confirmed chunks beyond the prefix
        self._prefix = 0  # chunks 0..n-1 all confirmed
        self._files_done = self._disc_done = self._bytes_sent = 0
        self._speed: float | None = None
        self._speedometer.restart(0)

    def _confirmed(self, index: int, size: int, disc_done: tuple[int, int], sent: bool) -> None:
        """Count a chunk the server holds; progress moves with the contiguous prefix only, so
        it never runs ahead of a chunk still in flight."""
        self._marks[index] = (size, *disc_done)
        while self._prefix in self._marks:
            size, self._files_done, self._disc_done = self._marks.pop(self._prefix)
            self._bytes_sent += size
            self._prefix += 1
            self._moved.set()
        if sent:
            self._speed = self._speedometer.update(self._disc_done)
        else:
            self._speedometer.restart(self._disc_done)
        self._report()

    def _on_wait(self, waiting: bool, seconds: float | None) -> None:
        if waiting:
            self._waits += 1
            self._next_try_at = None if seconds is None else self._clock() + seconds
        else:
            self._waits -= 1
        self._report()

    def _report(self, done: bool = False) -> None:
        if done:
            state = "done"
        elif self._link.paused:
            state = "paused"
        elif self._waits:
            state = "waiting"
        elif self._finishing:
            state = "finishing"
        else:
            state = "sending"
        if self.state not in ("new", "cancelled", "failed"):
            self.state = state
        left = None
        if self._speed and not done:
            left = (self._disc_total - self._disc_done) / self._speed
        self._on_progress(Progress(
            self._files_total if done else self._files_done, self._files_total,
            self._disc_total if done else self._disc_done, self._disc_total,
            self._bytes_sent, self._speed, left, done=done, state=state,
            # From now, not from when the wait began: a report in the middle of a wait (another
            # upload's progress) must not set the page's countdown back.
            next_try=(max(0.0, self._next_try_at - self._clock())
                      if state == "waiting" and self._next_try_at is not None else None),
        ))

    def _notice(self, text: str) -> None:
        self.notices.append(text)
        if self._on_notice is not None:
            self._on_notice(text)

    def _save(self, record: dict[str, Any] | None) -> None:
        if self._save_record is not None:
            self._save_record(record)

    async def _terminate(self, plan: _Plan) -> None:
        urls = sorted(plan.known | {p.url for p in plan.parts if p.url is not None})
        slots = asyncio.Semaphore(_PROBES)

        async def delete(url: str) -> None:
            async with slots:
                await terminate(self._link, plan.target, url)

        await asyncio.gather(*(delete(url) for url in urls))
        # A chunk whose creation answer was lost is on the server under an address this
        # client never learned: the whole contribution's uploads go by their secret.
        await terminate(self._link, plan.target, self._endpoint)
        plan.known.clear()
        plan.parts.clear()

    async def _terminate_all(self) -> None:
        if self._plan is not None and self._plan.joined is None:
            await self._terminate(self._plan)
        if self._single is not None:
            await self._single.terminate()

    def _receipt(self, record: Record, packager: Packager, chunks: int, reused: int) -> Receipt:
        return Receipt(
            contribution_id=record.contribution_id.hex(),
            code=receipt_code(record.contribution_id),
            files=self._files_total,
            disc_bytes=self._disc_total,
            bytes_sent=self._bytes_sent,
            chunks=chunks,
            post_quantum=self._recipient.suite == SUITE_HYBRID,
            unreadable=[r for r in packager.records if "error" in r],
            resumed_chunks=reused,
            notices=list(self.notices),
        )


def _first(group: BaseExceptionGroup) -> BaseException:
    """The story of a failed task group: the first real failure (an upload error, a changed
    disc), not the cancellations it caused."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


async def contribute(**options: Any) -> Receipt:
    """Package, seal and upload one disc; returns once the server confirmed the last byte.

    The keyword arguments are `Contribution`'s. `manifest` carries what the page knows
    (terms, summary); the id, time and client are added here.
    """
    return await Contribution(**options).run()
