"""`unpack` treats every upload as hostile: the public key is public, so anyone can send a
well-sealed contribution. Each crafted package here must be refused with a clear message,
and nothing may be written outside the output folder or left half-written inside it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from pcir_upload.page.seal.envelope import SUITE_X25519, Recipient, Sealer
from pcir_upload.repository.keys import PrivateKeys
from pcir_upload.page.package.package import FILES_PREFIX, FORMAT, FORMAT_VERSION, MANIFEST_NAME
from pcir_upload.repository import unpack as unpack_module
from pcir_upload.repository.unpack import UnpackError, unpack_upload
from pcir_upload.page.package.ziparchive import STORED, ZSTD, ZipWriter, entry
from support import PycaPrimitives

KEY = x25519.X25519PrivateKey.generate()
KEYS = PrivateKeys(KEY, None)
RECIPIENT = Recipient(SUITE_X25519, KEY.public_key().public_bytes_raw())
UPLOAD_ID = "u" * 32


def record(path: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"path": path, "entry": FILES_PREFIX + path, "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(), **extra}


def zip_package(entries: list[tuple[str, bytes]], manifest: Any) -> bytes:
    """A ZIP of `entries` and `manifest` (a dict, or raw bytes), as the page writes one."""
    writer = ZipWriter()
    parts = []
    for entry_name, content in entries:
        parts.append(entry(writer, entry_name, content, ZSTD if content else STORED))
    if manifest is not None:
        body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        parts.append(entry(writer, MANIFEST_NAME, body))
    parts.append(writer.finish())
    return b"".join(parts)


def sealed(tmp_path: Path, package: bytes, contribution_id: bytes, name: str = "upload",
           piece: int = 1000) -> Path:
    """The upload of `package`, in chunks of `piece` plaintext bytes."""
    sealer = Sealer(PycaPrimitives(), RECIPIENT, contribution_id)
    pieces = [package[i:i + piece] for i in range(0, len(package), piece)]
    path = tmp_path / name
    path.write_bytes(b"".join(asyncio.run(_seal(sealer, pieces))))
    return path


def seal_package(tmp_path: Path, entries: list[tuple[str, bytes]], manifest: Any,
                 contribution_id: bytes, name: str = "upload") -> Path:
    """A sealed upload holding a ZIP of `entries` and `manifest` (a dict, or raw bytes)."""
    return sealed(tmp_path, zip_package(entries, manifest), contribution_id, name)


async def _seal(sealer: Sealer, pieces: list[bytes]) -> list[bytes]:
    return [await sealer.seal(p, final=i == len(pieces) - 1) for i, p in enumerate(pieces)]


def manifest_for(cid: bytes, records: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    return {"format": FORMAT, "version": FORMAT_VERSION, "contribution_id": cid.hex(),
            "files": records, **changes}


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def unpack(data: Path, out: Path, upload_id: str = UPLOAD_ID):
    return unpack_upload(upload_id, data, KEYS, out)


def refused(tmp_path: Path, out: Path, entries, manifest, cid, match: str) -> None:
    data = seal_package(tmp_path, entries, manifest, cid)
    before = sorted(p for p in tmp_path.rglob("*") if p != data)
    with pytest.raises(UnpackError, match=match):
        unpack(data, out)
    assert sorted(p for p in tmp_path.rglob("*") if p != data) == before, "something was left behind"


def test_a_well_formed_package_unpacks(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    content = b"\0" * 5000 + b"DICM"
    data = seal_package(tmp_path, [("files/a/b.dcm", content)], manifest_for(cid, [record("a/b.dcm", content)]), cid)
    result = unpack(data, out)
    assert (out / cid.hex() / "files" / "a" / "b.dcm").read_bytes() == content
    assert not result.skipped and unpack(data, out).skipped


@pytest.mark.parametrize("path", ["../evil", "a/../../evil", "/tmp/evil", "C:/evil", "a\\..\\..\\evil", "a//b", "./a", "a\x00b"])
def test_paths_that_leave_the_folder_are_refused(tmp_path, out, path) -> None:
    cid = secrets.token_bytes(16)
    refused(tmp_path, out, [(FILES_PREFIX + path, b"x")], manifest_for(cid, [record(path, b"x")]), cid, "refused")
    assert not (tmp_path / "evil").exists()


def test_an_entry_the_manifest_does_not_list_is_refused(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    refused(tmp_path, out, [("files/a", b"x"), ("../../evil", b"y")],
            manifest_for(cid, [record("a", b"x")]), cid, "does not list")


def test_a_file_that_does_not_match_its_hash_is_refused(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    refused(tmp_path, out, [("files/a", b"xyz")], manifest_for(cid, [record("a", b"xyZ")]), cid, "SHA-256")


def test_an_entry_larger_than_the_manifest_says_is_refused(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    bomb = b"\0" * 20_000_000  # deflates to about 20 KB
    refused(tmp_path, out, [("files/a", bomb)], manifest_for(cid, [record("a", b"\0" * 10)]), cid, "disagree on its size")


def test_a_file_and_a_folder_of_the_same_name_are_refused(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    refused(tmp_path, out, [("files/a", b"x"), ("files/a/b", b"y")],
            manifest_for(cid, [record("a", b"x"), record("a/b", b"y")]), cid, "a/b")


@pytest.mark.parametrize("manifest,match", [
    (None, "no manifest"),
    (b"[1, 2]", "not a JSON object"),
    (b"{\"format\": NaN}", "not valid JSON"),
    (b'{"version": 1, "version": 1}', "twice"),
    (b"\xff\xfe{}", "not valid JSON"),
])
def test_malformed_manifests_are_refused(tmp_path, out, manifest, match) -> None:
    cid = secrets.token_bytes(16)
    refused(tmp_path, out, [], manifest, cid, match)


@pytest.mark.parametrize("change,match", [
    ({"version": True}, "version 1 or 2"),
    ({"version": 1.0}, "version 1 or 2"),
    ({"contribution_id": "00" * 16}, "another contribution"),
    ({"files": "all of them"}, "file list"),
    ({"files": [{"path": "a", "entry": "files/a", "size": True, "sha256": "0" * 64}]}, "malformed"),
    ({"files": [{"path": "a", "entry": "elsewhere/a", "size": 1, "sha256": "0" * 64}]}, "malformed"),
])
def test_manifest_fields_are_checked(tmp_path, out, change, match) -> None:
    cid = secrets.token_bytes(16)
    refused(tmp_path, out, [], manifest_for(cid, [], **change), cid, match)


def test_damaged_compressed_data_is_refused(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    content = bytes(range(256)) * 100
    writer = ZipWriter()
    written = entry(writer, "files/a", content)
    damaged = written[:60] + bytes(b ^ 0xFF for b in written[60:90]) + written[90:]
    body = json.dumps(manifest_for(cid, [record("a", content)])).encode()
    package = damaged + entry(writer, MANIFEST_NAME, body) + writer.finish()
    data = sealed(tmp_path, package, cid)
    with pytest.raises(UnpackError, match="files/a|a:"):
        unpack(data, out)


def test_a_second_upload_of_the_same_contribution_id_is_refused(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    first = seal_package(tmp_path, [("files/a", b"real")], manifest_for(cid, [record("a", b"real")]), cid, "first")
    forged = seal_package(tmp_path, [("files/a", b"fake")], manifest_for(cid, [record("a", b"fake")]), cid, "forged")
    unpack(first, out, "1" * 32)
    with pytest.raises(UnpackError, match="already delivered by another upload"):
        unpack(forged, out, "2" * 32)
    assert (out / cid.hex() / "files" / "a").read_bytes() == b"real"


def test_a_delivery_whose_record_was_never_written_is_recorded_by_the_next_run(tmp_path, out) -> None:
    """An attempt that died between moving the contribution into place and recording it (a
    queued job's worker, killed) leaves a contribution with this very manifest: it is this
    upload's, not another's."""
    cid = secrets.token_bytes(16)
    data = seal_package(tmp_path, [("files/a", b"real")], manifest_for(cid, [record("a", b"real")]), cid)
    unpack(data, out)
    (out / ".uploads" / UPLOAD_ID).unlink()
    again = unpack(data, out)
    assert not again.skipped and (out / ".uploads" / UPLOAD_ID).read_text().split()[0] == cid.hex()
    assert unpack(data, out).skipped
    assert sorted(p.name for p in out.iterdir()) == [".uploads", cid.hex()]


def test_a_long_unpacking_says_how_far_it_has_got(tmp_path, out, monkeypatch) -> None:
    cid = secrets.token_bytes(16)
    content = bytes(range(256)) * 4000
    data = seal_package(tmp_path, [("files/a", content)], manifest_for(cid, [record("a", content)]), cid)
    monkeypatch.setattr(unpack_module, "PROGRESS_EVERY", 0.0)  # a line at every step
    lines: list[str] = []
    unpack_upload(UPLOAD_ID, data, KEYS, out, lines.append)
    assert lines[0].startswith("  opening: ") and lines[-1] == "  writing files: 100% (1 of 1 MB)"
    assert any(line.startswith("  opening: 100%") for line in lines)
    assert [line for line in lines if line.startswith("  writing")] == sorted(
        (line for line in lines if line.startswith("  writing")), key=lambda l: int(l.split()[2][:-1]))
