"""The fault proxy itself, between httpx and the real receiver: each fault does what it says,
and nothing else."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from faultproxy import FaultProxy
from support import receiver

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[FaultProxy]:
    with receiver(tmp_path / "data", tmp_path, bytes(32)) as url:
        with FaultProxy(url) as proxy:
            yield proxy


def create(client: httpx.Client, length: int) -> str:
    r = client.post("/files/", headers={**TUS, "Upload-Length": str(length)})
    assert r.status_code == 201
    return r.headers["Location"]


def offset(client: httpx.Client, location: str) -> int:
    r = client.head(location, headers=TUS)
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    return int(r.headers["Upload-Offset"])


def test_it_passes_uploads_through(proxy: FaultProxy) -> None:
    body = os.urandom(3_000_000)
    with httpx.Client(base_url=proxy.url) as client:
        location = create(client, len(body))
        r = client.patch(location, content=body, headers={**CHUNK, "Upload-Offset": "0"})
        assert (r.status_code, r.headers["Upload-Offset"]) == (204, str(len(body)))
        assert client.get("/api/config").status_code == 200
    assert proxy.requests == [("POST", "/files/"), ("PATCH", location), ("GET", "/api/config")]


def test_answer_replies_itself_to_the_next_requests(proxy: FaultProxy, tmp_path: Path) -> None:
    with httpx.Client(base_url=proxy.url) as client:
        location = create(client, 10)
        proxy.answer(503, count=2, retry_after=1)
        for _ in range(2):
            r = client.patch(location, content=b"12345", headers={**CHUNK, "Upload-Offset": "0"})
            assert (r.status_code, r.headers["Retry-After"]) == (503, "1")
        assert offset(client, location) == 0  # the receiver saw none of it
        proxy.answer(429, retry_after=0, method="PATCH")
        assert client.head(location, headers=TUS).status_code == 200  # not a PATCH: passes
        assert client.patch(location, content=b"1", headers={**CHUNK, "Upload-Offset": "0"}).status_code == 429
        assert proxy.faults_left() == 0
        r = client.patch(location, content=b"12345", headers={**CHUNK, "Upload-Offset": "0"})
        assert r.status_code == 204  # the same connection goes on working


def test_cut_after_delivers_exactly_n_body_bytes_then_breaks() -> None:
    received = bytearray()
    done = threading.Event()

    class Counting(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while data := self.request.recv(65536):
                received.extend(data)
            done.set()

    with socketserver.TCPServer(("127.0.0.1", 0), Counting) as upstream:
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        with FaultProxy(f"http://127.0.0.1:{upstream.server_address[1]}") as proxy:
            proxy.cut_after(123_456, method="PATCH")
            body = os.urandom(500_000)
            with pytest.raises(httpx.TransportError):
                httpx.patch(proxy.url + "/files/x", content=body, headers=CHUNK)
            assert done.wait(5)
        upstream.shutdown()
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"PATCH /files/x HTTP/1.1") and rest == body[:123_456]


def test_a_cut_patch_resumes_at_the_receiver(proxy: FaultProxy) -> None:
    body = os.urandom(500_000)
    with httpx.Client(base_url=proxy.url) as client:
        location = create(client, len(body))
        proxy.cut_after(123_456, method="PATCH")
        with pytest.raises(httpx.TransportError):
            client.patch(location, content=body, headers={**CHUNK, "Upload-Offset": "0"})
        # The receiver keeps a prefix of what came (uvicorn may drop the last piece it
        # had buffered when the connection ended), and the upload goes on from there.
        # Until the receiver has noticed the break, the upload may be busy or still growing.
        deadline = time.monotonic() + 5
        while True:
            at = offset(client, location)
            assert at <= 123_456
            r = client.patch(location, content=body[at:], headers={**CHUNK, "Upload-Offset": str(at)})
            if r.status_code == 204:
                break
            assert r.status_code in (409, 423) and time.monotonic() < deadline
            time.sleep(0.02)


def test_throttle_slows_both_ways(proxy: FaultProxy) -> None:
    body = os.urandom(200_000)
    with httpx.Client(base_url=proxy.url) as client:
        location = create(client, 2 * len(body))
        proxy.throttle(400_000)
        started = time.monotonic()
        client.patch(location, content=body, headers={**CHUNK, "Upload-Offset": "0"})
        assert time.monotonic() - started >= 0.4
        proxy.clear()
        started = time.monotonic()
        client.patch(location, content=body, headers={**CHUNK, "Upload-Offset": str(len(body))})
        assert time.monotonic() - started < 0.4


def _refused(url: str) -> bool:
    try:
        httpx.get(url)
    except httpx.ConnectError:
        return True
    return False


def test_refuse_closes_the_port_for_a_while(proxy: FaultProxy) -> None:
    """The port closes at once and opens again when the later of two refusals ends. The checks
    keep half a second or more from either deadline: the proxy's loop is a thread that a busy
    machine can hold back by a few hundred milliseconds (0.1 s margins failed under load)."""
    url = proxy.url + "/api/config"
    start = time.monotonic()
    proxy.refuse(0.5)
    proxy.refuse(2.0)  # a second call extends the first
    while not _refused(url):
        assert time.monotonic() - start < 0.9, "the port was not closed"
        time.sleep(0.02)
    time.sleep(max(0.0, start + 1.0 - time.monotonic()))
    assert _refused(url), "the second refusal did not extend the first"
    while _refused(url):
        assert time.monotonic() - start < 10, "the port did not open again"
        time.sleep(0.05)
    assert time.monotonic() - start >= 2.0
    assert httpx.get(url).status_code == 200


def test_drop_connections_breaks_open_ones(proxy: FaultProxy) -> None:
    port = int(proxy.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /api/config HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):  # the whole JSON answer
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        proxy.drop_connections()
        sock.settimeout(5)
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass


def test_cut_every_breaks_each_connection_after_its_own_random_budget(proxy: FaultProxy) -> None:
    proxy.cut_every(100_000, 300_000, seed=5)
    kept = []
    for _ in range(4):
        with httpx.Client(base_url=proxy.url) as client:  # a connection of its own each time
            location = create(client, 1_000_000)
            with pytest.raises(httpx.TransportError):
                client.patch(location, content=os.urandom(1_000_000), headers={**CHUNK, "Upload-Offset": "0"})
        time.sleep(0.2)  # the receiver stores what came
        with httpx.Client(base_url=proxy.url) as client:
            kept.append(offset(client, location))
    assert all(100_000 <= n <= 300_000 for n in kept) and len(set(kept)) > 1, kept
    assert proxy.cuts == 4
    proxy.clear()
    with httpx.Client(base_url=proxy.url) as client:  # cleared: whole bodies again
        location = create(client, 500_000)
        r = client.patch(location, content=os.urandom(500_000), headers={**CHUNK, "Upload-Offset": "0"})
        assert r.status_code == 204


def test_drop_every_breaks_open_connections_at_random_intervals(proxy: FaultProxy) -> None:
    proxy.throttle(100_000)
    proxy.drop_every(0.3, 0.6, seed=3)
    with httpx.Client(base_url=proxy.url) as client:
        location = create(client, 1_000_000)
        started = time.monotonic()
        with pytest.raises(httpx.TransportError):
            client.patch(location, content=os.urandom(1_000_000), headers={**CHUNK, "Upload-Offset": "0"})
        assert time.monotonic() - started < 1.0
    assert proxy.cuts >= 1
    assert 0 < proxy.sent_up < 200_000
