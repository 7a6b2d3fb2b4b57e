"""The package on CPython: a ZIP that another reader (Python's zipfile) opens, every file byte
for byte; compressed files stored, the rest deflated; pieces packed ahead within a budget;
files that fail or shrink recorded; levels that follow the link, and replayed on resume."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pydicom
import pytest

from discs import many_small_dicom_files, one_page_pdf, picture, have_dcmtk
from pcir_upload.page.package.compressible import worth_deflating
from pcir_upload.page.disc.disc import DiscReadError
from pcir_upload.page.package.levels import HIGHEST, LOWEST, SETTLE, START, Levels
from pcir_upload.page.package.ziparchive import ZSTD, EntryEncoder
from pcir_upload.page.package.package import (
    AHEAD_BYTES, MANIFEST_NAME, READ_SIZE, LocalPacker, Packager, Piece, PieceRequest,
)
from support import FolderDisc


def shipped(name: str) -> bytes:
    return Path(pydicom.data.get_testdata_file(name)).read_bytes()


def package(disc: FolderDisc, packer=None, **options) -> tuple[bytes, Packager]:
    packager = Packager(disc.listing, packer or LocalPacker(disc), {"contribution_id": "x"}, **options)

    async def go() -> bytes:
        return b"".join([piece async for piece in packager.stream()])

    return asyncio.run(go()), packager


def methods(archive: bytes) -> dict[str, int]:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return {i.filename: i.compress_type for i in z.infolist()}


@pytest.mark.parametrize("name, deflate", [
    ("CT_small.dcm", True),  # explicit VR little endian: native pixels
    ("MR_small_implicit.dcm", True),
    ("MR_small_bigendian.dcm", True),
    ("MR_small_RLE.dcm", True),  # RLE: deflate still shrinks it
    ("JPEG2000.dcm", False),
    ("SC_rgb_jpeg_dcmtk.dcm", False),
    ("JPEGLSNearLossless_16.dcm", False),
    ("MR_small_jp2klossless.dcm", False),
    ("image_dfl.dcm", False),  # Deflated Explicit VR: deflated already
])
def test_dicom_files_say_whether_deflating_pays(name, deflate) -> None:
    assert worth_deflating(shipped(name)) is deflate
    assert worth_deflating(bytearray(shipped(name))) is deflate  # as the browser hands it over


def test_other_files_by_signature_or_by_a_trial() -> None:
    rng = __import__("random").Random(7)
    noise = bytes(rng.getrandbits(8) for _ in range(200_000))
    assert not worth_deflating(one_page_pdf())
    assert not worth_deflating(b"PK\x03\x04" + bytes(100))
    assert not worth_deflating(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    assert not worth_deflating(b"")
    assert not worth_deflating(noise)  # unknown, and the trial finds it does not shrink
    assert worth_deflating(noise[:1000])  # too small to be worth a trial
    assert worth_deflating(b"REPORT " * 20_000)
    assert worth_deflating(bytes(100_000))


@pytest.mark.skipif(not have_dcmtk(), reason="needs DCMTK's dcmj2pnm")
def test_pictures_written_by_a_tool_are_stored(tmp_path) -> None:
    source = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    for kind in ("jpeg", "png"):
        assert not worth_deflating(picture(source, tmp_path / f"scan.{kind}", kind).read_bytes())


def other_reader(archive: bytes) -> dict[str, bytes]:
    """Every entry's bytes as read by Python's zipfile (its layout) and Debian's `zstd` (the
    frames: Python 3.11's zipfile knows no method 93), each CRC-32 checked."""
    contents = {}
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        for info in z.infolist():
            if info.compress_type != ZSTD:
                contents[info.filename] = z.read(info)  # zipfile checks the CRC
                continue
            name_length, extra_length = struct.unpack_from("<HH", archive, info.header_offset + 26)
            start = info.header_offset + 30 + name_length + extra_length
            frame = archive[start:start + info.compress_size]
            data = subprocess.run(["zstd", "-d", "-c", "-q"], input=frame, capture_output=True, check=True).stdout
            assert zlib.crc32(data) == info.CRC and len(data) == info.file_size
            contents[info.filename] = data
    return contents


def test_a_package_opens_in_another_reader_byte_for_byte(tmp_path) -> None:
    root = tmp_path / "disc"
    many_small_dicom_files(root, 12, per_series=6)
    (root / "DOCS").mkdir()
    (root / "DOCS" / "letter.pdf").write_bytes(one_page_pdf())
    (root / "DOCS" / "empty.txt").write_bytes(b"")
    (root / "JPEG2000.dcm").write_bytes(shipped("JPEG2000.dcm"))
    big = os.urandom(1024) * (2 * READ_SIZE // 1024 + 300)  # three pieces, compressible
    (root / "BIG.RAW").write_bytes(big)
    disc = FolderDisc(root)
    archive, packager = package(disc)

    contents = other_reader(archive)
    for f in disc.listing:
        assert contents["files/" + f.path] == (root / f.path).read_bytes()
    manifest = json.loads(contents[MANIFEST_NAME])
    found = methods(archive)
    assert found["files/DOCS/letter.pdf"] == zipfile.ZIP_STORED
    assert found["files/DOCS/empty.txt"] == zipfile.ZIP_STORED
    assert found["files/JPEG2000.dcm"] == zipfile.ZIP_STORED
    assert found["files/BIG.RAW"] == ZSTD
    assert all(found[f"files/{f.path}"] == ZSTD for f in disc.listing if f.path.endswith("IM000001"))
    assert [r["path"] for r in manifest["files"]] == [f.path for f in disc.listing]
    assert packager.files_done == len(disc.listing)
    assert packager.bytes_read == sum(f.size for f in disc.listing)


class Watched(LocalPacker):
    """A LocalPacker that keeps account of what was handed to it and not yet taken."""

    def __init__(self, disc: FolderDisc):
        super().__init__(disc)
        self.outstanding = self.most = 0

    def submit(self, request: PieceRequest):
        self.outstanding += request.length
        self.most = max(self.most, self.outstanding)
        work = super().submit(request)

        async def taken() -> Piece:
            self.outstanding -= request.length
            return await work

        return taken()


def test_pieces_ahead_stay_within_the_budget(tmp_path) -> None:
    root = tmp_path / "disc"
    for i in range(40):
        (root / f"F{i:02}").parent.mkdir(parents=True, exist_ok=True)
        (root / f"F{i:02}").write_bytes(bytes([i]) * 1_000_000)
    disc = FolderDisc(root)
    packer = Watched(disc)
    archive, _ = package(disc, packer)
    assert packer.most > 8_000_000  # it does look ahead
    assert packer.most <= AHEAD_BYTES + READ_SIZE
    assert package(FolderDisc(root), ahead=0)[0] == archive  # and the bytes do not depend on it


def test_a_file_that_fails_midway_keeps_what_was_read_and_the_rest_goes_on(tmp_path) -> None:
    root = tmp_path / "disc"
    root.mkdir()
    (root / "A").write_bytes(b"a" * 100)
    (root / "B").write_bytes(b"b" * (3 * READ_SIZE))
    (root / "C").write_bytes(b"c" * 100)

    class Scratched(FolderDisc):
        async def read(self, path: str, offset: int, length: int) -> bytes:
            if path == "B" and offset >= READ_SIZE:
                raise DiscReadError("The computer could not read this file.")
            return await super().read(path, offset, length)

    disc = Scratched(root)
    archive, packager = package(disc)
    contents = other_reader(archive)
    assert contents["files/B"] == b"b" * READ_SIZE
    assert contents["files/C"] == b"c" * 100
    records = {r["path"]: r for r in json.loads(contents[MANIFEST_NAME])["files"]}
    assert records["B"]["error"] == "The computer could not read this file."
    assert records["B"]["size"] == READ_SIZE and records["B"]["expected_size"] == 3 * READ_SIZE
    assert "error" not in records["C"]
    # only the piece that failed was asked for beyond it, not the ones after it
    assert [r for r in disc.reads if r[0] == "B" and r[1] >= 2 * READ_SIZE] == []
    assert packager.bytes_read == 200 + 3 * READ_SIZE


def test_a_file_that_shrank_since_it_was_listed_is_recorded(tmp_path) -> None:
    root = tmp_path / "disc"
    root.mkdir()
    (root / "A").write_bytes(b"a" * 1000)
    disc = FolderDisc(root)
    (root / "A").write_bytes(b"a" * 600)
    archive, _ = package(disc)
    contents = other_reader(archive)
    record = json.loads(contents[MANIFEST_NAME])["files"][0]
    assert contents["files/A"] == b"a" * 600
    assert record["error"] == "The file ended after 600 of 1000 bytes."


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_level_climbs_while_the_link_is_the_limit_and_falls_when_the_packers_are() -> None:
    clock = Clock()
    levels = Levels(clock=clock)
    seen = []
    for index in range(40):
        clock.now += 1.0
        levels.waited(True, 0.9) if index < 25 else levels.waited(False, 0.9)
        seen.append(levels.level(index))
    assert seen[0] == START and max(seen) == HIGHEST
    assert all(b - a in (0, 1) for a, b in zip(seen[:25], seen[1:25]))  # one step at a time
    assert seen[-1] < HIGHEST
    assert all(b - a in (0, -1) for a, b in zip(seen[25:], seen[26:]))
    changes = [i for i in range(1, 40) if seen[i] != seen[i - 1]]
    assert all(b - a >= SETTLE for a, b in zip(changes, changes[1:]))  # 1 s a file here
    assert levels.files == 40 and levels.runs[0] == (0, START)
    for index in range(40, 80):  # the packers stay the limit: down to the fastest, and no lower
        clock.now += 1.0
        levels.waited(False, 0.9)
        assert levels.level(index) >= LOWEST
    assert levels.level(80) == LOWEST


def test_a_resumed_packager_replays_the_levels_of_the_files_packed_before(tmp_path) -> None:
    root = tmp_path / "disc"
    root.mkdir()
    for i in range(6):
        (root / f"F{i}").write_bytes((b"text that compresses %d " % i) * 40_000)
    disc = FolderDisc(root)
    first, _ = package(disc, levels=Levels([(0, 1), (2, 6), (4, 2)], 6))
    again, _ = package(FolderDisc(root), levels=Levels([(0, 1), (2, 6), (4, 2)], 6))
    assert again == first
    plain, _ = package(FolderDisc(root), levels=Levels())
    assert plain != first  # the levels do make a difference
    contents = other_reader(first)
    for i in range(6):
        assert contents[f"files/F{i}"] == (root / f"F{i}").read_bytes()
    replay = Levels([(0, 1), (2, 6), (4, 2)], 6)
    assert [replay.level(i) for i in range(6)] == [1, 1, 6, 6, 2, 2]
    assert replay.runs == [(0, 1), (2, 6), (4, 2)] and replay.files == 6
    # beyond the files it fixes, a resumed session starts from the last level it had
    assert replay.level(6) == 2


def test_the_lowest_and_highest_levels_differ_and_read_back(tmp_path) -> None:
    root = tmp_path / "disc"
    root.mkdir()
    (root / "CT.dcm").write_bytes(Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes() * 20)
    fast, _ = package(FolderDisc(root), levels=Levels([(0, LOWEST)], 1))
    tight, _ = package(FolderDisc(root), levels=Levels([(0, HIGHEST)], 1))
    assert len(tight) < len(fast)
    for archive in (fast, tight):
        assert other_reader(archive)["files/CT.dcm"] == (root / "CT.dcm").read_bytes()


@pytest.mark.parametrize("level", [LOWEST, START, HIGHEST])
def test_zstandard_output_does_not_depend_on_how_its_input_is_split(level) -> None:
    """What FORMAT.md's determinism rests on, should pieces ever be cut otherwise."""
    rng = random.Random(level)
    data = bytes(rng.choice(b"abcdefgh") for _ in range(600_000)) + rng.randbytes(600_000) + bytes(900_000)
    whole = EntryEncoder(ZSTD, level)
    reference = whole.encode(data) + whole.flush()
    for _ in range(3):
        encoder, parts, at = EntryEncoder(ZSTD, level), [], 0
        while at < len(data):
            step = rng.randint(1, 300_000)
            parts.append(encoder.encode(data[at:at + step]))
            at += step
        assert b"".join(parts) + encoder.flush() == reference
