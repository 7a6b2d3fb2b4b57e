"""Issue 12's hostile contributions: the public key is public, so each one here could come from
anyone, and `unpack` must refuse it in plain words, in bounded memory, before writing any of
it, and then go on with the uploads after it."""

from __future__ import annotations

import bz2
import json
import secrets
import shutil
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from pcir_upload.page.package.package import MANIFEST_NAME
from pcir_upload.page.package.ziparchive import STORED, ZipWriter, entry
from pcir_upload.repository import unpack as unpack_module
from pcir_upload.repository.unpack import UnpackError, unpack_all
from support import ending, lied
from test_unpack import KEYS, manifest_for, out, record, seal_package, sealed, unpack, zip_package  # noqa: F401 (out: a fixture)

HOSTILE_ID, GOOD_ID = "h" * 32, "g" * 32


def stored(data_dir: Path, upload: Path, upload_id: str, created: str) -> None:
    """`upload` as a complete upload of the receiver's data folder (FORMAT.md, "Storage")."""
    folder = data_dir / "uploads" / upload_id
    folder.mkdir(parents=True)
    shutil.copyfile(upload, folder / "data")
    info = {"id": upload_id, "length": upload.stat().st_size, "created": created, "completed": created}
    (folder / "info.json").write_text(json.dumps(info))


def peak_refusing(data: Path, out: Path, match: str) -> int:
    """The most memory Python held while `unpack` refused `data` (as `match` says)."""
    tracemalloc.start()
    try:
        with pytest.raises(UnpackError, match=match):
            unpack(data, out)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def one_file(cid: bytes, content: bytes = b"good") -> bytes:
    return zip_package([("files/a", content)], manifest_for(cid, [record("a", content)]))


def encrypted(tmp_path: Path) -> Path:
    cid = secrets.token_bytes(16)
    return sealed(tmp_path, lied(one_file(cid), "files/a", flags=0x0809), cid, "hostile")


def nested(tmp_path: Path) -> Path:
    return sealed(tmp_path, zip_package([], b"[" * 100_000), secrets.token_bytes(16), "hostile")


def exhausting(tmp_path: Path) -> Path:
    """A manifest that takes the memory: stood in for by a MemoryError (see the test)."""
    cid = secrets.token_bytes(16)
    return sealed(tmp_path, zip_package([], manifest_for(cid, [], exhausting=True)), cid, "hostile")


@pytest.mark.parametrize("hostile,reason", [
    (encrypted, "files/a is encrypted"),
    (nested, "deeper than 64 levels"),
    (exhausting, "ran out of memory"),
])
def test_a_hostile_upload_fails_alone_and_a_later_one_unpacks(tmp_path, monkeypatch, hostile, reason) -> None:
    strict = unpack_module._json_object

    def parse(raw: bytes):
        if b'"exhausting"' in raw:
            raise MemoryError
        return strict(raw)

    monkeypatch.setattr(unpack_module, "_json_object", parse)
    cid = secrets.token_bytes(16)
    data, out = tmp_path / "data", tmp_path / "out"
    stored(data, hostile(tmp_path), HOSTILE_ID, "2026-12-01T09:00:00+00:00")
    stored(data, sealed(tmp_path, one_file(cid), cid, "good"), GOOD_ID, "2026-12-01T10:00:00+00:00")
    for verb in ("unpacked", "already unpacked"):  # a second run goes the same way
        lines: list[str] = []
        assert not unpack_all(data, KEYS, out, lines.append)
        assert len(lines) == 2 and lines[0].startswith(f"FAILED  upload {HOSTILE_ID}: "), lines
        assert reason in lines[0] and "\n" not in lines[0]
        assert lines[1].startswith(f"{verb:16s} {cid.hex()} ")
        assert (out / cid.hex() / "files" / "a").read_bytes() == b"good"
    assert sorted(p.name for p in out.iterdir()) == [".uploads", cid.hex()]


@pytest.mark.parametrize("lists,refused", [(63, False), (64, True)])
def test_a_manifest_nests_at_most_64_levels(tmp_path, out, lists, refused) -> None:
    cid = secrets.token_bytes(16)
    deep: list = []
    for _ in range(lists - 1):
        deep = [deep]
    data = sealed(tmp_path, zip_package([], manifest_for(cid, [], deep=deep)), cid)
    if refused:
        with pytest.raises(UnpackError, match="deeper than 64 levels"):
            unpack(data, out)
    else:
        assert unpack(data, out).files == 0


def test_a_manifest_of_three_byte_values_is_refused_before_parsing(tmp_path, out) -> None:
    """64 MiB of `{},` deflate to 64 KB and took json 1.5 GB to parse."""
    cid = secrets.token_bytes(16)
    values = b"[" + b"{}," * (unpack_module.MAX_MANIFEST_BYTES // 3 - 1) + b"{}]"
    data = sealed(tmp_path, zip_package([], values), cid, piece=1024 * 1024)
    del values
    assert peak_refusing(data, out, "it holds more than 3,200,000 values") < 4 * unpack_module.MAX_MANIFEST_BYTES


def test_a_600_byte_bzip2_upload_does_not_unpack_to_64_mib(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    content = bytes(64 * 1024 * 1024)
    writer = ZipWriter()
    bomb = writer.begin("files/a", STORED) + writer.data(bz2.compress(content)) + writer.end(zlib.crc32(content), len(content))
    manifest = json.dumps(manifest_for(cid, [record("a", content)])).encode()
    package = lied(bomb + entry(writer, MANIFEST_NAME, manifest) + writer.finish(), "files/a", method=12)
    data = sealed(tmp_path, package, cid)
    assert data.stat().st_size < 1000
    with pytest.raises(UnpackError, match="files/a: compression method 12; this format uses only"):
        unpack(data, out)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("flags,match", [
    (0x0809, "files/a is encrypted"),
    (0x0848, "general purpose flags 0x0848"),
    (0x0008, "general purpose flags 0x0008"),
])
def test_flags_the_format_does_not_write_are_refused(tmp_path, out, flags, match) -> None:
    cid = secrets.token_bytes(16)
    with pytest.raises(UnpackError, match=match):
        unpack(sealed(tmp_path, lied(one_file(cid), "files/a", flags=flags), cid), out)


def test_a_size_no_zstd_frame_could_reach_is_refused_before_writing(tmp_path, out, monkeypatch) -> None:
    cid = secrets.token_bytes(16)
    claimed = 10 * 1024 * 1024
    package = zip_package([("files/a", b"x")], {**manifest_for(cid, []), "files": [
        {"path": "a", "entry": "files/a", "size": claimed, "sha256": "0" * 64}]})
    monkeypatch.setattr(unpack_module, "_extract", None)  # nothing may be written
    with pytest.raises(UnpackError, match="files/a: it declares 10485760 bytes, more than 10 compressed bytes can hold"):
        unpack(sealed(tmp_path, lied(package, "files/a", size=claimed), cid), out)


def test_a_directory_holding_more_records_than_declared_is_refused(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    with pytest.raises(UnpackError, match="more records than the 1 it declares"):
        unpack(sealed(tmp_path, ending(one_file(cid), entries=1), cid), out)


def test_the_entry_cap_counts_the_files_and_the_manifest(tmp_path, out, monkeypatch) -> None:
    monkeypatch.setattr(unpack_module, "MAX_ENTRIES", 3)
    cid = secrets.token_bytes(16)
    two = seal_package(tmp_path, [("files/a", b"a"), ("files/b", b"b")],
                       manifest_for(cid, [record("a", b"a"), record("b", b"b")]), cid, "two")
    three = seal_package(tmp_path, [("files/a", b"a"), ("files/b", b"b"), ("files/c", b"c")],
                         manifest_for(cid, [record("a", b"a"), record("b", b"b"), record("c", b"c")]), cid, "three")
    with pytest.raises(UnpackError, match="4 entries; a package holds at most 3"):
        unpack(three, out, "3" * 32)
    assert unpack(two, out, "2" * 32).files == 2


def test_a_million_entries_are_refused_in_bounded_memory(tmp_path, out) -> None:
    """Issue 12 measured 689 MB for this package: zipfile keeps a ZipInfo per record."""
    started = time.monotonic()
    writer = ZipWriter()
    parts = [writer.begin(f"files/{i}", STORED) + writer.end(0, 0) for i in range(1_000_000)]
    parts.append(writer.finish())
    cid = secrets.token_bytes(16)
    data = sealed(tmp_path, b"".join(parts), cid, piece=1024 * 1024)
    del parts
    built = time.monotonic()
    peak = peak_refusing(data, out, "1000000 entries; a package holds at most 100001")
    print(f"{data.stat().st_size / 1e6:.0f} MB upload built in {built - started:.1f} s, "
          f"refused in {time.monotonic() - built:.1f} s, peak {peak / 1e6:.1f} MB traced")
    assert peak < 16 * 1024 * 1024


def test_the_manifests_sizes_are_checked_before_anything_is_written(tmp_path, out, monkeypatch) -> None:
    cid = secrets.token_bytes(16)
    package = zip_package([("files/a", b"a"), ("files/b", b"b")],
                          manifest_for(cid, [record("a", b"a"), {**record("b", b"b"), "size": 2}]))
    written: list[str] = []
    extract = unpack_module._extract
    monkeypatch.setattr(unpack_module, "_extract", lambda archive, info, rec, *rest: (
        written.append(rec["path"]), extract(archive, info, rec, *rest)))
    with pytest.raises(UnpackError, match="b: the package and the manifest disagree on its size"):
        unpack(sealed(tmp_path, package, cid), out)
    assert written == []

