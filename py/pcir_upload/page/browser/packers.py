"""The packer workers, from the page's Python worker: the other cores compress while this one
frames, seals and sends.

Reading, hashing and compressing is most of a contribution's work. In one worker it runs at
about 50 MB/s here, and the network, sealing and framing wait their turn; with packers (plain
Pyodide workers, web/packer.mjs) doing it, the page's worker only puts their pieces in order.
Each file goes to the packer with the least work waiting, and all of its pieces to the same
one, which keeps its Zstandard state between them. Where they cannot start, this worker packs
by itself, more slowly: nothing but the speed depends on them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Mapping
from typing import Any

from pyodide.ffi import create_proxy

from pcir_upload.page.package.package import LocalPacker, Packer, Piece, PieceRequest
from pcir_upload.page.browser._js import from_js, js_object
from pcir_upload.page.browser.files import BrowserDisc

START_TIMEOUT = 60.0  # seconds for a packer to load Pyodide; it is cached after the first


class PackerFailed(RuntimeError):
    """A packer worker stopped (it ran out of memory, say); what it held is lost."""


class _Worker:
    def __init__(self, port: Any):
        self.port = port  # our end of the page's channel to this packer
        self.waiting = 0  # disc bytes handed to it and not answered yet
        self.answers: dict[int, tuple[asyncio.Future[Any], int]] = {}  # id -> (future, bytes)
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class PackerPool:
    """The packer workers of this visit, which the page starts (app.js, startPackers) and hands
    us as ports: `start(ports)` once, early (Pyodide takes seconds to load); `packer(files)`
    for each contribution."""

    def __init__(self, wheels: list[str]):
        self._wheels = wheels
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        self._handlers: list[Any] = []
        self.ready = asyncio.get_event_loop().create_future()  # True, or False: pack here

    async def start(self, ports: list[Any]) -> None:
        try:
            started = [self._start_one(port) for port in ports]
            await asyncio.wait_for(asyncio.gather(*started), START_TIMEOUT)
            ok = bool(self._workers)
        except Exception:
            ok = False
        if not ok:
            self._stop()
        if not self.ready.done():
            self.ready.set_result(ok)

    async def _start_one(self, port: Any) -> None:
        entry = _Worker(port)
        self._workers.append(entry)

        def on_message(event: Any) -> None:
            message = event.data
            kind = str(message.kind)
            if kind == "ready" and not entry.started.done():
                entry.started.set_result(None)
            elif kind == "failed" and not entry.started.done():
                entry.started.set_exception(PackerFailed(str(message.error)))
            elif kind == "broken":
                self._stop(PackerFailed(f"a packer failed: {message.error}"))
            elif kind in ("piece", "report"):
                answer = entry.answers.pop(int(message.id), None)
                if answer is not None:
                    future, size = answer
                    entry.waiting -= size
                    if not future.done():
                        future.set_result(message)

        def on_error(event: Any) -> None:
            self.failed("a packer's message could not be read")

        for name, handler in (("message", on_message), ("messageerror", on_error)):
            proxy = create_proxy(handler)
            self._handlers.append(proxy)
            port.addEventListener(name, proxy)
        port.start()
        port.postMessage(js_object({"wheels": self._wheels}))
        await entry.started

    def failed(self, error: str) -> None:
        """A packer stopped (the page saw its worker fail, or it ran out of memory, say)."""
        failure = PackerFailed(error or "a packer worker stopped")
        for entry in self._workers:
            if not entry.started.done():
                entry.started.set_exception(failure)
        self._stop(failure)

    def _stop(self, failure: PackerFailed | None = None) -> None:
        """No more packers this visit (one died, or they did not start): what they were asked
        fails, and later contributions pack in this worker."""
        for entry in self._workers:
            entry.port.postMessage(js_object({"kind": "stop"}))
            for future, _ in entry.answers.values():
                if not future.done():
                    future.set_exception(failure or PackerFailed("the packers were stopped"))
            entry.answers.clear()
        self._workers.clear()

    def _ask(self, entry: _Worker, message: dict[str, Any], size: int = 0) -> asyncio.Future[Any]:
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry.answers[ident] = (future, size)
        entry.waiting += size
        entry.port.postMessage(js_object({**message, "id": ident}))
        return future

    def packer(self, files: Mapping[str, Any]) -> Packer:
        """The packer for one contribution over these File objects (by package path)."""
        if self.ready.done() and self.ready.result() and self._workers:
            return _WorkerPacker(self, files)  # clean: `forget` ends every contribution
        return LocalPacker(BrowserDisc(dict(files)))

    def forget(self) -> None:
        """The contribution is over: the packers drop any file they were part way through."""
        for entry in self._workers:
            entry.port.postMessage(js_object({"kind": "reset"}))

    async def report(self) -> list[dict[str, Any]]:
        """What each packer still holds (see `packer.report`)."""
        answers = [self._ask(entry, {"kind": "report"}) for entry in self._workers]
        return [json.loads(str(answer.report)) for answer in await asyncio.gather(*answers)]


class _WorkerPacker:
    """`Packer` on the pool's workers."""

    def __init__(self, pool: PackerPool, files: Mapping[str, Any]):
        self._pool = pool
        self._files = files
        self._assigned: dict[int, _Worker] = {}  # file index -> its packer, while in progress

    def submit(self, request: PieceRequest) -> Awaitable[Piece]:
        workers = self._pool._workers
        if not workers:
            raise PackerFailed("the packer workers have stopped")
        if request.first:
            self._assigned[request.file] = min(workers, key=lambda w: w.waiting)
        entry = self._assigned[request.file]
        if request.last:
            del self._assigned[request.file]
        answer = self._pool._ask(entry, {
            "kind": "piece", "file": self._files[request.path], "index": request.file,
            "path": request.path, "size": request.size, "offset": request.offset,
            "length": request.length, "level": request.level, "first": request.first,
            "last": request.last,
        }, request.length)
        return _piece(answer)


async def _piece(answer: asyncio.Future[Any]) -> Piece:
    message = await answer
    error = getattr(message, "error", None)  # a string, or undefined
    return Piece(
        data=from_js(message.data), method=int(message.method), end=bool(message.end),
        skipped=bool(message.skipped), crc=int(message.crc), size=int(message.size),
        sha256=str(message.sha256), error=error if isinstance(error, str) else None,
    )
