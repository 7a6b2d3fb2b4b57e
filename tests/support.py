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


_LOCAL, _CENTRAL, _ZIP64_END = b"PK\x03\x04", b"PK\x01\x02", b"PK\x06\x06"
# Where a field lies: in the local header and the central directory header, from their start
# (flags and method); in the central record's ZIP64 extra, from its start (sizes and offset).
_HEADER_FIELDS = {"flags": (6, 8), "method": (8, 10)}
_EXTRA_FIELDS = {"size": 4, "compressed": 12, "offset": 20}
_END_FIELDS = {"entries": (24, 32), "directory_size": (40,), "directory_offset": (48,)}


def lied(package: bytes, name: str, **fields: int) -> bytes:
    """`package` as a hostile writer makes it: entry `name` with `flags` or `method` rewritten
    in its local header and central directory header, `size`, `compressed` or `offset` in
    its central record's ZIP64 extra."""
    data, encoded = bytearray(package), name.encode()
    at = data.find(encoded)
    while at != -1:
        local = data[at - 30:at - 26] == _LOCAL and int.from_bytes(data[at - 4:at - 2], "little") == len(encoded)
        central = data[at - 46:at - 42] == _CENTRAL and int.from_bytes(data[at - 18:at - 16], "little") == len(encoded)
        for field, value in fields.items():
            if field in _HEADER_FIELDS and (local or central):
                start = at - 30 + _HEADER_FIELDS[field][0] if local else at - 46 + _HEADER_FIELDS[field][1]
                data[start:start + 2] = value.to_bytes(2, "little")
            elif field in _EXTRA_FIELDS and central:
                start = at + len(encoded) + _EXTRA_FIELDS[field]
                data[start:start + 8] = value.to_bytes(8, "little")
        at = data.find(encoded, at + 1)
    return bytes(data)


def ending(package: bytes, **fields: int) -> bytes:
    """`package` whose ZIP64 end record declares other `entries` (both of its counts),
    `directory_size` or `directory_offset` than its central directory has."""
    data = bytearray(package)
    at = data.rindex(_ZIP64_END)
    for field, value in fields.items():
        for start in _END_FIELDS[field]:
            data[at + start:at + start + 8] = value.to_bytes(8, "little")
    return bytes(data)


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
