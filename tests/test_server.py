"""The embedded receiver, spoken to over real HTTP on 127.0.0.1 (uvicorn in a thread)."""

from __future__ import annotations

import base64
import email.utils
import errno
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from pcir_upload import cli
from pcir_upload.repository.receive import store as store_module
from pcir_upload.repository.receive.app import CONTENT_SECURITY_POLICY, create_app, media_type
from pcir_upload.repository.receive.limits import Limits
from pcir_upload.repository.receive.store import completed_uploads
from support import receiver

PUBLIC_KEY = bytes(range(32))
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}


@contextmanager
def running(data_dir: Path, site_dir: Path, **options: Any) -> Iterator[httpx.Client]:
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


# --- creation-with-upload and checksums


def sha256_header(body: bytes) -> dict[str, str]:
    return {"Upload-Checksum": "sha256 " + base64.b64encode(hashlib.sha256(body).digest()).decode()}


def create_with(client: httpx.Client, body: bytes, length: int | None = None, **headers: str) -> httpx.Response:
    size = {"Upload-Length": str(len(body) if length is None else length)}
    return client.post("/files/", content=body, headers={**CHUNK, **size, **headers})


def uploads_in(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "uploads").iterdir())


def test_creation_with_upload_stores_the_body(client: httpx.Client, data: Path) -> None:
    body = os.urandom(70_000)
    r = create_with(client, body[:50_000], len(body), **sha256_header(body[:50_000]))
    assert (r.status_code, r.headers["Upload-Offset"]) == (201, "50000")
    location = r.headers["Location"]
    assert offset(client, location) == 50_000
    assert patch(client, location, 50_000, body[50_000:], **sha256_header(body[50_000:])).status_code == 204
    [upload] = completed_uploads(data)
    assert upload.data_path.read_bytes() == body

    r = create_with(client, b"whole")
    assert (r.status_code, r.headers["Upload-Offset"]) == (201, "5")
    assert info(data, r.headers["Location"])["completed"] is not None


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [(b"abc", {"Upload-Length": "2"}, 413),
     (b"abc", {"Content-Type": "text/plain"}, 415),
     (b"abc", {"Upload-Checksum": "sha256 " + base64.b64encode(hashlib.sha256(b"abd").digest()).decode()}, 460),
     (b"abc", {"Upload-Checksum": "md5 kAFQmDzST7DWlj99KOF/cg=="}, 400)],
)
def test_a_refused_creation_body_leaves_no_upload(
    client: httpx.Client, data: Path, body: bytes, headers: dict[str, str], status: int
) -> None:
    assert create_with(client, body, **headers).status_code == status
    assert uploads_in(data) == []


def test_a_matching_checksum_is_accepted_and_a_wrong_one_keeps_nothing(client: httpx.Client, data: Path) -> None:
    location = create(client, 3000)
    assert patch(client, location, 0, b"a" * 1000, **sha256_header(b"a" * 1000)).status_code == 204
    r = patch(client, location, 1000, b"b" * 1000, **sha256_header(b"B" * 1000))
    assert r.status_code == 460 and r.headers["Tus-Resumable"] == "1.0.0"
    assert offset(client, location) == 1000
    folder = data / "uploads" / location.rsplit("/", 1)[1]
    assert (folder / "data").read_bytes() == b"a" * 1000
    assert not (folder / "unverified").exists()
    assert patch(client, location, 1000, b"b" * 2000, **sha256_header(b"b" * 2000)).status_code == 204
    assert (folder / "data").read_bytes() == b"a" * 1000 + b"b" * 2000


@pytest.mark.parametrize(
    "value", ["md5 kAFQmDzST7DWlj99KOF/cg==", "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=", "sha256 not-base64!",
              "sha256 " + base64.b64encode(b"short").decode(), "sha256"],
)
def test_unsupported_or_malformed_checksums_are_400(client: httpx.Client, value: str) -> None:
    location = create(client, 10)
    assert patch(client, location, 0, b"x", **{"Upload-Checksum": value}).status_code == 400
    assert offset(client, location) == 0


def raw_patch(port: int, location: str, at: int, total: int, first: bytes, **headers: str) -> socket.socket:
    """A PATCH announcing `total` body bytes of which only `first` are sent (so far)."""
    sock = socket.create_connection(("127.0.0.1", port))
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock.sendall(
        (
            f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {at}\r\n"
            f"Content-Length: {total}\r\n{extra}\r\n"
        ).encode() + first
    )
    return sock


def port_of(client: httpx.Client) -> int:
    return int(str(client.base_url).rsplit(":", 1)[1].strip("/"))


def test_a_checksummed_patch_cut_off_keeps_nothing(client: httpx.Client, data: Path) -> None:
    body = os.urandom(200_000)
    location = create(client, len(body) + 10)
    assert patch(client, location, 0, b"0123456789").status_code == 204
    folder = data / "uploads" / location.rsplit("/", 1)[1]
    with raw_patch(port_of(client), location, 10, len(body), body[:150_000], **sha256_header(body)):
        eventually(lambda: (folder / "data").stat().st_size == 150_010)
        # Unproven bytes are not reported: the checksum may yet fail.
        assert offset(client, location) == 10
        assert (folder / "unverified").read_text() == "10"
    eventually(lambda: not (folder / "unverified").exists())
    assert offset(client, location) == 10
    assert (folder / "data").read_bytes() == b"0123456789"


def test_unproven_bytes_left_by_a_crash_are_cut_off(data: Path, site: Path) -> None:
    with running(data, site) as client:
        location = create(client, 100)
        assert patch(client, location, 0, b"k" * 40).status_code == 204
    folder = data / "uploads" / location.rsplit("/", 1)[1]
    # As a server killed during a checksummed PATCH at offset 40 leaves it:
    (folder / "unverified").write_text("40")
    with open(folder / "data", "ab") as f:
        f.write(b"?" * 30)
    assert [u.offset for u in store_module.all_uploads(data)] == [40]
    with running(data, site) as client:
        assert offset(client, location) == 40
        assert (folder / "data").read_bytes() == b"k" * 40 and not (folder / "unverified").exists()


# --- durability: HEAD tells only what is on disk


class FsyncLog:
    """Records, for every fsync of an upload's `data`, how many bytes it had then."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: list[int] = []
        real = os.fsync

        def fsync(fd: int) -> None:
            real(fd)
            if os.readlink(f"/proc/self/fd/{fd}").endswith("/data"):
                self.synced.append(os.fstat(fd).st_size)

        monkeypatch.setattr(store_module.os, "fsync", fsync)


def test_head_during_a_patch_reports_only_fsynced_bytes(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = os.urandom(300_000)
    location = create(client, len(body))
    fsyncs = FsyncLog(monkeypatch)
    with raw_patch(port_of(client), location, 0, len(body), body[:100_000]) as sock:
        eventually(lambda: offset(client, location) == 100_000)
        seen = offset(client, location)
        assert fsyncs.synced and seen <= max(fsyncs.synced)
        sock.sendall(body[100_000:])
        assert sock.recv(1024).startswith(b"HTTP/1.1 204")
    assert offset(client, location) == len(body)


def test_a_long_patch_is_fsynced_every_4_mib(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    body = os.urandom(13 * 1024 * 1024)
    location = create(client, len(body))
    fsyncs = FsyncLog(monkeypatch)
    assert patch(client, location, 0, body).status_code == 204
    assert len(fsyncs.synced) >= 4
    assert all(b - a <= 4 * 1024 * 1024 + 1024 * 1024 for a, b in zip([0, *fsyncs.synced], fsyncs.synced))


# --- concatenation


def partial(client: httpx.Client, body: bytes, **headers: str) -> str:
    r = create_with(client, body, **{"Upload-Concat": "partial", **sha256_header(body), **headers})
    assert r.status_code == 201, r.text
    assert r.headers["Upload-Concat"] == "partial"
    return r.headers["Location"]


def final(client: httpx.Client, urls: list[str], **headers: str) -> httpx.Response:
    return client.post("/files/", headers={**TUS, "Upload-Concat": "final;" + " ".join(urls), **headers})


def test_partials_concatenate_into_one_complete_upload(client: httpx.Client, data: Path) -> None:
    pieces = [os.urandom(n) for n in (70_000, 1, 30_000)]
    parts = [partial(client, piece) for piece in pieces]
    head = client.head(parts[0], headers=TUS)
    assert (head.headers["Upload-Concat"], head.headers["Upload-Length"]) == ("partial", "70000")
    assert "Upload-Expires" in head.headers
    assert completed_uploads(data) == []  # a complete partial is no contribution

    urls = [parts[0], str(client.base_url) + parts[1], parts[2]]  # path-absolute or absolute
    r = final(client, urls)
    assert r.status_code == 201, r.text
    assert r.headers["Upload-Length"] == str(sum(map(len, pieces)))
    location = r.headers["Location"]
    [upload] = completed_uploads(data)
    assert upload.id == location.rsplit("/", 1)[1]
    assert upload.data_path.read_bytes() == b"".join(pieces)
    assert uploads_in(data) == [upload.id]  # the partials are gone
    assert {"id", "length", "created", "completed"} <= set(info(data, location))

    head = client.head(location, headers=TUS)
    assert head.headers["Upload-Concat"] == "final;" + " ".join(parts)
    assert head.headers["Upload-Length"] == head.headers["Upload-Offset"] == str(upload.length)
    assert "Upload-Expires" not in head.headers
    assert patch(client, location, upload.length, b"x").status_code == 403
    assert client.head(parts[0], headers=TUS).status_code == 404


def test_a_retried_final_is_the_same_upload_and_partials_join_one_final_only(client: httpx.Client) -> None:
    parts = [partial(client, b"one"), partial(client, b"two")]
    first = final(client, parts)
    assert first.status_code == 201
    again = final(client, parts)  # the answer was lost on the way, say
    assert (again.status_code, again.headers["Location"]) == (201, first.headers["Location"])
    assert final(client, parts[:1]).status_code == 409
    assert final(client, [parts[1], partial(client, b"three")]).status_code == 409


@pytest.mark.parametrize(
    "make_urls",
    [lambda ps, c: [ps[0], "/files/" + "A" * 32],  # no such upload
     lambda ps, c: [ps[0], create(c, 10)],  # not a partial
     lambda ps, c: [ps[0], partial(c, b"12345", **{"Upload-Length": "9"})]],  # not complete
)
def test_a_final_naming_anything_but_complete_partials_is_refused(
    client: httpx.Client, data: Path, make_urls: Callable[[list[str], httpx.Client], list[str]]
) -> None:
    parts = [partial(client, b"ok")]
    urls = make_urls(parts, client)
    before = uploads_in(data)
    assert final(client, urls).status_code in (400, 404)
    assert uploads_in(data) == before
    assert completed_uploads(data) == []


@pytest.mark.parametrize(
    "value",
    ["final;", "final;http://elsewhere.example/files/" + "A" * 32, "final;/other/" + "A" * 32,
     "final;/files/" + "A" * 32 + "?x=1", "final;/files/../" + "A" * 32, "sideways"],
)
def test_malformed_concat_headers_are_400(client: httpx.Client, value: str) -> None:
    assert client.post("/files/", headers={**TUS, "Upload-Concat": value, "Upload-Length": "1"}).status_code == 400


def test_a_final_with_a_wrong_length_or_a_body_is_400(client: httpx.Client, data: Path) -> None:
    parts = [partial(client, b"abc"), partial(client, b"de")]
    assert final(client, parts, **{"Upload-Length": "6"}).status_code == 400
    r = client.post("/files/", content=b"x", headers={**CHUNK, "Upload-Concat": "final;" + " ".join(parts)})
    assert r.status_code == 400
    assert len(uploads_in(data)) == 2
    assert final(client, parts, **{"Upload-Length": "5"}).status_code == 201


def test_a_final_over_the_contribution_limit_is_413_and_keeps_the_partials(data: Path, site: Path) -> None:
    with running(data, site, max_contribution_size=100, max_upload_size=80) as client:
        parts = [partial(client, b"x" * 60), partial(client, b"y" * 41)]
        assert final(client, parts).status_code == 413
        assert len(uploads_in(data)) == 2
        assert create_with(client, b"z" * 81).status_code == 413  # one upload: the smaller limit
        assert final(client, [parts[0]]).status_code == 201


def test_a_full_disk_during_concatenation_is_507_and_keeps_the_partials(
    client: httpx.Client, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = [partial(client, os.urandom(5000)) for _ in range(3)]
    before = {name: (data / "uploads" / name / "data").read_bytes() for name in uploads_in(data)}

    def full(fd: int, chunk: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_write", full)
    r = final(client, parts)
    assert r.status_code == 507
    assert {name: (data / "uploads" / name / "data").read_bytes() for name in uploads_in(data)} == before
    monkeypatch.undo()
    assert final(client, parts).status_code == 201


# --- expiration


def http_date(value: str) -> float:
    return email.utils.parsedate_to_datetime(value).timestamp()


def test_unfinished_uploads_say_when_they_expire(data: Path, site: Path) -> None:
    week = 7 * 24 * 3600
    with running(data, site) as client:
        r = client.post("/files/", headers={**TUS, "Upload-Length": "10"})
        assert abs(http_date(r.headers["Upload-Expires"]) - (time.time() + week)) < 5
        location = r.headers["Location"]
        assert abs(http_date(client.head(location, headers=TUS).headers["Upload-Expires"]) - (time.time() + week)) < 5
        r = patch(client, location, 0, b"12345")
        assert abs(http_date(r.headers["Upload-Expires"]) - (time.time() + week)) < 5
        r = patch(client, location, 5, b"67890")
        assert "Upload-Expires" not in r.headers
        assert "Upload-Expires" not in client.head(location, headers=TUS).headers
    with running(data, site, limits=Limits(expire_after=60)) as client:
        r = client.post("/files/", headers={**TUS, "Upload-Defer-Length": "1"})
        assert abs(http_date(r.headers["Upload-Expires"]) - (time.time() + 60)) < 5


def age(data: Path, location: str, seconds: float) -> None:
    """Make an upload look as if its last write was `seconds` ago."""
    path = data / "uploads" / location.rsplit("/", 1)[1] / "data"
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_expired_uploads_are_gone_and_then_removed(data: Path, site: Path) -> None:
    with running(data, site, limits=Limits(expire_after=3600), expire_every=0.2) as client:
        stale = create(client, 10)
        stale_partial = partial(client, b"done")
        fresh = create(client, 10)
        finished = create(client, 0)
        for location in (stale, stale_partial, finished):
            age(data, location, 3601)
        assert client.head(stale, headers=TUS).status_code == 410
        assert patch(client, stale, 0, b"x").status_code == 410
        assert final(client, [stale_partial]).status_code == 410
        eventually(lambda: len(uploads_in(data)) == 2)
        assert client.head(stale, headers=TUS).status_code == 404
        assert offset(client, fresh) == 0
        assert offset(client, finished) == 0  # complete uploads never expire
        assert [u.id for u in completed_uploads(data)] == [finished.rsplit("/", 1)[1]]


# --- upload secrets


SECRET = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
OTHER = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def test_an_upload_made_with_a_secret_answers_only_to_it(client: httpx.Client, data: Path) -> None:
    mine = {"Pcir-Upload-Secret": SECRET}
    r = client.post("/files/", headers={**TUS, "Upload-Length": "10", **mine})
    location = r.headers["Location"]
    stored = (data / "uploads" / location.rsplit("/", 1)[1] / "info.json").read_text()
    assert SECRET not in stored
    assert json.loads(stored)["owner"] == hashlib.sha256(SECRET.encode()).hexdigest()

    for them in ({}, {"Pcir-Upload-Secret": OTHER}):
        assert client.head(location, headers={**TUS, **them}).status_code == 404
        assert patch(client, location, 0, b"x", **them).status_code == 404
        assert client.delete(location, headers={**TUS, **them}).status_code == 404
    assert client.head(location, headers={**TUS, "Pcir-Upload-Secret": "short"}).status_code == 400
    assert patch(client, location, 0, b"12345", **mine).status_code == 204
    assert client.head(location, headers={**TUS, **mine}).headers["Upload-Offset"] == "5"
    assert client.delete(location, headers={**TUS, **mine}).status_code == 204

    open_upload = create(client, 10)  # made without a secret: its URL is the capability
    assert client.head(open_upload, headers={**TUS, **mine}).status_code == 200


def test_a_final_must_come_from_the_partials_creator(client: httpx.Client, data: Path) -> None:
    mine = {"Pcir-Upload-Secret": SECRET}
    parts = [partial(client, b"a", **mine), partial(client, b"b", **mine)]
    assert final(client, parts).status_code == 404
    assert final(client, parts, **{"Pcir-Upload-Secret": OTHER}).status_code == 404
    assert final(client, [parts[0], partial(client, b"c")], **mine).status_code == 404
    assert len(uploads_in(data)) == 3
    r = final(client, parts, **mine)
    assert r.status_code == 201
    assert client.head(r.headers["Location"], headers=TUS).status_code == 404
    assert final(client, parts).status_code == 404  # a retry by someone else learns nothing
    assert client.head(r.headers["Location"], headers={**TUS, **mine}).status_code == 200


def test_a_malformed_secret_is_400(client: httpx.Client, data: Path) -> None:
    for bad in ("x" * 42, "x" * 44, "+" * 43):
        r = client.post("/files/", headers={**TUS, "Upload-Length": "1", "Pcir-Upload-Secret": bad})
        assert r.status_code == 400
    assert uploads_in(data) == []


# --- other origins


def test_other_origins_are_refused(client: httpx.Client) -> None:
    own = str(client.base_url)
    assert client.post("/files/", headers={**TUS, "Upload-Length": "1", "Origin": own}).status_code == 201
    # Our own page's POSTs say "null" under Referrer-Policy: no-referrer, as the Fetch standard has it.
    assert client.post("/files/", headers={**TUS, "Upload-Length": "1", "Origin": "null"}).status_code == 201
    for origin in ("https://evil.example", "file://", own.replace("http:", "https:"), own + "1"):
        r = client.post("/files/", headers={**TUS, "Upload-Length": "1", "Origin": origin})
        assert r.status_code == 403, origin
        assert "Access-Control-Allow-Origin" not in r.headers
        assert client.get("/api/config", headers={"Origin": origin}).status_code == 403
        assert client.options("/files/", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}).status_code == 403
    preflight = client.options("/files/", headers={"Origin": "null", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers  # so an opaque origin elsewhere gets nowhere
    assert client.get("/", headers={"Origin": "https://evil.example"}).status_code == 200  # the page itself


def test_configured_origins_get_cors(data: Path, site: Path) -> None:
    origin = "https://hospital.example"
    with running(data, site, allowed_origins=[origin + "/", "http://other.example:8080"]) as client:
        r = client.options("/files/", headers={
            "Origin": origin, "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "tus-resumable,upload-offset,upload-checksum,content-type",
        })
        assert r.status_code == 204
        assert r.headers["Access-Control-Allow-Origin"] == origin
        assert "PATCH" in r.headers["Access-Control-Allow-Methods"]
        allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"tus-resumable", "upload-offset", "upload-length", "upload-checksum", "upload-concat",
                "upload-defer-length", "pcir-upload-secret", "content-type"} <= allowed

        r = client.post("/files/", headers={**TUS, "Upload-Length": "3", "Origin": origin})
        assert r.status_code == 201 and r.headers["Access-Control-Allow-Origin"] == origin
        exposed = {h.strip().lower() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"location", "upload-offset", "upload-length", "upload-expires", "tus-resumable",
                "tus-version", "tus-extension", "tus-max-size"} <= exposed
        location = r.headers["Location"]
        r = patch(client, location, 0, b"abc", Origin=origin)
        assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == origin
        assert client.get("/api/config", headers={"Origin": "http://other.example:8080"}).status_code == 200
        assert client.head(location, headers={**TUS, "Origin": "https://evil.example"}).status_code == 403
        tus_options = client.options("/files/", headers={"Origin": origin})  # tus discovery, no preflight
        assert tus_options.headers["Tus-Extension"] and tus_options.headers["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize("origin", ["hospital.example", "ftp://x.example", "https://x.example/path", "*"])
def test_allowed_origins_must_be_origins(data: Path, site: Path, origin: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        create_app(data, site, PUBLIC_KEY, allowed_origins=[origin])


def test_serve_takes_allowed_origins() -> None:
    args = cli.parser().parse_args(["serve", "--allow-origin", "https://a.example", "--allow-origin", "http://b:81"])
    assert args.allow_origin == ["https://a.example", "http://b:81"]
    assert cli.main(["serve", "--allow-origin", "a.example"]) == 1


# --- the log


def test_one_log_line_per_contribution_event(data: Path, site: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pcir_upload.repository.receive")
    with running(data, site, limits=Limits(expire_after=3600), expire_every=0.2) as client:
        whole = create(client, 5)
        assert patch(client, whole, 0, b"12345").status_code == 204
        parts = [partial(client, b"ab"), partial(client, b"cd")]
        joined = final(client, parts).headers["Location"]
        dropped = create(client, None)
        assert client.delete(dropped, headers=TUS).status_code == 204
        stale = create(client, 9)
        age(data, stale, 4000)
        eventually(lambda: not (data / "uploads" / stale.rsplit("/", 1)[1]).exists())
    lines = [r.getMessage() for r in caplog.records if r.name == "pcir_upload.repository.receive"]
    ids = [u.rsplit("/", 1)[1] for u in (whole, joined, dropped, stale)]
    assert lines == [
        f"upload {ids[0]} created: length 5, 0 bytes with it",
        f"upload {ids[0]} completed: 5 bytes",
        f"upload {ids[1]} completed: 4 bytes from 2 partial uploads",
        f"upload {ids[2]} created: length deferred, 0 bytes with it",
        f"upload {ids[2]} terminated: 0 bytes",
        f"upload {ids[3]} created: length 9, 0 bytes with it",
        f"upload {ids[3]} expired: 0 bytes of 9",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "pcir_upload.repository.receive")


def test_a_whole_contribution_is_terminated_by_its_secret(client: httpx.Client) -> None:
    """Cancel: every unfinished upload of one secret goes, even one whose address the
    client never learned; other creators' uploads and finished contributions stay."""
    mine, theirs = "m" * 43, "t" * 43
    made = []
    for secret in (mine, mine, theirs):
        r = client.post("/files/", headers={**TUS, "Upload-Length": "10", "Upload-Concat": "partial",
                                            "Pcir-Upload-Secret": secret})
        assert r.status_code == 201
        made.append(r.headers["Location"])
    r = client.delete("/files/", headers={**TUS, "Pcir-Upload-Secret": mine})
    assert r.status_code == 204 and r.headers["Pcir-Uploads-Deleted"] == "2"
    assert [client.head(u, headers={**TUS, "Pcir-Upload-Secret": mine}).status_code for u in made[:2]] == [404, 404]
    assert client.head(made[2], headers={**TUS, "Pcir-Upload-Secret": theirs}).status_code == 200
    assert client.delete("/files/", headers=TUS).status_code == 400
    # A chunk of the cancelled contribution that finishes arriving afterwards is not kept.
    late = client.post("/files/", headers={**TUS, "Upload-Length": "3", "Upload-Concat": "partial",
                                           "Pcir-Upload-Secret": mine, "Content-Type": "application/offset+octet-stream"},
                       content=b"abc")
    assert late.status_code == 410
    assert client.delete("/files/", headers={**TUS, "Pcir-Upload-Secret": mine}).headers["Pcir-Uploads-Deleted"] == "0"
