"""The upload: one tus 1.0.0 resumable upload per contribution, as one explicit state machine.

The sealed chunks are appended in order. The total length is not known until the package
is finished (compression), so the upload is created with `Upload-Defer-Length` and the
length is declared with the final chunk. Every retry, every offset and every error is
decided here, in `append`: after anything goes wrong the server is asked (HEAD) how much it
really holds and sending continues from there, so no byte is sent into the stored upload
twice and none is skipped. The transport (browser fetch, or httpx in tests) only moves bytes.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urljoin

TUS_VERSION = "1.0.0"
RETRY_STATUSES = frozenset({408, 423, 429, 500, 502, 503, 504})
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 30.0, 30.0, 30.0, 30.0)


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
        """Send one request; raise TransportError when no answer comes back."""


class UploadError(Exception):
    """The upload cannot go on. The message is written for the patient."""


class State(enum.Enum):
    NEW = "new"
    CREATED = "created"
    DONE = "done"
    TERMINATED = "terminated"
    FAILED = "failed"


class Upload:
    """One resumable upload: `create`, then `append` each chunk, the last with final=True."""

    def __init__(
        self,
        transport: Transport,
        endpoint: str,
        delays: Sequence[float] = RETRY_DELAYS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self._transport = transport
        self._endpoint = endpoint
        self._delays = delays
        self._sleep = sleep
        self.state = State.NEW
        self.url: str | None = None
        self.offset = 0  # bytes the server has confirmed it holds
        self.retries = 0  # how many times anything was retried, for the record

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Tus-Resumable": TUS_VERSION, **extra}

    async def create(self) -> None:
        if self.state is not State.NEW:
            raise RuntimeError(f"cannot create an upload that is {self.state.value}")
        response = await self._with_retries(
            lambda: self._transport.request(
                "POST", self._endpoint, self._headers(**{"Upload-Defer-Length": "1"})
            )
        )
        if response.status != 201 or "location" not in response.headers:
            self._fail(response, "start the upload")
        self.url = _resolve(self._endpoint, response.headers["location"])
        self.state = State.CREATED

    async def append(self, data: bytes, final: bool) -> None:
        """Store `data` at the current offset; returns once the server confirmed all of it."""
        if self.state is not State.CREATED or self.url is None:
            raise RuntimeError(f"cannot append to an upload that is {self.state.value}")
        start, end = self.offset, self.offset + len(data)
        attempt = 0
        while self.offset < end:
            headers = self._headers(**{
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(self.offset),
            })
            if final:
                headers["Upload-Length"] = str(end)
            try:
                response = await self._transport.request(
                    "PATCH", self.url, headers, data[self.offset - start:]
                )
            except TransportError:
                response = None
            if response is not None and response.status == 204:
                confirmed = _offset(response)
                if not self.offset <= confirmed <= end:
                    raise self._error(f"The repository confirmed an impossible offset ({confirmed}).")
                if confirmed > self.offset:
                    attempt = 0  # progress: a flaky link gets its full patience again
                self.offset = confirmed
                continue
            if response is not None and response.status not in RETRY_STATUSES | {409}:
                self._fail(response, "store the upload")
            # No answer, a conflict or a temporary refusal: wait, then ask what the server holds.
            if attempt >= len(self._delays):
                raise self._error(
                    "The connection to the repository kept failing. Your files are safe on "
                    "your computer; please check your internet connection and try again."
                )
            await self._sleep(_delay(self._delays[attempt], response))
            attempt += 1
            self.retries += 1
            await self._resync(start, end)
        if final:
            self.state = State.DONE

    async def terminate(self) -> None:
        """Ask the server to delete what it holds (the patient cancelled)."""
        if self.url is not None and self.state is State.CREATED:
            try:
                await self._transport.request("DELETE", self.url, self._headers())
            except TransportError:
                pass  # the server expires abandoned uploads on its own
        self.state = State.TERMINATED

    async def _resync(self, start: int, end: int) -> None:
        """Learn the server's offset after a failure; it must lie within the chunk in hand."""
        try:
            response = await self._transport.request("HEAD", self.url or "", self._headers())
        except TransportError:
            return  # still away: the next attempt resends from our offset and we look again
        if response.status in RETRY_STATUSES:
            return
        if response.status != 200:
            self._fail(response, "resume the upload")
        confirmed = _offset(response)
        if not start <= confirmed <= end:
            raise self._error(
                "The repository lost part of the upload that it had already confirmed "
                f"(it holds {confirmed} bytes, expected at least {start})."
            )
        self.offset = confirmed

    async def _with_retries(self, send: Callable[[], Awaitable[Response]]) -> Response:
        for attempt in range(len(self._delays) + 1):
            try:
                response = await send()
            except TransportError:
                response = None
            if response is not None and response.status not in RETRY_STATUSES:
                return response
            if attempt < len(self._delays):
                self.retries += 1
                await self._sleep(_delay(self._delays[attempt], response))
        raise self._error(
            "The repository could not be reached. Please check your internet connection "
            "and try again."
        )

    def _error(self, message: str) -> UploadError:
        self.state = State.FAILED
        return UploadError(message)

    def _fail(self, response: Response, action: str) -> None:
        if response.status == 413:
            raise self._error("The repository cannot accept a contribution this large.")
        if response.status == 507:
            raise self._error(
                "The repository is out of storage space right now. Please try again later."
            )
        raise self._error(f"The repository refused to {action} (HTTP {response.status}).")


def _offset(response: Response) -> int:
    try:
        return int(response.headers["upload-offset"])
    except (KeyError, ValueError):
        raise UploadError("The repository's answer had no valid Upload-Offset.") from None


def _delay(base: float, response: Response | None) -> float:
    """Backoff with jitter, so that many patients cut off at once do not return at once."""
    if response is not None and "retry-after" in response.headers:
        try:
            return max(0.0, float(response.headers["retry-after"]))
        except ValueError:
            pass
    return base * (0.5 + random.random())


def _resolve(endpoint: str, location: str) -> str:
    """The upload URL from a Location header, which may be absolute or relative (RFC 9110)."""
    return urljoin(endpoint, location)
