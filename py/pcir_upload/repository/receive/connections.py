"""What a connection may hold, and for how long, before and while the app sees its request.

Uvicorn closes a keep-alive connection that stays idle after a response, and nothing else: a
new connection that never sends a byte, a request head sent a byte at a time (slowloris) or
a PATCH body that stops halfway stay open for good, each holding a file descriptor and
whatever head it has sent (up to MAX_REQUEST_HEAD, which a final naming thousands of
partials needs). This is uvicorn's h11 protocol with three clocks and two caps:

- idle: no request under way and no byte for `idle_timeout` (also a new connection's first);
- head: a request head not complete `header_timeout` after its first byte gets 408;
- body: a body the app is waiting for that brings no byte for `body_timeout` is cut, and the
  app sees the sender go away (a PATCH keeps what arrived, as the store always does);
- at most `max_connections` at once: a new one pushes out the longest idle, or gets 503 if
  every connection is busy with a request (uvicorn's `limit_concurrency` would only answer
  requests, so sockets that send none would still use up the process's open files);
- pending heads may hold FREE_HEAD bytes each, and beyond that `head_memory` bytes all
  together; a head that would go past it gets 503 and Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from pcir_upload.repository.receive.limits import KiB, MiB

FREE_HEAD = 16 * KiB  # h11's own default for a head: every ordinary request fits
# Open files a process needs besides its connections (listening socket, event loop, logs,
# the page's files); and each connection may have an upload's data file open beside it.
FILES_BESIDE = 64
FILES_PER_CONNECTION = 2
RETRY_AFTER = 5

log = logging.getLogger("pcir_upload.repository.receive")


@dataclass(frozen=True)
class ConnectionLimits:
    idle_timeout: float = 20.0
    header_timeout: float = 30.0
    body_timeout: float = 60.0
    max_connections: int = 1000
    head_memory: int = 32 * MiB
    backlog: int = 2048  # connections waiting for accept(): see accept_backlog()


def open_file_limit() -> int:
    """The process's open-file limit, raised toward its hard limit (up to 65,536) first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft


def connection_cap(requested: int, files: int) -> int:
    """At most `requested` connections, and few enough that `files` open files always suffice."""
    return max(1, min(requested, (files - FILES_BESIDE) // FILES_PER_CONNECTION))


def accept_backlog(cap: int, files: int) -> int:
    """How many connections may wait to be accepted. asyncio accepts up to that many in one go
    before any of them can make room by pushing out an idle one (whose descriptor closes a
    moment later), so a few such batches must fit in the open files `cap` connections leave;
    else accept() fails with EMFILE and the log fills with "Too many open files"."""
    spare = files - cap * FILES_PER_CONNECTION - 16
    return max(8, min(2048, spare // 3))


class ConnectionGuard:
    """What all connections of one server share: which are open, and the head budget taken."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: dict[GuardedH11Protocol, None] = {}
        self.heads = 0  # bytes of pending heads beyond FREE_HEAD, all connections together

    def admit(self, new: GuardedH11Protocol) -> bool:
        if len(self.open) >= self.limits.max_connections:
            idle = [c for c in self.open if c.idle()]
            if not idle:
                return False
            victim = min(idle, key=lambda c: c.last_active)
            self.forget(victim)
            victim.transport.close()
        self.open[new] = None
        return True

    def forget(self, connection: GuardedH11Protocol) -> None:
        self.open.pop(connection, None)
        self.release_head(connection)

    def hold_head(self, connection: GuardedH11Protocol) -> bool:
        """Count a pending head's growth; False if it would take the heads past their budget."""
        more = max(0, connection.head_bytes - FREE_HEAD) - connection.head_charge
        if more > 0:
            if self.heads + more > self.limits.head_memory:
                return False
            self.heads += more
            connection.head_charge += more
        return True

    def release_head(self, connection: GuardedH11Protocol) -> None:
        self.heads -= connection.head_charge
        connection.head_charge = 0
        connection.head_bytes = 0
        connection.head_started = None


def guarded_protocol(guard: ConnectionGuard) -> type[H11Protocol]:
    """The protocol class to give uvicorn (`Config(http=...)`), bound to one server's guard."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


class GuardedH11Protocol(H11Protocol):
    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_active = 0.0  # the last byte received, or the last response finished
        self.head_started: float | None = None
        self.head_bytes = 0
        self.head_charge = 0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.last_active = self.loop.time()
        if not self.guard.admit(self):
            self._refuse(503, "The receiver has too many connections; try again shortly.")
            return
        self._check()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        in_head = self.conn.their_state is h11.IDLE
        if in_head:
            self.head_bytes += len(data)
            if not self.guard.hold_head(self):
                self._refuse(503, "The receiver is busy with other requests; try again shortly.")
                return
            if self.head_started is None:
                self.head_started = self.last_active
                self._recheck()  # the head's clock starts
        super().data_received(data)
        if in_head and self.conn.their_state is not h11.IDLE:
            self.guard.release_head(self)  # the head is complete: h11 let go of its bytes
            self._recheck()  # the body's clock, or the app's turn

    def on_response_complete(self) -> None:
        self.last_active = self.loop.time()
        super().on_response_complete()
        self._recheck()

    def _recheck(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._check()

    def idle(self) -> bool:
        """Waiting for a request, none under way: safe to close (a client just opens another)."""
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def _check(self) -> None:
        """Close the connection if one of its clocks ran out; else look again when one might."""
        self._timer = None
        if self.transport.is_closing():
            return
        limits, now = self.guard.limits, self.loop.time()
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self.flow.read_paused:
                self.last_active = now  # we stopped reading, not they sending
            deadline, expired = self.last_active + limits.body_timeout, self._cut_body
        elif state is h11.IDLE and self.head_started is not None:
            deadline, expired = self.head_started + limits.header_timeout, self._slow_head
        elif self.idle():
            deadline, expired = self.last_active + limits.idle_timeout, self.transport.close
        elif state is h11.DONE:
            deadline, expired = now + limits.idle_timeout, None  # the app is at work: no clock
        else:
            return  # closing, or an error h11 is answering already
        if deadline <= now and expired is not None:
            expired()
            return
        self._timer = self.loop.call_later(max(deadline - now, 0.05), self._check)

    def _cut_body(self) -> None:
        log.debug("a request body stalled for %g s: connection closed", self.guard.limits.body_timeout)
        self.transport.close()

    def _slow_head(self) -> None:
        self._refuse(408, "The request's head took too long.")

    def _refuse(self, status: int, text: str) -> None:
        """Answer before (or instead of) a request, and close: h11 has no request to answer."""
        reason = {408: "Request Timeout", 503: "Service Unavailable"}[status]
        body = text.encode()
        head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n")
        if status == 503:
            head += f"retry-after: {RETRY_AFTER}\r\n"
        self.transport.write(head.encode() + b"\r\n" + body)
        self.guard.forget(self)
        self.transport.close()
