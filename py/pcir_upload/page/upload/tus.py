"""The upload's protocol: tus 1.0.0, every request and every retry decided here.

A contribution's sealed chunks reach the repository one of two ways, chosen by what the
server offers (OPTIONS, `Tus-Extension`):

- with `concatenation` (our receiver, tusd): each chunk is its own *partial* upload, created
  empty so that its URL is known before any of its bytes travel, then appended to in
  pieces, at most a few chunks at a time; one `Upload-Concat: final;...` POST joins them in
  order at the end (`Partial`, `concatenate`);
- without it (@tus/server's file store): one upload created with `Upload-Defer-Length`, the
  chunks appended in order, in pieces too, the length declared with the last one (`Upload`).

Every piece carries its own checksum where the server offers one, so the server keeps every
piece that arrived whole and a cut costs at most the piece it cut: a chunk's bytes that
reached the server are never sent again.

Two things are kept apart on purpose. `Link` is the one way out to the network: it waits
while the patient has paused, waits for the network to come back, tries again at once after
a cut on a link that worked a moment ago and backs off with jitter only while the server or
network stays away, respects `Retry-After`, times out stalled requests, gives up, in plain
words, once nothing has moved for too long, and sizes the pieces to what the link carries
(`Pace`). `Partial.store` and `Upload.append` are the state machines: after anything goes
wrong they ask the server (HEAD) what it really holds and go on from there, so no byte is
stored twice and none is skipped. The transport (the browser's fetch, httpx in tests) only
moves bytes.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urljoin, urlsplit

TUS_VERSION = "1.0.0"
CHUNK_TYPE = "application/offset+octet-stream"
SECRET_HEADER = "Pcir-Upload-Secret"
# Worth trying again: the server or something on the way is busy, restarting or overloaded.
# 460 is tus's "checksum mismatch": the bytes were damaged on the way and none were kept.
RETRY_STATUSES = frozenset({408, 423, 429, 460, 500, 502, 503, 504})
GONE_STATUSES = frozenset({404, 410})

KEPT_FAILING = (
    "The connection to the repository kept failing. Your files are safe on your computer; "
    "please check your internet connection and try again."
)
UNREACHABLE = (
    "The repository could not be reached. Please check your internet connection and try again."
)


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names in lower case


class TransportError(Exception):
    """No HTTP answer at all: the network dropped, the server was away, or the request stalled."""


class Transport(Protocol):
    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> Response:
        """Send one request; raise TransportError when no answer comes back.

        Cancelling the task that awaits this must abort the request (the browser's transport
        turns it into an AbortController abort): that is how pausing stops bytes at once.
        """


class UploadError(Exception):
    """The upload cannot go on. The message is written for the patient."""


class PartsGone(UploadError):
    """The server no longer holds uploads this contribution relies on (expired, or deleted)."""


class _NoAnswer(enum.Enum):
    """Why a request brought no HTTP answer; the state machines treat both as "ask again"."""

    NETWORK = "network"  # refused, reset, timed out: count it, wait, then ask the server
    PAUSED = "paused"  # the patient paused: nothing failed, so nothing is counted


NETWORK = _NoAnswer.NETWORK
PAUSED = _NoAnswer.PAUSED
Answer = Response | _NoAnswer


@dataclass(frozen=True)
class Retry:
    """How patient the upload is. After a cut (no answer, or the server busy with the request
    that was cut) the first `at_once` failures since the last confirmed byte are tried again
    at once; beyond them, and after the server says it is unwell, delays double from
    `first_delay` up to `max_delay`, each drawn from 50–150 % of its value so that many
    patients cut off at once do not all return at once; after `give_up_after` seconds of failures without a single confirmed byte (not
    counting time paused or offline) the upload stops and says so."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    give_up_after: float = 600.0
    # Failures tried again without waiting, after the server last confirmed something: a cut
    # on a link that worked a moment ago is most likely over by the time we ask again.
    at_once: int = 3

    def delay(self, attempt: int, jitter: float) -> float:
        return min(self.max_delay, self.first_delay * 2 ** min(attempt, 30)) * (0.5 + jitter)


# Failures worth trying again at once (while `Retry.at_once` allows): the connection broke,
# the server is still busy with the request that broke (423), or a body arrived damaged (460).
AT_ONCE_STATUSES = frozenset({423, 460})


class Pace:
    """How many bytes the next piece carries: as many as the link has shown it can carry.

    It starts small, doubles with every piece the server confirms, and halves after a cut,
    never to less than `least`. Two limits keep what a cut can cost small (a cut piece is
    lost whole where it is checksummed): a piece should take no more than `seconds` at the
    speed pieces have been arriving, and be no more than an eighth of what got through between
    the last two cuts (a link that drops every megabyte gets pieces of 128 KiB), or of a
    quarter of what got through since the last one, if that is more (one that stops dropping
    gets larger ones as it goes on carrying). Not every cut is seen here: the browser silently
    sends a request again whose kept-alive connection broke, so the limits err small. On a link that never drops, pieces soon hold a
    whole chunk."""

    def __init__(self, first: int = 256 * 1024, least: int = 64 * 1024,
                 most: int = 16 * 1024 * 1024, seconds: float = 1.0):
        self.size = first
        self._least, self._most, self._seconds = least, most, seconds
        self._since_cut = 0  # body bytes confirmed since the last cut
        self._between_cuts: int | None = None  # and between the two cuts before, once seen

    def carried(self, nbytes: int, seconds: float) -> None:
        """A piece of `nbytes` was confirmed, `seconds` after it was sent."""
        self._since_cut += nbytes
        size = 2 * self.size
        if seconds > 0:
            size = min(size, int(nbytes / seconds * self._seconds))
        if self._between_cuts is not None:
            size = min(size, max(self._between_cuts, self._since_cut // 4) // 8)
        self.size = max(self._least, min(self._most, size))

    def cut(self) -> None:
        """A piece got no answer: the link broke under it."""
        self._between_cuts, self._since_cut = self._since_cut, 0
        self.size = max(self._least, min(self.size // 2, self._between_cuts // 8))


def default_timeout(body_size: int) -> float:
    """A safety net behind the transport's own timeout: a request that has not finished in
    this time is stalled. Generous, so that a slow home uplink (8 KB/s) still gets through."""
    return 60.0 + body_size / 8192


class Link:
    """Every request of one contribution goes out through here, and every failure comes back
    here: the one place that knows whether to wait, how long, and when to give up.

    `wait_online` returns when the network is believed to be there (the browser resolves it
    when `navigator.onLine` comes back); while it is pending, the upload waits for it instead
    of spending its patience on requests that cannot work. `on_wait(True, seconds)` is told
    when a wait begins (seconds until the next try, or None while offline), and
    `on_wait(False, None)` when it ends and the upload tries again. A failure tried again at
    once is no wait, and is not told.

    `piece()` is how many bytes the next request that carries a body should carry (see
    `Pace`); every such request's fate feeds it.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        retry: Retry = Retry(),
        wait_online: Callable[[], Awaitable[None]] | None = None,
        timeout: Callable[[int], float] = default_timeout,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        on_wait: Callable[[bool, float | None], None] | None = None,
        pace: Pace | None = None,
    ):
        self._transport = transport
        self.retry = retry
        self._wait_online = wait_online
        self._timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._on_wait = on_wait
        self._open = asyncio.Event()
        self._open.set()
        self._inflight: set[asyncio.Future[Response]] = set()
        self._interrupted: set[asyncio.Future[Response]] = set()
        self._failing_since: float | None = None
        self._at_once = retry.at_once  # failures left to try again at once
        self._backoffs = 0  # waits since the server last confirmed something
        self._pace = pace or Pace()
        self.retries = 0  # failures tried again, for the record

    @property
    def paused(self) -> bool:
        return not self._open.is_set()

    def pause(self) -> None:
        """Abort every request in flight and send nothing until `resume()`."""
        self._open.clear()
        for request in list(self._inflight):
            self._interrupted.add(request)
            request.cancel()

    async def settle(self, grace: float) -> None:
        """Send nothing new, and give the requests in flight up to `grace` seconds to answer.

        Before a cancel: a chunk whose creation has already reached the server then learns
        its Location, so it can be deleted rather than left to expire unknown."""
        self._open.clear()
        pending = [r for r in self._inflight if not r.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace)
        for _ in range(3):
            await asyncio.sleep(0)  # let their callers take the answers in

    def resume(self) -> None:
        self._recovered()  # a pause is not a failure: patience starts afresh
        self._open.set()

    def progressed(self) -> None:
        """The server confirmed something: whatever failed before has recovered."""
        self._recovered()

    def _recovered(self) -> None:
        self._failing_since = None
        self._at_once = self.retry.at_once
        self._backoffs = 0

    def piece(self) -> int:
        """Bytes the next piece should carry."""
        return self._pace.size

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        gated: bool = True,
    ) -> Answer:
        """One request: its answer, NETWORK when none came, PAUSED when `pause()` cut it off.

        `gated=False` goes out even while paused (terminating uploads after a cancel).
        """
        if gated:
            await self._open.wait()
        request = asyncio.ensure_future(self._send(method, url, headers, body))
        self._inflight.add(request)
        sent = self._clock()
        try:
            answer: Answer = await request
        except asyncio.CancelledError:
            if request in self._interrupted:
                return PAUSED  # pause() aborted it; we ourselves go on
            raise
        except (TransportError, TimeoutError):
            answer = NETWORK
        finally:
            self._inflight.discard(request)
            self._interrupted.discard(request)
        if body:
            if answer is NETWORK or isinstance(answer, Response) and answer.status == 460:
                self._pace.cut()
            elif isinstance(answer, Response) and 200 <= answer.status < 300:
                self._pace.carried(len(body), self._clock() - sent)
        return answer

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Response:
        async with asyncio.timeout(self._timeout(len(body or b""))):
            return await self._transport.request(method, url, headers, body)

    async def wait_after(self, answer: Answer) -> None:
        """After a failed request: wait until it is worth trying again, or give up.

        The caller asks the server what it holds before it sends again. Failures are counted
        here, for the whole contribution, from the last byte the server confirmed: one chunk
        that keeps failing makes every chunk wait, as they share the link.
        """
        if answer is PAUSED:
            return  # the next request waits for resume(); nothing failed
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failing_since >= self.retry.give_up_after:
            raise UploadError(KEPT_FAILING)
        self.retries += 1
        if await self._offline():
            self._failing_since = None  # offline time is not the repository's failure
            return
        delay = _retry_after(answer)
        if delay is None and self._at_once > 0 and _cut(answer):
            self._at_once -= 1
            await asyncio.sleep(0)  # the link worked a moment ago: ask again now
            return
        if delay is None:
            delay = self.retry.delay(self._backoffs, self._jitter())
            self._backoffs += 1
        self._tell(True, delay)
        try:
            await self._sleep(delay)
        finally:
            self._tell(False, None)

    async def _offline(self) -> bool:
        """Wait for the network if it is known to be gone; True if it was."""
        if self._wait_online is None:
            return False
        online = asyncio.ensure_future(self._wait_online())
        try:
            await asyncio.sleep(0)  # one turn: an online network answers at once
            if online.done():
                if not online.cancelled():
                    online.exception()  # a broken wait_online is taken as "online"
                return False
            self._tell(True, None)
            try:
                await online
            finally:
                self._tell(False, None)
            return True
        finally:
            online.cancel()

    def _tell(self, waiting: bool, seconds: float | None) -> None:
        if self._on_wait is not None:
            self._on_wait(waiting, seconds)


def _cut(answer: Answer) -> bool:
    """The link broke under a request (or its remains still hold the server), rather than
    the server saying it is unwell."""
    return answer is NETWORK or isinstance(answer, Response) and answer.status in AT_ONCE_STATUSES


def _retry_after(answer: Answer) -> float | None:
    """Seconds the server asked us to wait (Retry-After: seconds or an HTTP date), if any."""
    if not isinstance(answer, Response):
        return None
    value = answer.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@dataclass(frozen=True)
class Server:
    """What the tus server offers, from its OPTIONS answer."""

    extensions: frozenset[str]
    checksums: frozenset[str] = frozenset()
    max_size: int | None = None

    @property
    def concatenation(self) -> bool:
        return "concatenation" in self.extensions

    @property
    def sha256(self) -> bool:
        return "checksum" in self.extensions and "sha256" in self.checksums


def _names(value: str | None) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in (value or "").split(",") if v.strip())


async def discover(link: Link, endpoint: str) -> Server:
    """Ask the server what it offers. One that does not answer OPTIONS is taken as core tus
    with creation: the single-upload way, which asks nothing more of it."""
    while True:
        answer = await link.request("OPTIONS", endpoint, {"Tus-Resumable": TUS_VERSION})
        if isinstance(answer, Response) and answer.status not in RETRY_STATUSES:
            if answer.status not in (200, 204):
                return Server(frozenset({"creation", "creation-defer-length", "termination"}))
            link.progressed()
            size = answer.headers.get("tus-max-size", "")
            return Server(
                _names(answer.headers.get("tus-extension")),
                _names(answer.headers.get("tus-checksum-algorithm")),
                int(size) if size.isdigit() else None,
            )
        try:
            await link.wait_after(answer)
        except UploadError:
            raise UploadError(UNREACHABLE) from None


@dataclass(frozen=True)
class Target:
    """Where this contribution's uploads go, and what every request about them carries."""

    endpoint: str
    server: Server
    secret: str | None = None  # Pcir-Upload-Secret: only its holder may touch these uploads

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"Tus-Resumable": TUS_VERSION, **extra}
        if self.secret is not None:
            headers[SECRET_HEADER] = self.secret
        return headers

    def body_headers(self, offset: int, body: bytes, checksum: bytes | None = None) -> dict[str, str]:
        """Headers of a request carrying `body` from `offset`; `checksum`, the body's SHA-256
        if the caller has it already."""
        headers = self.headers(**{"Content-Type": CHUNK_TYPE, "Upload-Offset": str(offset)})
        if self.server.sha256:
            digest = checksum if checksum is not None else hashlib.sha256(body).digest()
            headers["Upload-Checksum"] = "sha256 " + base64.b64encode(digest).decode()
        return headers

    def resolve(self, location: str) -> str:
        """An upload's URL from a Location header, absolute or relative (RFC 9110)."""
        return urljoin(self.endpoint, location)


class PartialState(enum.Enum):
    NEW = "new"  # the server holds nothing we know of
    STORING = "storing"  # the server has it at `url`, holding `offset` bytes
    COMPLETE = "complete"  # every byte confirmed


class Partial:
    """One sealed chunk as a partial upload (tus concatenation): `store()` it, then name it in
    `concatenate`.

    The partial is created empty, so its URL is known before any of its bytes travel, and
    the chunk follows in pieces (`Link.piece`), each confirmed on its own: after a cut, HEAD
    says how far the server got, and only the rest is sent. An empty creation whose answer
    was lost costs nothing but a new one; the server expires the orphan."""

    def __init__(self, index: int, data: bytes | None, url: str | None = None,
                 checksum: bytes | None = None):
        self.index = index
        self.data = data  # None once stored: memory stays bounded by the chunks in flight
        self._checksum = checksum  # SHA-256 of the whole chunk, if known
        self.length = len(data) if data is not None else None
        self.url = url
        self.offset = 0
        self.state = PartialState.NEW if url is None else PartialState.COMPLETE
        self.sent = 0  # body bytes handed to the network, for tests and the record

    async def store(self, link: Link, target: Target) -> None:
        """Returns once the server has confirmed every byte of the chunk."""
        data = self.data
        if data is None or self.length is None:
            raise RuntimeError("nothing to store")
        conflicts = 0
        ask = self.url is not None  # interrupted before (paused): ask first
        while self.state is not PartialState.COMPLETE:
            if self.url is None:
                headers = target.headers(**{"Upload-Concat": "partial", "Upload-Length": str(self.length)})
                answer = await link.request("POST", target.endpoint, headers)
                if isinstance(answer, Response) and answer.status == 201 and "location" in answer.headers:
                    self.url = target.resolve(answer.headers["location"])
                    self.state = PartialState.STORING
                    self._confirm(link, _offset(answer, default=0))
                    ask = False  # it holds what it says: nothing yet
                    continue
            elif ask:
                answer = await link.request("HEAD", self.url, target.headers())
                if isinstance(answer, Response) and answer.status == 200:
                    # The server's word is the truth: less than we thought (it lost bytes it
                    # had confirmed) is resent from here, as we still hold the whole chunk.
                    self._confirm(link, _offset(answer))
                    ask = False
                    continue
            else:
                piece = data[self.offset:self.offset + link.piece()]
                whole = len(piece) == self.length
                headers = target.body_headers(self.offset, piece, self._checksum if whole else None)
                self.sent += len(piece)
                answer = await link.request("PATCH", self.url, headers, piece)
                if isinstance(answer, Response) and answer.status == 204:
                    self._confirm(link, _offset(answer))
                    conflicts = 0
                    continue
                if isinstance(answer, Response) and answer.status == 409 and not conflicts:
                    conflicts += 1  # we are wrong about the offset: ask, at once
                    ask = True
                    continue
            if isinstance(answer, Response) and answer.status in GONE_STATUSES and self.url is not None:
                # Expired or removed before it was complete: this chunk starts over, whole.
                self.url, self.offset, self.state = None, 0, PartialState.NEW
                continue
            if isinstance(answer, Response) and answer.status not in RETRY_STATUSES | {409}:
                raise refused(answer, "store the upload")
            await link.wait_after(answer)
            ask = self.url is not None
        self.data = None

    def _confirm(self, link: Link, offset: int) -> None:
        assert self.length is not None
        if not 0 <= offset <= self.length:
            raise UploadError(f"The repository confirmed an impossible offset ({offset}).")
        if offset > self.offset:
            link.progressed()  # only news counts: a HEAD repeating the old offset does not
        self.offset = offset
        if offset == self.length:
            self.state = PartialState.COMPLETE


def concat_header(target: Target, urls: Iterable[str]) -> str:
    """`final;` and the partials, in chunk order, path-absolute where they are on the
    endpoint's own origin (what our receiver and tusd both accept)."""
    base = urlsplit(target.endpoint)
    refs = []
    for url in urls:
        parts = urlsplit(url)
        same = (parts.scheme, parts.netloc) == (base.scheme, base.netloc)
        refs.append(parts.path if same else url)
    return "final;" + " ".join(refs)


async def concatenate(link: Link, target: Target, urls: list[str]) -> str:
    """Join the partials into the final upload; returns its URL. A lost answer is asked
    again with the same list: the server answers with the same final upload."""
    headers = target.headers(**{"Upload-Concat": concat_header(target, urls)})
    while True:
        answer = await link.request("POST", target.endpoint, headers)
        if isinstance(answer, Response):
            if answer.status == 201 and "location" in answer.headers:
                link.progressed()
                return target.resolve(answer.headers["location"])
            if answer.status in GONE_STATUSES:
                raise PartsGone("The repository no longer holds part of this upload.")
            if answer.status not in RETRY_STATUSES:
                raise refused(answer, "finish the upload")
        await link.wait_after(answer)


async def probe(link: Link, target: Target, url: str) -> tuple[int, int | None] | None:
    """(offset, length) of an upload the server holds for us, or None when it is gone."""
    while True:
        answer = await link.request("HEAD", url, target.headers())
        if isinstance(answer, Response):
            if answer.status == 200:
                length = answer.headers.get("upload-length", "")
                return _offset(answer), int(length) if length.isdigit() else None
            if answer.status in GONE_STATUSES or answer.status == 403:
                return None
            if answer.status not in RETRY_STATUSES:
                raise refused(answer, "resume the upload")
        await link.wait_after(answer)


async def terminate(link: Link, target: Target, url: str, attempts: int = 3) -> bool:
    """Ask the server to delete an upload (tus termination); best effort, and quick: whatever
    stays behind expires on the server. True when it is gone."""
    for attempt in range(attempts):
        answer = await link.request("DELETE", url, target.headers(), gated=False)
        if isinstance(answer, Response):
            if answer.status in (200, 204) or answer.status in GONE_STATUSES:
                return True
            if answer.status not in RETRY_STATUSES:
                return False
        if attempt + 1 < attempts:
            await asyncio.sleep(min(link.retry.first_delay * 2**attempt, 2.0))
    return False


class State(enum.Enum):
    NEW = "new"
    CREATED = "created"
    DONE = "done"
    TERMINATED = "terminated"
    FAILED = "failed"


class Upload:
    """One resumable upload holding the whole stream (servers without concatenation):
    `create`, then `append` each chunk, the last with final=True. Each chunk goes in pieces,
    as a partial's does; the total length is declared by the first piece of the last chunk
    (a server such as @tus/server refuses to be told twice)."""

    def __init__(self, link: Link, target: Target):
        self._link = link
        self._target = target
        self.state = State.NEW
        self.url: str | None = None
        self.offset = 0  # bytes the server has confirmed it holds
        self.length: int | None = None  # the total, once the server knows it
        self.sent = 0  # body bytes handed to the network

    @property
    def retries(self) -> int:
        return self._link.retries

    async def create(self) -> None:
        if self.state is not State.NEW:
            raise RuntimeError(f"cannot create an upload that is {self.state.value}")
        while True:
            answer = await self._link.request(
                "POST", self._target.endpoint, self._target.headers(**{"Upload-Defer-Length": "1"})
            )
            if isinstance(answer, Response) and answer.status not in RETRY_STATUSES:
                if answer.status != 201 or "location" not in answer.headers:
                    raise self._failed(refused(answer, "start the upload"))
                break
            try:
                await self._link.wait_after(answer)
            except UploadError:
                raise self._failed(UploadError(UNREACHABLE)) from None
        self._link.progressed()
        self.url = self._target.resolve(answer.headers["location"])
        self.state = State.CREATED

    async def append(self, data: bytes, final: bool) -> None:
        """Store `data` at the current offset; returns once the server confirmed all of it."""
        if self.state is not State.CREATED or self.url is None:
            raise RuntimeError(f"cannot append to an upload that is {self.state.value}")
        start, end = self.offset, self.offset + len(data)
        conflicts = 0
        ask = False
        try:
            while self.offset < end:
                if ask:
                    answer = await self._link.request("HEAD", self.url, self._target.headers())
                    if isinstance(answer, Response) and answer.status == 200:
                        self._confirm(_offset(answer), start, end)
                        if answer.headers.get("upload-length", "").isdigit():
                            self.length = int(answer.headers["upload-length"])  # declared by a cut piece
                        ask = False
                        continue
                else:
                    piece = data[self.offset - start:self.offset - start + self._link.piece()]
                    headers = self._target.body_headers(self.offset, piece)
                    declares = final and self.length is None
                    if declares:
                        headers["Upload-Length"] = str(end)
                    self.sent += len(piece)
                    answer = await self._link.request("PATCH", self.url, headers, piece)
                    if isinstance(answer, Response) and answer.status == 204:
                        if declares:
                            self.length = end
                        self._confirm(_offset(answer), self.offset, end)
                        conflicts = 0
                        continue
                    if isinstance(answer, Response) and answer.status == 409 and not conflicts:
                        conflicts += 1
                        ask = True
                        continue
                if isinstance(answer, Response) and answer.status in GONE_STATUSES:
                    raise PartsGone("The repository no longer holds this upload.")
                if isinstance(answer, Response) and answer.status not in RETRY_STATUSES | {409}:
                    raise refused(answer, "store the upload")
                await self._link.wait_after(answer)
                ask = True
        except UploadError as exc:
            raise self._failed(exc) from None
        if final:
            self.state = State.DONE

    def _confirm(self, offset: int, least: int, end: int) -> None:
        """The server holds `offset` bytes: never fewer than `least` (it confirmed those)."""
        if offset < least:
            raise UploadError(
                "The repository lost part of the upload that it had already "
                f"confirmed (it holds {offset} bytes, expected at least {least})."
            )
        if offset > end:
            raise UploadError(f"The repository confirmed an impossible offset ({offset}).")
        if offset > self.offset:
            self._link.progressed()  # a HEAD after a lost answer: the bytes were not lost
        self.offset = offset

    async def terminate(self) -> None:
        """Ask the server to delete what it holds (the patient cancelled)."""
        if self.url is not None and self.state is State.CREATED:
            await terminate(self._link, self._target, self.url)
        self.state = State.TERMINATED

    def _failed(self, error: UploadError) -> UploadError:
        self.state = State.FAILED
        return error


def refused(response: Response, action: str) -> UploadError:
    """The server said no, for good: in words the patient can act on."""
    if response.status == 413:
        return UploadError("The repository cannot accept a contribution this large.")
    if response.status == 507:
        return UploadError("The repository is out of storage space right now. Please try again later.")
    return UploadError(f"The repository refused to {action} (HTTP {response.status}).")


def _offset(response: Response, default: int | None = None) -> int:
    value = response.headers.get("upload-offset")
    if value is None and default is not None:
        return default
    if value is None or not value.isdigit():
        raise UploadError("The repository's answer had no valid Upload-Offset.")
    return int(value)
