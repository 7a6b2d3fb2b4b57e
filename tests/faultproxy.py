"""A TCP proxy for tests that puts a bad network between a client and the receiver.

It listens on 127.0.0.1 (a free port), forwards every connection to the receiver, and reads
the HTTP/1.1 requests going through, so faults can be aimed at requests rather than at
bytes. Faults are set at run time, from any thread, while clients (httpx, tus-js-client,
Chromium) talk to `proxy.url` as if it were the receiver:

    from faultproxy import FaultProxy

    with FaultProxy(receiver_url) as proxy:      # runs its own event loop in a thread
        page.goto(proxy.url)                     # the page and its uploads go through it
        proxy.cut_after(100_000, method="PATCH") # the next PATCH: 100,000 body bytes, then the
                                                 #   connection breaks (client sees a reset)
        proxy.answer(503, count=2, retry_after=1)# the next 2 requests get 503 from the proxy
        proxy.answer(429, retry_after=0)         #   itself (their bodies are read and dropped)
        proxy.throttle(200_000)                  # 200 kB/s each way, shared by all connections
        proxy.refuse(3.0)                        # new connections are refused for 3 s (the
                                                 #   port closes; open ones go on)
        proxy.drop_connections()                 # break every open connection now
        proxy.cut_every(500_000, 1_500_000, seed=1)  # a flaky Wi-Fi: each connection breaks
                                                 #   after a random 0.5–1.5 MB sent up it
        proxy.drop_every(20, 60, seed=2)         # a mobile link: every 20–60 s (at random),
                                                 #   every open connection breaks
        proxy.clear()                            # no more faults (and no throttle)
        proxy.requests                           # [(method, path), ...] of every request seen
        proxy.sent_up, proxy.cuts                # bytes that went up the link; connections cut
        proxy.faults_left()                      # how many aimed faults are still waiting

Faults aimed at requests (`cut_after`, `answer`) wait in order for the next request they
match (`method`, and `path` as a prefix, when given). Only `Content-Length` bodies are cut;
a chunked request is passed through untouched. The patterns (`cut_every`, `drop_every`) draw
from their own seeded random generator, so a run's cuts come in the same sizes and intervals
each time (which connection gets which size depends on how requests interleave). `clear()`
ends them too. No pipelining, no TLS, no HTTP/2: what
browsers and httpx speak to a plain-HTTP 127.0.0.1 server.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class _Fault:
    kind: str  # "cut" or "answer"
    method: str | None
    path: str | None
    count: int
    cut_after: int = 0
    status: int = 503
    retry_after: float | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)
        )


class _Bucket:
    """One direction's bandwidth, shared by every connection, like one slow link."""

    def __init__(self) -> None:
        self.rate: float | None = None
        self.next_free = 0.0

    async def take(self, n: int) -> None:
        rate = self.rate
        if not rate:
            return
        now = time.monotonic()
        start = max(now, self.next_free)
        self.next_free = start + n / rate
        if self.next_free > now:
            await asyncio.sleep(self.next_free - now)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a broken network path looks to the other end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class _Cut(Exception):
    pass


class FaultProxy:
    """See the module docstring. `upstream` is the receiver's base URL (http://host:port)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = 0
        self.url = ""
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._up = _Bucket()  # client -> receiver
        self._down = _Bucket()  # receiver -> client
        self._refusing_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._refuser: asyncio.Future[None] | None = None
        self._budgets: tuple[int, int, random.Random] | None = None  # cut_every's sizes
        self._dropper: asyncio.Future[None] | None = None  # drop_every's task
        self.sent_up = 0  # bytes forwarded from clients to the receiver
        self.cuts = 0  # connections broken by cut_after, cut_every, drop_* (each counted once)

    # --- control, from any thread

    def cut_after(self, nbytes: int, *, method: str | None = None, path: str | None = None, count: int = 1) -> None:
        """The next `count` matching requests: forward the head and `nbytes` of the body, then break."""
        self._add(_Fault("cut", method, path, count, cut_after=nbytes))

    def answer(
        self,
        status: int = 503,
        *,
        count: int = 1,
        retry_after: float | None = None,
        method: str | None = None,
        path: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `count` matching requests are answered `status` by the proxy; the receiver never sees them."""
        self._add(_Fault("answer", method, path, count, status=status, retry_after=retry_after,
                         headers=tuple((headers or {}).items())))

    def throttle(self, bytes_per_second: float | None) -> None:
        """Limit each direction to `bytes_per_second` (None: as fast as it goes)."""
        self._up.rate = self._down.rate = bytes_per_second

    def refuse(self, seconds: float) -> None:
        """Refuse new connections for `seconds` (the port is closed, then opened again)."""
        with self._lock:
            self._refusing_until = time.monotonic() + seconds
        self._call(self._refuse_for, seconds)

    def drop_connections(self) -> None:
        """Break every open connection now (with a reset)."""
        self._call(self._drop_all)

    def cut_every(self, least: int, most: int, *, seed: int) -> None:
        """Every connection from now on breaks once a random `least`–`most` bytes went up it."""
        with self._lock:
            self._budgets = (least, most, random.Random(seed))

    def drop_every(self, least: float, most: float, *, seed: int) -> None:
        """Every `least`–`most` seconds (at random), break every open connection."""
        self._call(self._drop_every, least, most, random.Random(seed))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._budgets = None
        self.throttle(None)
        self._call(self._stop_dropping)

    def faults_left(self) -> int:
        with self._lock:
            return sum(f.count for f in self._faults)

    # --- lifetime

    def start(self) -> str:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self._listen())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        self.url = f"http://127.0.0.1:{self.port}"
        return self.url

    def close(self) -> None:
        if self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- inside the proxy's loop

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _call(self, function: object, *args: object) -> None:
        assert self._loop is not None, "the proxy is not running"
        self._loop.call_soon_threadsafe(function, *args)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def _refuse_for(self, seconds: float) -> None:
        if self._refuser is not None and not self._refuser.done():
            return  # already refusing: it waits for the new, later deadline

        async def refuse() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            while True:
                with self._lock:
                    left = self._refusing_until - time.monotonic()
                if left <= 0:
                    break
                await asyncio.sleep(left)
            if self._server is None:
                await self._listen()

        self._refuser = asyncio.ensure_future(refuse())

    def _drop_all(self) -> None:
        clients = [w for w in self._connections if w.get_extra_info("peername") != self.upstream]
        self.cuts += len(clients)
        for writer in list(self._connections):
            _reset(writer)

    def _drop_every(self, least: float, most: float, rng: random.Random) -> None:
        self._stop_dropping()

        async def drop() -> None:
            while True:
                await asyncio.sleep(rng.uniform(least, most))
                self._drop_all()

        self._dropper = asyncio.ensure_future(drop())

    def _stop_dropping(self) -> None:
        if self._dropper is not None:
            self._dropper.cancel()
            self._dropper = None

    def _budget(self) -> list[int] | None:
        """What a connection may send up before `cut_every` breaks it (a box, spent as bytes
        go up), or None."""
        with self._lock:
            if self._budgets is None:
                return None
            least, most, rng = self._budgets
            return [rng.randint(least, most)]

    async def _shutdown(self) -> None:
        self._stop_dropping()
        if self._server is not None:
            self._server.close()
        self._drop_all()
        # Ending the loop with a pump still waiting destroys it mid-await (and says so): end
        # every connection's tasks first.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._connections.add(client_writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        pump: asyncio.Task[None] | None = None
        buffer = b""
        budget: list[int] | None = None
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = await client_reader.read(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                head += b"\r\n\r\n"
                method, path, length, chunked = _parse_head(head)
                self.requests.append((method, path))
                fault = self._take(method, path)

                if fault is not None and fault.kind == "answer":
                    buffer = await _discard(client_reader, buffer, length)
                    await self._send(client_writer, _response(fault), self._down)
                    continue

                if upstream is None:
                    upstream = await asyncio.open_connection(*self.upstream)
                    self._connections.add(upstream[1])
                    pump = asyncio.ensure_future(self._pump(upstream[0], client_writer))
                up_writer = upstream[1]
                await self._send(up_writer, head, self._up)
                if chunked:  # no body boundaries to watch: pass the rest through as it comes
                    await self._send(up_writer, buffer, self._up)
                    await self._pump(client_reader, up_writer, self._up)
                    return
                limit = fault.cut_after if fault is not None and fault.kind == "cut" else None
                if self._budgets is None:
                    budget = None  # cleared: the connection goes on unbroken
                elif budget is None:
                    budget = self._budget()  # its first request since cut_every (kept alive, say)
                buffer = await self._forward_body(client_reader, up_writer, buffer, length, limit, budget)
        except _Cut:
            self.cuts += 1
            _reset(client_writer)  # the client sees its request fail, as on a broken link
        except (ConnectionError, OSError):
            pass
        finally:
            if pump is not None and upstream is not None:
                if not pump.done():
                    upstream[1].close()
            for writer in (client_writer, upstream[1] if upstream else None):
                if writer is not None:
                    self._connections.discard(writer)
                    if not writer.is_closing():
                        writer.close()

    async def _forward_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, buffer: bytes,
        length: int, limit: int | None, budget: list[int] | None = None,
    ) -> bytes:
        """Forward `length` body bytes (some already in `buffer`); returns what follows them.
        The body breaks off after `limit` of its bytes, or once the connection's `budget` is
        spent."""
        remaining = length
        sent = 0
        while remaining > 0:
            if not buffer:
                buffer = await reader.read(min(65536, remaining))
                if not buffer:
                    raise ConnectionError("the client went away mid-body")
            piece, buffer = buffer[:remaining], buffer[remaining:]
            allowed = [n for n in (limit - sent if limit is not None else None,
                                   budget[0] if budget is not None else None) if n is not None]
            if allowed and len(piece) >= min(allowed):
                await self._send(writer, piece[: min(allowed)], self._up)
                await writer.drain()
                writer.close()  # the receiver sees the body end early, and keeps what came
                raise _Cut()
            await self._send(writer, piece, self._up)
            if budget is not None:
                budget[0] -= len(piece)
            sent += len(piece)
            remaining -= len(piece)
        return buffer

    async def _send(self, writer: asyncio.StreamWriter, data: bytes, bucket: _Bucket) -> None:
        step = max(1024, int(bucket.rate / 20)) if bucket.rate else len(data) or 1
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            await bucket.take(len(piece))
            if bucket is self._up:
                self.sent_up += len(piece)
            writer.write(piece)
            await writer.drain()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bucket: _Bucket | None = None
    ) -> None:
        """Copy until the reader ends, then end the writer too (the receiver closed: so do we)."""
        try:
            while data := await reader.read(65536):
                await self._send(writer, data, bucket or self._down)
        except (ConnectionError, OSError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()


def _parse_head(head: bytes) -> tuple[str, str, int, bool]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip() or 0)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    return method, path, length, chunked


async def _discard(reader: asyncio.StreamReader, buffer: bytes, length: int) -> bytes:
    """Read a body we answer ourselves, so the connection stays usable; returns what follows it."""
    while len(buffer) < length:
        data = await reader.read(min(65536, length - len(buffer)))
        if not data:
            raise ConnectionError("the client went away mid-body")
        buffer += data
    return buffer[length:]


def _response(fault: _Fault) -> bytes:
    reason = REASONS.get(fault.status, "Error")
    headers = [("Content-Length", "0"), ("Tus-Resumable", "1.0.0"), ("Cache-Control", "no-store")]
    if fault.retry_after is not None:
        value = fault.retry_after
        headers.append(("Retry-After", str(int(value)) if float(value).is_integer() else str(value)))
    headers += list(fault.headers)
    lines = [f"HTTP/1.1 {fault.status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
