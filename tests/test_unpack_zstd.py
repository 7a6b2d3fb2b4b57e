"""Method 93 (Zstandard) on the repository side: read by our own streaming reader on every
Python, other methods refused, version 1 packages (deflate) still read."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import pytest

from pcir_upload.page.package.levels import HIGHEST, LOWEST, START
from pcir_upload.page.package.package import MANIFEST_NAME
from pcir_upload.page.package.zstandard import zstd
from pcir_upload.page.package.ziparchive import DEFLATED, STORED, ZSTD, ZipWriter, entry
from pcir_upload.repository.unpack import UnpackError
from support import lied
from test_unpack import manifest_for, out, record, sealed, unpack  # noqa: F401 (out: a fixture)

CONTENTS = {
    "CT.dcm": b"DICM" + bytes(range(256)) * 4000,  # several Zstandard blocks
    "empty.txt": b"",
    "one": b"1",
    "zeros": bytes(3 * 1024 * 1024),  # ratio far above deflate's 1,032
    "noise.raw": secrets.token_bytes(4096) * 3000,  # 12 MiB: matches across the whole window
}


def framed(writer: ZipWriter, name: str, method: int, data: bytes, content: bytes) -> bytes:
    """An entry whose stored bytes are `data`, whatever they are, for `content`."""
    return writer.begin(name, method) + writer.data(data) + writer.end(zlib.crc32(content), len(content))


def package_of(cid: bytes, files: dict[str, bytes], version: int = 2, method: int = ZSTD,
               raw: dict[str, bytes] | None = None, level: int = START) -> bytes:
    """A package of `files`; `raw` gives an entry's stored bytes as a hostile writer makes them."""
    writer, parts = ZipWriter(), []
    for path, content in files.items():
        if raw and path in raw:
            parts.append(framed(writer, "files/" + path, ZSTD, raw[path], content))
        elif method == DEFLATED and content:
            deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
            parts.append(framed(writer, "files/" + path, DEFLATED, deflater.compress(content) + deflater.flush(), content))
        else:
            parts.append(entry(writer, "files/" + path, content, method if content else STORED, level))
    body = json.dumps(manifest_for(cid, [record(p, c) for p, c in files.items()], version=version)).encode()
    if method == DEFLATED:
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        parts.append(framed(writer, MANIFEST_NAME, DEFLATED, deflater.compress(body) + deflater.flush(), body))
    else:
        parts.append(entry(writer, MANIFEST_NAME, body))
    return b"".join(parts) + writer.finish()


@pytest.mark.parametrize("level", [LOWEST, START, HIGHEST])
def test_every_kind_of_entry_round_trips(tmp_path, out, level) -> None:
    cid = secrets.token_bytes(16)
    result = unpack(sealed(tmp_path, package_of(cid, CONTENTS, level=level), cid, piece=1024 * 1024), out)
    assert result.files == len(CONTENTS)
    for path, content in CONTENTS.items():
        assert (out / cid.hex() / "files" / path).read_bytes() == content


def test_a_version_1_package_of_deflate_still_unpacks(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    unpack(sealed(tmp_path, package_of(cid, CONTENTS, version=1, method=DEFLATED), cid, piece=64 * 1024), out)
    assert (out / cid.hex() / "files" / "CT.dcm").read_bytes() == CONTENTS["CT.dcm"]


@pytest.mark.parametrize("version, method, match", [
    (2, DEFLATED, "a version 2 package uses no compression method 8"),
    (1, ZSTD, "a version 1 package uses no compression method 93"),
])
def test_a_method_of_the_other_version_is_refused(tmp_path, out, version, method, match) -> None:
    cid = secrets.token_bytes(16)
    with pytest.raises(UnpackError, match=match):
        unpack(sealed(tmp_path, package_of(cid, {"a": b"abc" * 100}, version, method), cid), out)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("method", [1, 9, 14, 95, 98, 99])  # shrunk, deflate64, LZMA, XZ, PPMd, AES
def test_a_forged_method_is_refused(tmp_path, out, method) -> None:
    cid = secrets.token_bytes(16)
    forged = lied(package_of(cid, {"a": b"abc" * 100}), "files/a", method=method)
    with pytest.raises(UnpackError, match=f"files/a: compression method {method}; this format uses only"):
        unpack(sealed(tmp_path, forged, cid), out)


def frame(content: bytes, **options: int) -> bytes:
    parameters = {getattr(zstd.CompressionParameter, k): v for k, v in options.items()}
    return zstd.compress(content, options=parameters or None)


@pytest.mark.parametrize("data, match", [
    (frame(b"x" * 1000)[:-3], "frame is cut short"),
    (frame(b"x" * 1000) + frame(b""), "bytes follow its Zstandard frame"),
    (frame(b"x" * 1000) + b"\0", "bytes follow its Zstandard frame"),
    (frame(b"y" * 1000), "bad CRC-32"),
    (b"\x28\xb5\x2f\xfd" + bytes(20), "frame is cut short"),  # empty blocks, never a last one
    (b"PK\x03\x04" + bytes(20), "Unable to decompress Zstandard data"),  # not a frame
])
def test_a_damaged_frame_is_refused(tmp_path, out, data, match) -> None:
    cid = secrets.token_bytes(16)
    package = package_of(cid, {"a": b"x" * 1000}, raw={"a": data})
    with pytest.raises(UnpackError, match=match):
        unpack(sealed(tmp_path, package, cid), out)


def test_a_frame_asking_for_a_window_beyond_8_mib_is_refused(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    content = secrets.token_bytes(1024) * 20_000
    wide = frame(content, window_log=27, content_size_flag=0)
    package = package_of(cid, {"a": content}, raw={"a": wide})
    with pytest.raises(UnpackError, match="too much memory"):
        unpack(sealed(tmp_path, package, cid, piece=1024 * 1024), out)


def test_a_frame_inflating_past_its_size_stops_there_in_bounded_memory(tmp_path, out) -> None:
    """1 GiB of zeros is a 32 KiB frame: within the ratio, and stopped at the manifest's size."""
    cid = secrets.token_bytes(16)
    compressor = zstd.ZstdCompressor(3)
    block = bytes(64 * 1024 * 1024)
    bomb = b"".join(compressor.compress(block) for _ in range(16)) + compressor.flush()
    small = bytes(1000)
    writer = ZipWriter()
    body = json.dumps(manifest_for(cid, [record("a", small)])).encode()
    package = framed(writer, "files/a", ZSTD, bomb, small) + entry(writer, MANIFEST_NAME, body) + writer.finish()
    data = sealed(tmp_path, package, cid, piece=1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(UnpackError, match="a: its bytes do not match"):
            unpack(data, out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024
    assert list(out.iterdir()) == []


def test_the_directory_bound_is_zstandards_best_ratio(tmp_path, out) -> None:
    cid = secrets.token_bytes(16)
    package = package_of(cid, {"a": b"x" * 1000})
    compressed = len(frame(b"x" * 1000))
    claimed = 32768 * compressed + 1
    with pytest.raises(UnpackError, match=f"it declares {claimed} bytes, more than"):
        unpack(sealed(tmp_path, lied(package, "files/a", size=claimed), cid), out)


ROOT = Path(__file__).resolve().parent.parent
PYODIDE = ROOT / "node_modules" / "pyodide"


@pytest.mark.skipif(shutil.which("node") is None or not (PYODIDE / "pyodide.mjs").exists(),
                    reason="Node.js or npm's Pyodide is not installed")
def test_method_93_between_cpython_3_11_and_pyodides_3_14(tmp_path, out) -> None:
    """No CPython 3.14 is installed here; Pyodide's is CPython 3.14 with compression.zstd.
    A package written here (backports.zstd) reads the same in 3.14's zipfile and in our
    reader there; one written there (the page's writer) unpacks here."""
    cid = secrets.token_bytes(16)
    (tmp_path / "work" / "disc").mkdir(parents=True)
    (tmp_path / "work" / "in.zip").write_bytes(package_of(cid, CONTENTS))
    for path, content in CONTENTS.items():
        (tmp_path / "work" / "disc" / path).write_bytes(content)
    answer = json.loads(subprocess.run(
        ["node", str(ROOT / "tests" / "pyodide_zstd.mjs"), str(PYODIDE), str(ROOT / "py"),
         str(tmp_path / "work"), cid.hex()], check=True, capture_output=True, text=True, timeout=120,
    ).stdout)
    assert answer["python"].startswith("3.14.") and sys.version_info[:2] == (3, 11)
    for path, content in CONTENTS.items():
        method = ZSTD if content else STORED
        assert answer["entries"]["files/" + path] == [method, hashlib.sha256(content).hexdigest()]
    assert answer["entries"][MANIFEST_NAME][0] == ZSTD

    written = (tmp_path / "work" / "out.zip").read_bytes()
    unpack(sealed(tmp_path, written, cid, piece=1024 * 1024), out)
    for path, content in CONTENTS.items():
        assert (out / cid.hex() / "files" / path).read_bytes() == content
