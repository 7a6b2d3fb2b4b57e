"""A round-robin TCP load balancer on 127.0.0.1 for tests: each new connection goes to the next
receiver in turn, and to the one after if that one refuses (it is dead or restarting), as an
L4 load balancer with health checks does. Nothing keeps a contribution on one receiver.

    with RoundRobin([("127.0.0.1", 8001), ("127.0.0.1", 8002)]) as balancer:
        balancer.url                       # http://127.0.0.1:<port>
        balancer.connections               # {backend: connections it was given}
        balancer.sent_up                   # {backend: bytes the clients sent it}
        balancer.next_to(backend)          # the next connection goes there (a node back in service)
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter


class RoundRobin:
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = list(backends)
        self.connections: Counter[tuple[str, int]] = Counter()
        self.sent_up: Counter[tuple[str, int]] = Counter()
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self.url = ""

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up: tuple[str, int] | None = None) -> None:
        try:
            while data := await reader.read(65536):
                if up is not None:
                    self.sent_up[up] += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        for _ in range(len(self.backends)):
            backend = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                up_r, up_w = await asyncio.open_connection(*backend)
            except OSError:
                continue
            self.connections[backend] += 1
            await asyncio.gather(self._pipe(client_r, up_w, backend), self._pipe(up_r, client_w))
            return
        client_w.close()

    def next_to(self, backend: tuple[str, int]) -> None:
        self._next = self.backends.index(backend)

    def __enter__(self) -> RoundRobin:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(10)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            # Awaited, so their cancellation is not reported as an error when the loop stops.
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
