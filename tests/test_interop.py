"""Interoperability with the reference tus implementations, pinned in package.json:
tus-js-client (run under node) uploads to our receiver, with and without parallel uploads
(concatenation); and our Python tus client uploads to @tus/server with its file store, so
our client does not lean on anything only our receiver does."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pcir_upload.page.upload.contribution import Progress, contribute
from pcir_upload.page.seal.envelope import SUITE_HYBRID, Recipient
from pcir_upload.page.package.package import LocalPacker
from pcir_upload.repository.receive.store import completed_uploads
from pcir_upload.page.upload.tus import Link, State, Target, Upload, discover
from pcir_upload.repository.unpack import unpack_upload
from support import FolderDisc, HttpxTransport, PycaPrimitives, files_of, receiver

INTEROP = Path(__file__).parent / "interop"
ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def node(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(INTEROP / script), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("parallel", "during_creation"),
    [(1, "no"), (2, "no"), (2, "yes")],
    ids=["one-upload", "parallel-concatenated", "parallel-data-in-post"],
)
def test_tus_js_client_uploads_to_our_receiver(tmp_path: Path, parallel: int, during_creation: str) -> None:
    body = os.urandom(3 * MiB + 12_345)
    source = tmp_path / "disc.bin"
    source.write_bytes(body)
    data = tmp_path / "data"
    with receiver(data, tmp_path, bytes(32)) as url:
        done = node("tus_js_upload.mjs", url + "/files/", str(source), str(256 * 1024), str(parallel), during_creation)
        assert done.returncode == 0, done.stderr
    upload_url = json.loads(done.stdout)["url"]

    [upload] = completed_uploads(data)
    assert upload_url == f"{url}/files/{upload.id}"
    assert upload.data_path.read_bytes() == body
    assert [p.name for p in (data / "uploads").iterdir()] == [upload.id]  # no partial left behind
    if parallel > 1:
        assert (upload.concat, len(upload.parts)) == ("final", parallel)
    else:
        assert upload.concat is None


@pytest.fixture
def tus_node_server(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """@tus/server with @tus/file-store in a node process: (endpoint, store folder, extensions)."""
    folder = tmp_path / "tus-store"
    process = subprocess.Popen(
        ["node", str(INTEROP / "tus_node_server.mjs"), str(folder)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else "no output"
        started = json.loads(line)
        yield f"http://127.0.0.1:{started['port']}/files/", folder, started["extensions"]
    finally:
        process.kill()
        process.wait(10)


def test_our_client_uploads_to_tus_node_server(tus_node_server: tuple[str, Path, str]) -> None:
    endpoint, folder, extensions = tus_node_server
    chunks = [os.urandom(n) for n in (300_000, 1_000_000, 77_777)]

    async def send() -> Upload:
        transport = HttpxTransport()
        link = Link(transport)
        upload = Upload(link, Target(endpoint, await discover(link, endpoint)))
        try:
            await upload.create()
            for i, chunk in enumerate(chunks):
                await upload.append(chunk, final=i == len(chunks) - 1)
        finally:
            await transport.close()
        return upload

    upload = asyncio.run(send())
    assert upload.state is State.DONE and upload.url is not None
    upload_id = upload.url.rstrip("/").rsplit("/", 1)[1]
    assert (folder / upload_id).read_bytes() == b"".join(chunks)
    assert json.loads((folder / f"{upload_id}.json").read_text())["size"] == sum(map(len, chunks))


def test_what_tus_node_server_supports(tus_node_server: tuple[str, Path, str]) -> None:
    """Recorded for the client's sake: @tus/server's file store has neither concatenation nor
    checksums, so a client must not require them of every tus server."""
    endpoint, _, extensions = tus_node_server
    advertised = httpx.options(endpoint, headers={"Tus-Resumable": "1.0.0"}).headers["Tus-Extension"]
    assert advertised.split(",") == extensions.split(",") == [
        "creation", "creation-with-upload", "creation-defer-length", "termination", "expiration",
    ]
    r = httpx.post(endpoint, headers={"Tus-Resumable": "1.0.0", "Upload-Concat": "partial", "Upload-Length": "1"})
    assert r.status_code >= 400  # it refuses concatenation outright


def test_a_contribution_falls_back_to_one_upload_on_tus_node_server(
    tus_node_server: tuple[str, Path, str], tmp_path: Path, disc: Path, keys
) -> None:
    """Without concatenation: one upload, deferred length, chunks in order, and it unpacks."""
    endpoint, folder, _ = tus_node_server
    folder_disc = FolderDisc(disc)
    progress: list[Progress] = []
    records: list[object] = []

    async def send():
        transport = HttpxTransport()
        try:
            return await contribute(
                listing=folder_disc.listing, packer=LocalPacker(folder_disc), manifest={"terms": {"version": "test"}},
                recipient=Recipient(SUITE_HYBRID, keys.public.hybrid), primitives=PycaPrimitives(),
                transport=transport, endpoint=endpoint, on_progress=progress.append,
                save_record=records.append, chunk_size=16 * 1024,
            )
        finally:
            await transport.close()

    receipt = asyncio.run(send())
    assert receipt.chunks > 3 and progress[-1].done and progress[-1].state == "done"
    assert records == []  # one upload cannot be continued by a later session: no record
    [info] = [p for p in folder.glob("*.json")]
    stored = folder / info.stem
    assert stored.stat().st_size == receipt.bytes_sent
    out = tmp_path / "out"
    unpacked = unpack_upload(info.stem, stored, keys.private, out)
    assert unpacked.contribution_id == receipt.contribution_id
    assert files_of(out / receipt.contribution_id / "files") == files_of(disc)
