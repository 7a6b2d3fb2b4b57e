"""The embedded receiver, spoken to over real HTTP on 127.0.0.1 (uvicorn in a thread)."""

from __future__ import annotations

import base64
import errno
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from pcir_upload.server import store as store_module
from pcir_upload.server.app import CONTENT_SECURITY_POLICY, media_type
from pcir_upload.server.store import completed_uploads
from support import receiver

PUBLIC_KEY = bytes(range(32))
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}


@contextmanager
def running(data_dir: Path, site_dir: Path, **options: int) -> Iterator[httpx.Client]:
    """A receiver on a free port for the duration of the block, and a client for it."""
    with receiver(data_dir, site_dir, PUBLIC_KEY, **options) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>Contribute</title>")
    (site / "app.mjs").write_text("export const x = 1;")
    (site / "module.wasm").write_bytes(b"\0asm\1\0\0\0")
    (site / "contribute.py").write_text("print('hi')")
    (site / "pkg-1.0-py3-none-any.whl").write_bytes(b"PK\5\6" + bytes(18))
    return site


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data: Path, site: Path) -> Iterator[httpx.Client]:
    with running(data, site) as client:
        yield client


def create(client: httpx.Client, length: int | None) -> str:
    headers = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    r = client.post("/files/", headers={**TUS, **headers})
    assert r.status_code == 201, r.text
    return r.headers["Location"]


def offset(client: httpx.Client, location: str) -> int:
    r = client.head(location, headers=TUS)
    assert r.status_code == 200
    return int(r.headers["Upload-Offset"])


def patch(client: httpx.Client, location: str, at: int, body: bytes, **headers: str) -> httpx.Response:
    return client.patch(location, content=body, headers={**CHUNK, "Upload-Offset": str(at), **headers})


def info(data: Path, location: str) -> dict[str, object]:
    return json.loads((data / "uploads" / location.rsplit("/", 1)[1] / "info.json").read_text())


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- tus happy paths


def test_options_announces_protocol(client: httpx.Client) -> None:
    r = client.options("/files/")
    assert r.status_code == 204
    assert r.headers["Tus-Resumable"] == "1.0.0"
    assert r.headers["Tus-Version"] == "1.0.0"
    assert r.headers["Tus-Extension"] == (
        "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration,concatenation"
    )
    assert r.headers["Tus-Checksum-Algorithm"] == "sha256"
    assert r.headers["Tus-Max-Size"] == str(64 * 1024**3)
    assert r.headers["Cache-Control"] == "no-store"


def test_upload_with_known_length(client: httpx.Client, data: Path) -> None:
    body = os.urandom(300_000)
    r = client.post("/files/", headers={**TUS, "Upload-Length": str(len(body)), "Upload-Metadata": "name aGk="})
    assert r.status_code == 201
    assert r.headers["Upload-Offset"] == "0"
    location = r.headers["Location"]
    assert location.startswith("/files/") and len(location) == len("/files/") + 32

    head = client.head(location, headers=TUS)
    assert (head.status_code, head.headers["Upload-Offset"], head.headers["Upload-Length"]) == (200, "0", str(len(body)))
    assert head.headers["Cache-Control"] == "no-store"

    r = patch(client, location, 0, body[:100_000])
    assert (r.status_code, r.headers["Upload-Offset"]) == (204, "100000")
    assert info(data, location)["completed"] is None
    assert completed_uploads(data) == []

    r = patch(client, location, 100_000, body[100_000:])
    assert (r.status_code, r.headers["Upload-Offset"]) == (204, str(len(body)))

    stored = info(data, location)
    assert stored["length"] == len(body) and stored["completed"] is not None
    assert set(stored) == {"id", "length", "created", "completed"}  # no metadata kept
    [upload] = completed_uploads(data)
    assert upload.id == location.rsplit("/", 1)[1]
    assert (upload.offset, upload.length) == (len(body), len(body))
    assert upload.data_path.read_bytes() == body

    # A repeated empty PATCH at the end is harmless.
    assert patch(client, location, len(body), b"").status_code == 204


def test_large_patch(client: httpx.Client, data: Path) -> None:
    body = os.urandom(16 * 1024 * 1024)  # the client's chunk size
    location = create(client, len(body) + 1)
    assert patch(client, location, 0, body).headers["Upload-Offset"] == str(len(body))
    assert patch(client, location, len(body), b"!").status_code == 204
    [upload] = completed_uploads(data)
    assert upload.data_path.read_bytes() == body + b"!"


def test_deferred_length_set_by_last_patch(client: httpx.Client, data: Path) -> None:
    location = create(client, None)
    head = client.head(location, headers=TUS)
    assert head.headers["Upload-Defer-Length"] == "1" and "Upload-Length" not in head.headers

    assert patch(client, location, 0, b"a" * 1000).status_code == 204
    assert info(data, location) | {"created": None} == {
        "id": location.rsplit("/", 1)[1], "length": None, "created": None, "completed": None
    }
    r = patch(client, location, 1000, b"b" * 500, **{"Upload-Length": "1500"})
    assert (r.status_code, r.headers["Upload-Offset"]) == (204, "1500")

    head = client.head(location, headers=TUS)
    assert head.headers["Upload-Length"] == "1500" and "Upload-Defer-Length" not in head.headers
    assert info(data, location)["completed"] is not None
    [upload] = completed_uploads(data)
    assert upload.data_path.read_bytes() == b"a" * 1000 + b"b" * 500


def test_deferred_length_cannot_change_or_shrink(client: httpx.Client) -> None:
    location = create(client, None)
    assert patch(client, location, 0, b"x" * 100).status_code == 204
    assert patch(client, location, 100, b"", **{"Upload-Length": "50"}).status_code == 400
    assert patch(client, location, 100, b"", **{"Upload-Length": "200"}).status_code == 204
    assert patch(client, location, 100, b"", **{"Upload-Length": "300"}).status_code == 400
    assert patch(client, location, 100, b"y" * 100, **{"Upload-Length": "200"}).status_code == 204


def test_empty_upload_is_complete_at_once(client: httpx.Client, data: Path) -> None:
    location = create(client, 0)
    assert info(data, location)["completed"] is not None
    assert [u.id for u in completed_uploads(data)] == [location.rsplit("/", 1)[1]]


def test_delete_removes_upload(client: httpx.Client, data: Path) -> None:
    location = create(client, 10)
    assert patch(client, location, 0, b"12345").status_code == 204
    r = client.delete(location, headers=TUS)
    assert r.status_code == 204 and r.headers["Tus-Resumable"] == "1.0.0"
    assert not (data / "uploads" / location.rsplit("/", 1)[1]).exists()
    assert client.head(location, headers=TUS).status_code == 404
    assert client.delete(location, headers=TUS).status_code == 404


# --- refusals


def test_wrong_offset_is_409(client: httpx.Client) -> None:
    location = create(client, 10)
    assert patch(client, location, 3, b"abc").status_code == 409
    assert patch(client, location, 0, b"abc").status_code == 204
    assert patch(client, location, 0, b"abc").status_code == 409
    assert offset(client, location) == 3


def test_missing_tus_resumable_is_412(client: httpx.Client) -> None:
    r = client.post("/files/", headers={"Upload-Length": "5"})
    assert r.status_code == 412 and r.headers["Tus-Version"] == "1.0.0"
    location = create(client, 5)
    assert client.head(location).status_code == 412
    assert client.patch(location, content=b"x", headers={"Content-Type": CHUNK["Content-Type"], "Upload-Offset": "0"}).status_code == 412
    assert client.delete(location, headers={"Tus-Resumable": "0.2.2"}).status_code == 412
    assert offset(client, location) == 0


def test_wrong_content_type_is_415(client: httpx.Client) -> None:
    location = create(client, 5)
    r = client.patch(location, content=b"x", headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/octet-stream"})
    assert r.status_code == 415
    assert offset(client, location) == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Upload-Length": "-1"}, {"Upload-Length": "abc"}, {"Upload-Defer-Length": "0"},
     {"Upload-Length": "5", "Upload-Defer-Length": "1"}],
)
def test_bad_creation_is_400(client: httpx.Client, headers: dict[str, str], data: Path) -> None:
    assert client.post("/files/", headers={**TUS, **headers}).status_code == 400
    assert list((data / "uploads").iterdir()) == []


def test_bad_offset_header_is_400(client: httpx.Client) -> None:
    location = create(client, 5)
    assert patch(client, location, 0, b"x", **{"Upload-Offset": "-1"}).status_code == 400
    assert client.patch(location, content=b"x", headers=CHUNK).status_code == 400


def test_bytes_beyond_length_are_413_and_not_kept(client: httpx.Client, data: Path) -> None:
    location = create(client, 10)
    assert patch(client, location, 0, b"1234").status_code == 204
    assert patch(client, location, 4, b"567890XYZ").status_code == 413
    assert offset(client, location) == 4
    assert patch(client, location, 4, b"567890").status_code == 204
    [upload] = completed_uploads(data)
    assert upload.data_path.read_bytes() == b"1234567890"
    assert patch(client, location, 10, b"more").status_code == 413
    assert upload.data_path.read_bytes() == b"1234567890"


def test_over_max_size_is_413(data: Path, site: Path) -> None:
    with running(data, site, max_upload_size=1000) as client:
        assert client.options("/files/").headers["Tus-Max-Size"] == "1000"
        assert client.post("/files/", headers={**TUS, "Upload-Length": "1001"}).status_code == 413
        location = create(client, 1000)
        assert patch(client, location, 0, b"x" * 1000).status_code == 204

        deferred = create(client, None)
        assert patch(client, deferred, 0, b"x" * 600).status_code == 204
        assert patch(client, deferred, 600, b"x" * 401).status_code == 413
        assert patch(client, deferred, 600, b"", **{"Upload-Length": "1001"}).status_code == 413
        assert offset(client, deferred) == 600


@pytest.mark.parametrize(
    "path",
    ["/files/nope", "/files/..%2Fx", "/files/" + "A" * 31 + ".", "/files/" + "A" * 33, "/files/" + "A" * 32 + "%0A"],
)
def test_unknown_or_malformed_id_is_404(client: httpx.Client, path: str) -> None:
    assert client.head(path, headers=TUS).status_code == 404
    assert client.patch(path, content=b"x", headers={**CHUNK, "Upload-Offset": "0"}).status_code == 404
    assert client.delete(path, headers=TUS).status_code == 404


def test_well_formed_unknown_id_is_404(client: httpx.Client) -> None:
    path = "/files/" + "A" * 32
    assert client.head(path, headers=TUS).status_code == 404
    assert patch(client, path, 0, b"x").status_code == 404
    assert client.delete(path, headers=TUS).status_code == 404


# --- durability


def test_patch_cut_off_mid_body_keeps_what_arrived(client: httpx.Client, data: Path) -> None:
    body = os.urandom(200_000)
    location = create(client, len(body))
    sent = body[:120_000]
    port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + sent
        )
        eventually(lambda: offset(client, location) == len(sent))

    # Once the server has seen the disconnect, the upload is free to resume.
    def resumed() -> bool:
        at = offset(client, location)
        r = patch(client, location, at, body[at:])
        assert r.status_code in (204, 423), r.text
        return r.status_code == 204

    eventually(resumed)
    [upload] = completed_uploads(data)
    assert upload.data_path.read_bytes() == body


def test_restart_sees_same_offsets(data: Path, site: Path) -> None:
    with running(data, site) as client:
        known = create(client, 100)
        deferred = create(client, None)
        assert patch(client, known, 0, b"k" * 40).status_code == 204
        assert patch(client, deferred, 0, b"d" * 70).status_code == 204

    with running(data, site) as client:
        head = client.head(known, headers=TUS)
        assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("40", "100")
        head = client.head(deferred, headers=TUS)
        assert (head.headers["Upload-Offset"], head.headers["Upload-Defer-Length"]) == ("70", "1")
        assert patch(client, known, 40, b"k" * 60).status_code == 204
    assert [u.data_path.read_bytes() for u in completed_uploads(data)] == [b"k" * 100]


def test_disk_full_is_507_and_loses_nothing_acknowledged(
    client: httpx.Client, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = create(client, 100_000)
    assert patch(client, location, 0, b"a" * 1000).status_code == 204

    real_write = store_module._write
    room = [5000]

    def write_until_full(fd: int, chunk: bytes) -> None:
        if len(chunk) > room[0]:
            real_write(fd, chunk[: room[0]])
            room[0] = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, chunk)
        room[0] -= len(chunk)

    monkeypatch.setattr(store_module, "_write", write_until_full)
    r = patch(client, location, 1000, b"b" * 50_000)
    assert r.status_code == 507
    assert r.text == "The server's disk is full"
    assert r.headers["Tus-Resumable"] == "1.0.0"
    assert offset(client, location) == 1000
    assert (data / "uploads" / location.rsplit("/", 1)[1] / "data").read_bytes() == b"a" * 1000

    monkeypatch.setattr(store_module, "_write", real_write)
    assert patch(client, location, 1000, b"b" * 99_000).status_code == 204
    assert info(data, location)["completed"] is not None


def test_concurrent_patch_is_locked(client: httpx.Client) -> None:
    location = create(client, 1000)
    port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                f"Content-Length: 1000\r\n\r\n"
            ).encode() + b"x" * 10
        )
        eventually(lambda: offset(client, location) == 10)
        assert patch(client, location, 10, b"y").status_code == 423
        assert client.delete(location, headers=TUS).status_code == 423
        sock.sendall(b"x" * 990)
        assert sock.recv(1024).startswith(b"HTTP/1.1 204")
    assert offset(client, location) == 1000


# --- the page and its headers


def test_security_headers_everywhere(client: httpx.Client) -> None:
    responses = [
        client.get("/"),
        client.options("/files/"),
        client.head("/files/" + "A" * 32, headers=TUS),
        client.get("/no-such-file"),
        client.get("/api/config"),
    ]
    assert [r.status_code for r in responses] == [200, 204, 404, 404, 200]
    for r in responses:
        assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert r.headers["Cross-Origin-Resource-Policy"] == "same-origin"
        assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Permissions-Policy"] == "camera=(), microphone=(), geolocation=()"
        assert "Access-Control-Allow-Origin" not in r.headers
    assert "'wasm-unsafe-eval'" in CONTENT_SECURITY_POLICY and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


def test_static_site(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "Contribute" in r.text
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Cache-Control"] == "no-cache"
    r = client.get("/module.wasm")
    assert (r.headers["Content-Type"], r.content) == ("application/wasm", b"\0asm\1\0\0\0")
    assert client.get("/app.mjs").headers["Content-Type"].split(";")[0] == "text/javascript"
    # Not the platform's guesses (text/x-python, none at all for wheels).
    assert client.get("/contribute.py").headers["Content-Type"] == "text/plain; charset=utf-8"
    assert client.get("/pkg-1.0-py3-none-any.whl").headers["Content-Type"] == "application/zip"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.wasm", "application/wasm"), ("a.mjs", "text/javascript"), ("a.js", "text/javascript"),
     ("a.json", "application/json"), ("a.whl", "application/zip"), ("a.zip", "application/zip"),
     ("a.py", "text/plain"), ("a.css", "text/css"), ("a.svg", "image/svg+xml")],
)
def test_media_types(name: str, expected: str) -> None:
    assert media_type(name).split(";")[0] == expected


def test_api_config(client: httpx.Client) -> None:
    r = client.get("/api/config")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    config = r.json()
    assert config["upload_endpoint"] == "/files/"
    assert "=" not in config["public_key"]
    assert base64.urlsafe_b64decode(config["public_key"] + "=") == PUBLIC_KEY
