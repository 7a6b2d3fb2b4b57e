"""What several tests share: a real receiver on 127.0.0.1, and the CPython stand-ins for the
browser's adapters (pyca/cryptography for WebCrypto, httpx for fetch, the file system for File).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from datetime import datetime, timezone
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pcir_upload.page.disc.disc import DiscFile, DiscReadError
from pcir_upload.repository.keys import PublicKeys
from pcir_upload.repository.receive.app import create_app
from pcir_upload.page.upload.tus import Response, TransportError


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free port of 127.0.0.1; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def receiver(data_dir: Path, site_dir: Path, keys: PublicKeys | bytes, **options: Any) -> Iterator[str]:
    """The receiver app on a free port, with both public keys (or a bare X25519 one)."""
    if isinstance(keys, PublicKeys):
        options.setdefault("hybrid_public_key", keys.hybrid)
        keys = keys.classical
    with running(create_app(data_dir, site_dir, keys, **options)) as url:
        yield url


class PycaPrimitives:
    """HPKE's primitives from pyca/cryptography: the reference the WebCrypto adapter mirrors."""

    async def generate_x25519(self) -> tuple[Any, bytes]:
        key = x25519.X25519PrivateKey.generate()
        return key, key.public_key().public_bytes_raw()

    async def x25519(self, private_key: Any, public_key: bytes) -> bytes:
        return private_key.exchange(x25519.X25519PublicKey.from_public_bytes(public_key))

    async def mlkem768_encapsulate(self, public_key: bytes) -> tuple[bytes, bytes]:
        return mlkem.MLKEM768PublicKey.from_public_bytes(public_key).encapsulate()

    async def aes_gcm_seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        return AESGCM(key).encrypt(nonce, plaintext, aad)


class HttpxTransport:
    """The tus transport over httpx, as fetch is in the browser."""

    def __init__(self, timeout: float = 30.0):
        self._client = httpx.AsyncClient(timeout=timeout)

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> Response:
        try:
            r = await self._client.request(method, url, headers=dict(headers), content=body)
        except httpx.HTTPError as exc:
            raise TransportError(str(exc)) from None
        return Response(r.status_code, {k.lower(): v for k, v in r.headers.items()})

    async def close(self) -> None:
        await self._client.aclose()


class FolderDisc:
    """A folder on this computer as the disc: its listing and a DiscReader over it.

    `unreadable` paths fail as a scratched disc does; `reads` logs every (path, offset, length)
    asked for, so tests can check that a scan reads heads, not whole images.
    """

    def __init__(self, root: Path, unreadable: Iterable[str] = ()):
        self.root = root
        self.listing = sorted(
            (DiscFile(p.relative_to(root).as_posix(), p.stat().st_size)
             for p in root.rglob("*") if p.is_file()),
            key=lambda f: f.path,
        )
        self.unreadable = set(unreadable)
        self.reads: list[tuple[str, int, int]] = []
        self.batches: list[int] = []

    async def read(self, path: str, offset: int, length: int) -> bytes:
        self.reads.append((path, offset, length))
        if path in self.unreadable:
            raise DiscReadError("The computer could not read this file.")
        try:
            with open(self.root / path, "rb") as f:
                f.seek(offset)
                return f.read(length)
        except OSError as exc:
            raise DiscReadError(f"could not read {path}: {exc.strerror}") from None

    async def read_heads(self, paths: Sequence[str], length: int) -> list[bytes | DiscReadError]:
        """The browser's one-call-per-batch read, done file by file here."""
        self.batches.append(len(paths))
        heads: list[bytes | DiscReadError] = []
        for path in paths:
            try:
                heads.append(await self.read(path, 0, length))
            except DiscReadError as exc:
                heads.append(exc)
        return heads


def files_of(root: Path) -> dict[str, bytes]:
    """Every file below `root` by relative path, for byte-for-byte comparison."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def make_uploads(data: Path, count: int, *, owner: str | None = None, partial: bool = False, size: int = 0) -> list[str]:
    """Upload folders written straight to disk, as a receiver would have left them (faster than
    asking one for thousands). Complete partials if `partial`, else unfinished uploads."""
    root = data / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ids = []
    for i in range(count):
        upload_id = base64.urlsafe_b64encode(os.urandom(24)).decode()
        folder = root / upload_id
        folder.mkdir()
        (folder / "data").write_bytes(i.to_bytes(4, "big") * (size // 4) if partial else b"")
        info: dict[str, object] = {"id": upload_id, "length": size if partial else 1000, "created": created,
                                   "completed": None}
        if partial:
            info["concat"] = "partial"
        if owner is not None:
            info["owner"] = owner
        (folder / "info.json").write_text(json.dumps(info))
        ids.append(upload_id)
    return ids
