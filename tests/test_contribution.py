"""A whole contribution on CPython: a disc packaged, sealed and uploaded to the real receiver
over HTTP, then unpacked with the private key, byte for byte."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from pcir_upload.page.upload.contribution import Progress, Receipt, contribute, receipt_code
from pcir_upload.page.disc.disc import DiscReadError
from pcir_upload.page.disc.discovery import scan_disc
from pcir_upload.page.seal.envelope import SUITE_HYBRID, SUITE_X25519, Recipient, Sealer
from pcir_upload.page.package.package import LocalPacker
from pcir_upload.page.upload.tus import Link, Target, Upload, discover
from pcir_upload.cli import main
from pcir_upload.repository.unpack import unpack_all
from support import FolderDisc, HttpxTransport, PycaPrimitives, files_of, receiver


def send(disc: FolderDisc, url: str, recipient: Recipient, **options) -> tuple[Receipt, list[Progress]]:
    seen: list[Progress] = []

    async def run() -> Receipt:
        transport = HttpxTransport()
        summary = await scan_disc(disc.listing, disc)
        try:
            return await contribute(
                listing=disc.listing, packer=LocalPacker(disc),
                manifest={"terms": {"version": "test", "agreed": "2026-11-25T00:00:00Z"},
                          "summary": summary.to_json()},
                recipient=recipient, primitives=PycaPrimitives(), transport=transport,
                endpoint=url + "/files/", on_progress=seen.append, **options,
            )
        finally:
            await transport.close()

    return asyncio.run(run()), seen


def recipient(keys, suite=SUITE_HYBRID) -> Recipient:
    return Recipient(suite, keys.public.hybrid if suite == SUITE_HYBRID else keys.public.classical)


@pytest.mark.parametrize("suite", [SUITE_HYBRID, SUITE_X25519], ids=["hybrid", "classical"])
def test_a_disc_arrives_byte_identical(tmp_path: Path, disc: Path, keys, suite) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    folder = FolderDisc(disc)
    with receiver(data, tmp_path, keys.public) as url:
        receipt, progress = send(folder, url, recipient(keys, suite), chunk_size=16 * 1024)
    assert receipt.post_quantum == (suite == SUITE_HYBRID)

    total = sum(f.size for f in folder.listing)
    assert receipt.files == len(folder.listing) and receipt.disc_bytes == total
    assert receipt.chunks > 3  # small chunks: the chunking and ordering are exercised
    assert progress[-1].done and progress[-1].disc_bytes_done == total
    done = [p.disc_bytes_done for p in progress]
    assert done == sorted(done)  # progress never goes backwards

    reports: list[str] = []
    assert unpack_all(data, keys.private, out, reports.append)
    contribution = out / receipt.contribution_id
    assert files_of(contribution / "files") == files_of(disc)
    manifest = json.loads((contribution / "manifest.json").read_text())
    assert manifest["contribution_id"] == receipt.contribution_id
    assert manifest["terms"]["version"] == "test"
    assert manifest["summary"]["patients"], "the DICOMDIR summary travels in the manifest"
    assert {r["path"] for r in manifest["files"]} == set(files_of(disc))
    assert receipt.code in reports[0]
    assert ("post-quantum" in reports[0]) == receipt.post_quantum

    # A second run changes nothing.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    reports.clear()
    assert unpack_all(data, keys.private, out, reports.append)
    assert reports[0].startswith("already unpacked")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_nothing_readable_reaches_the_server(tmp_path: Path, disc: Path, keys) -> None:
    data = tmp_path / "data"
    with receiver(data, tmp_path, keys.public) as url:
        send(FolderDisc(disc), url, recipient(keys))
    stored = b"".join(p.read_bytes() for p in (data / "uploads").rglob("*") if p.is_file())
    assert b"DICM" not in stored and b"DICOMDIR" not in stored
    assert b"PK\x03\x04" not in stored  # not even the ZIP structure shows


def test_an_unreadable_file_is_recorded_and_the_rest_goes_on(tmp_path: Path, disc: Path, keys) -> None:
    data, out = tmp_path / "data", tmp_path / "out"

    class ScratchedDisc(FolderDisc):
        async def read(self, path: str, offset: int, length: int) -> bytes:
            if path == "DICOMDIR" and offset > 0:
                raise DiscReadError("The computer could not read this file.")
            return await super().read(path, offset, min(length, 1000))

    with receiver(data, tmp_path, keys.public) as url:
        receipt, _ = send(ScratchedDisc(disc), url, recipient(keys))
    assert [r["path"] for r in receipt.unreadable] == ["DICOMDIR"]

    assert unpack_all(data, keys.private, out, lambda line: None)
    contribution = out / receipt.contribution_id
    manifest = json.loads((contribution / "manifest.json").read_text())
    record = next(r for r in manifest["files"] if r["path"] == "DICOMDIR")
    assert record["size"] == 1000 and record["expected_size"] == (disc / "DICOMDIR").stat().st_size
    assert "could not read" in record["error"]
    assert (contribution / "files" / "DICOMDIR").read_bytes() == (disc / "DICOMDIR").read_bytes()[:1000]
    others = {k: v for k, v in files_of(disc).items() if k != "DICOMDIR"}
    assert {k: v for k, v in files_of(contribution / "files").items() if k != "DICOMDIR"} == others


def test_receipt_codes_are_short_and_unambiguous() -> None:
    code = receipt_code(bytes.fromhex("00000000ff") + bytes(11))
    assert code == "0000-007Z"
    assert len(receipt_code(os.urandom(16))) == 9
    assert not set(receipt_code(os.urandom(16))) & set("ILOU")


def test_list_shows_state_size_chunks_and_suite(tmp_path: Path, disc: Path, keys, capsys) -> None:
    data = tmp_path / "data"
    with receiver(data, tmp_path, keys.public) as url:
        hybrid, _ = send(FolderDisc(disc), url, recipient(keys, SUITE_HYBRID), chunk_size=32 * 1024)
        classical, _ = send(FolderDisc(disc), url, recipient(keys, SUITE_X25519))
        unfinished = asyncio.run(start_upload(url, recipient(keys, SUITE_HYBRID)))
    (data / "uploads" / "not-an-upload").mkdir()  # ignored, like any stray folder

    assert main(["list", "--data", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["UPLOAD", "STATE", "BYTES", "CHUNKS", "SUITE"]
    rows = [line.split() for line in lines[1:]]
    # (Uploads started within the same second may be listed in either order.)
    assert sorted((r[1], int(r[2]), int(r[3]), r[4]) for r in rows) == sorted([
        ("complete", hybrid.bytes_sent, hybrid.chunks, "ML-KEM-768+X25519"),
        ("complete", classical.bytes_sent, classical.chunks, "X25519"),
        ("uploading", unfinished, 1, "ML-KEM-768+X25519"),
    ])


async def start_upload(url: str, to: Recipient) -> int:
    """An upload cut off after its first chunk and half of the second; returns its size."""
    transport = HttpxTransport()
    link = Link(transport)
    upload = Upload(link, Target(url + "/files/", await discover(link, url + "/files/")))
    sealer = Sealer(PycaPrimitives(), to, os.urandom(16))
    await upload.create()
    await upload.append(await sealer.seal(b"a" * 1000, final=False), final=False)
    second = await sealer.seal(b"b" * 1000, final=False)
    await upload.append(second[:500], final=False)
    await transport.close()
    return upload.offset
