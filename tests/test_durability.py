"""The receiver as an operator runs it (`pcir-upload serve`, a process of its own), killed with
SIGKILL in the middle of uploads and started again: every byte it acknowledged is still there,
no byte it did not prove is kept, and a final upload naming a DVD's worth of partials fits
through its request-head limit."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Keys
from pcir_upload.repository.keys import PUBLIC_KEY_NAME
from pcir_upload.repository.receive.store import completed_uploads
from receiverproc import ReceiverProcess

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}
MiB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path, keys: Keys) -> Iterator[ReceiverProcess]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>Contribute</title>")
    process = ReceiverProcess(tmp_path / "data", site, keys.folder / PUBLIC_KEY_NAME)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def head(url: str, location: str, **headers: str) -> int:
    r = httpx.head(url + location, headers={**TUS, **headers})
    assert r.status_code == 200, r.text
    return int(r.headers["Upload-Offset"])


def open_patch(url: str, location: str, at: int, total: int, **headers: str) -> socket.socket:
    """A PATCH whose head is sent, announcing `total` body bytes; the caller sends the body."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock.sendall(
        (
            f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {at}\r\n"
            f"Content-Length: {total}\r\n{extra}\r\n"
        ).encode()
    )
    return sock


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sigkill_mid_patch_keeps_every_acknowledged_byte(server: ReceiverProcess, tmp_path: Path) -> None:
    body = os.urandom(12 * MiB)
    r = httpx.post(server.url + "/files/", headers={**TUS, "Upload-Defer-Length": "1"})
    location = r.headers["Location"]

    sock = open_patch(server.url, location, 0, len(body))
    sock.sendall(body[: 5 * MiB])
    eventually(lambda: head(server.url, location) == 5 * MiB)
    acknowledged = 5 * MiB
    sock.sendall(body[5 * MiB : 9 * MiB])  # more arrives, nobody asks about it
    server.kill()
    sock.close()

    server.start()
    at = head(server.url, location)
    assert acknowledged <= at <= 9 * MiB
    data = tmp_path / "data" / "uploads" / location.rsplit("/", 1)[1] / "data"
    assert data.read_bytes() == body[:at]

    r = httpx.patch(
        server.url + location, content=body[at:],
        headers={**CHUNK, "Upload-Offset": str(at), "Upload-Length": str(len(body))},
    )
    assert r.status_code == 204
    server.kill()  # right after the answer: the completion must be on disk already
    [upload] = completed_uploads(tmp_path / "data")
    assert upload.data_path.read_bytes() == body


def test_sigkill_mid_checksummed_patch_keeps_none_of_its_bytes(server: ReceiverProcess, tmp_path: Path) -> None:
    first, second = os.urandom(MiB), os.urandom(6 * MiB)
    r = httpx.post(server.url + "/files/", content=first,
                   headers={**CHUNK, "Upload-Length": str(len(first) + len(second))})
    location = r.headers["Location"]
    digest = base64.b64encode(hashlib.sha256(second).digest()).decode()

    sock = open_patch(server.url, location, len(first), len(second), **{"Upload-Checksum": f"sha256 {digest}"})
    sock.sendall(second[: 5 * MiB])
    data = tmp_path / "data" / "uploads" / location.rsplit("/", 1)[1] / "data"
    eventually(lambda: data.stat().st_size == len(first) + 5 * MiB)
    assert head(server.url, location) == len(first)  # unproven bytes are not acknowledged
    server.kill()
    sock.close()

    server.start()
    assert head(server.url, location) == len(first)
    assert data.read_bytes() == first
    r = httpx.patch(server.url + location, content=second,
                    headers={**CHUNK, "Upload-Offset": str(len(first)), "Upload-Checksum": f"sha256 {digest}"})
    assert r.status_code == 204
    assert [u.data_path.read_bytes() for u in completed_uploads(tmp_path / "data")] == [first + second]


def test_a_final_of_1200_partials(server: ReceiverProcess, tmp_path: Path) -> None:
    """A 4.7 GB DVD in 4 MiB chunks is about 1,200 partial uploads, named in one header (~70 KB here)."""
    secret = {"Pcir-Upload-Secret": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()}
    pieces = [os.urandom(64) + i.to_bytes(4, "big") for i in range(1200)]
    urls = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for piece in pieces:
            r = client.post("/files/", content=piece, headers={
                **CHUNK, **secret, "Upload-Concat": "partial", "Upload-Length": str(len(piece)),
            })
            assert r.status_code == 201
            urls.append(server.url + r.headers["Location"])  # absolute, as tus-js-client sends them
    # Sent in pieces, as a real network delivers a 70 KB head: the receiver must wait for all of it.
    port = int(server.url.rsplit(":", 1)[1])
    request = (
        f"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Pcir-Upload-Secret: {secret['Pcir-Upload-Secret']}\r\nContent-Length: 0\r\n"
        f"Upload-Concat: final;{' '.join(urls)}\r\n\r\n"
    ).encode()
    assert len(request) > 64 * 1024
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(request), 8192):
            sock.sendall(request[start : start + 8192])
            time.sleep(0.002)
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 201"), answer
    assert f"upload-length: {sum(map(len, pieces))}\r\n" in answer.lower()
    [upload] = completed_uploads(tmp_path / "data")
    assert upload.data_path.read_bytes() == b"".join(pieces)
    assert len(list((tmp_path / "data" / "uploads").iterdir())) == 1

    # The log: one line for the whole contribution, none per partial or per request.
    line = server.wait_for_log(rf"upload {upload.id} completed: {upload.length} bytes from 1200 partial uploads")
    running = next(i for i, text in enumerate(server.log) if "Uvicorn running on" in text)
    assert server.log[running + 1 :] == [line]
