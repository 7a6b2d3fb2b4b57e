"""The upload state machine against the real receiver, with faults put between them: lost
answers, lost requests, bodies cut halfway, temporary refusals. Whatever happens, the stored
upload must hold every byte once, in order."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from pcir_upload.server.store import completed_uploads
from pcir_upload.tus import Response, State, TransportError, Upload, UploadError
from support import HttpxTransport, receiver


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data = tmp_path / "data"
    with receiver(data, tmp_path, bytes(32), max_upload_size=10_000_000) as url:
        yield url + "/files/", data


Fault = Callable[[str, Mapping[str, str], bytes | None, int], str | None]


class FaultyTransport(HttpxTransport):
    """The real transport, with a fault chosen per request: what the network might do."""

    def __init__(self, fault: Fault):
        super().__init__()
        self.fault = fault
        self.count = 0
        self.log: list[tuple[str, int]] = []

    async def request(self, method, url, headers, body=None) -> Response:
        self.count += 1
        self.log.append((method, len(body or b"")))
        what = self.fault(method, headers, body, self.count)
        if what == "drop-request":
            raise TransportError("connection refused")
        if what == "cut-body":  # half the body arrives, then the connection breaks
            await super().request(method, url, headers, body[: len(body) // 2])
            raise TransportError("connection reset")
        if what == "busy":
            return Response(503, {"retry-after": "0"})
        response = await super().request(method, url, headers, body)
        if what == "drop-answer":
            raise TransportError("timed out")
        return response


CHUNKS = [os.urandom(50_000) for _ in range(4)]


def upload_all(endpoint: str, fault: Fault, **options) -> tuple[Upload, FaultyTransport]:
    transport = FaultyTransport(fault)
    sleeps: list[float] = []

    async def no_wait(seconds: float) -> None:
        sleeps.append(seconds)

    upload = Upload(transport, endpoint, sleep=no_wait, **options)

    async def run() -> None:
        try:
            await upload.create()
            for i, chunk in enumerate(CHUNKS):
                await upload.append(chunk, final=i == len(CHUNKS) - 1)
        finally:
            await transport.close()

    asyncio.run(run())
    upload.sleeps = sleeps  # type: ignore[attr-defined]
    return upload, transport


def stored(data: Path) -> bytes:
    (upload,) = completed_uploads(data)
    return upload.data_path.read_bytes()


def on_patch(numbers: set[int], what: str) -> Fault:
    patches = 0

    def fault(method, headers, body, count):
        nonlocal patches
        if method != "PATCH":
            return None
        patches += 1
        return what if patches in numbers else None

    return fault


def test_a_clean_upload(endpoint) -> None:
    url, data = endpoint
    upload, transport = upload_all(url, lambda *a: None)
    assert upload.state is State.DONE and upload.offset == sum(map(len, CHUNKS))
    assert stored(data) == b"".join(CHUNKS)
    assert [m for m, _ in transport.log] == ["POST"] + ["PATCH"] * 4


@pytest.mark.parametrize("what", ["drop-answer", "drop-request", "cut-body", "busy"])
def test_faults_lose_and_duplicate_nothing(endpoint, what) -> None:
    url, data = endpoint
    upload, transport = upload_all(url, on_patch({2, 4}, what))
    assert upload.state is State.DONE
    assert stored(data) == b"".join(CHUNKS)
    assert upload.retries == 2
    resent = sum(n for m, n in transport.log if m == "PATCH") - sum(map(len, CHUNKS))
    if what == "drop-answer":
        assert resent == 0  # the server had it all: HEAD said so, nothing was sent again
    if what == "cut-body":
        assert resent == len(CHUNKS[1]) // 2 + len(CHUNKS[3]) // 2  # only the missing halves


def test_retry_after_is_respected(endpoint) -> None:
    url, _ = endpoint
    upload, _ = upload_all(url, on_patch({1}, "busy"))
    assert upload.sleeps == [0.0]  # type: ignore[attr-defined]


def test_backoff_grows_and_then_gives_up_in_plain_words(endpoint) -> None:
    url, _ = endpoint
    with pytest.raises(UploadError, match="kept failing"):
        upload_all(url, on_patch(set(range(1, 100)), "drop-request"), delays=(1.0, 2.0, 4.0))


def test_a_server_that_lost_confirmed_bytes_is_an_error(endpoint, tmp_path) -> None:
    url, data = endpoint

    def truncate_after_second_chunk(method, headers, body, count):
        if method == "PATCH" and headers["Upload-Offset"] == str(2 * len(CHUNKS[0])):
            (folder,) = (data / "uploads").iterdir()
            with open(folder / "data", "r+b") as f:
                f.truncate(10)  # the server lost what it had confirmed
            return "drop-answer"
        return None

    with pytest.raises(UploadError, match="lost part of the upload"):
        upload_all(url, truncate_after_second_chunk)


def test_too_large_is_said_plainly(tmp_path) -> None:
    data = tmp_path / "data"
    with receiver(data, tmp_path, bytes(32), max_upload_size=120_000) as url:
        with pytest.raises(UploadError, match="cannot accept a contribution this large"):
            upload_all(url + "/files/", lambda *a: None)
