"""The repository's side of a contribution: open the envelope, check everything, write the files.

The public key is public, so anyone can upload a well-sealed contribution: everything read
here is hostile until checked. Chunks must open with the private key, in order, under one
contribution id, ending with the final chunk. The ZIP archive's central directory is read
record by record, before zipfile reads it whole: only the layout, flags and methods this
format writes, at most MAX_ENTRIES entries, and no size that the entry's compressed bytes
could not hold. The manifest's depth and number of values are counted before it is parsed.
Every archive entry must be named by the manifest, every path must stay inside the output
folder, no entry may inflate past the size the manifest gives, and every file's SHA-256
must match. Work happens in a scratch folder that becomes `OUT/<contribution id>` by one
rename only when all of it checked out, so a second run skips what is done and a failed run
leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
import os
import re
import shutil
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from cryptography.hazmat.primitives import hpke as pyca_hpke

from pcir_upload.page.upload.contribution import receipt_code
from pcir_upload.page.disc.disc import MAX_PATH_BYTES, path_problem
from pcir_upload.page.seal.envelope import SUITE_HYBRID, SUITE_X25519, SUITES, EnvelopeError, read_chunks
from pcir_upload.repository.keys import PrivateKeys
from pcir_upload.page.package.package import FILES_PREFIX, FORMAT, FORMAT_VERSION, MANIFEST_NAME

from pcir_upload.repository.completed import Completed, local_upload
from pcir_upload.page.package.ziparchive import DEFLATED, STORED, ZSTD
from pcir_upload.repository.zstdentry import MAX_RATIO as ZSTD_MAX_RATIO, ZstdEntry, ZstdError
from pcir_upload.repository.receive.store import completed_uploads

OPENERS = {
    SUITE_X25519: pyca_hpke.Suite(
        pyca_hpke.KEM.X25519, pyca_hpke.KDF.HKDF_SHA256, pyca_hpke.AEAD.AES_256_GCM
    ),
    SUITE_HYBRID: pyca_hpke.Suite(
        pyca_hpke.KEM.MLKEM768_X25519, pyca_hpke.KDF.HKDF_SHA256, pyca_hpke.AEAD.AES_256_GCM
    ),
}
SUITE_NAMES = {SUITE_X25519: "X25519", SUITE_HYBRID: "ML-KEM-768+X25519 (post-quantum)"}
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
# zipfile keeps a ZipInfo of about 600 bytes per entry, and json as much per file record:
# 100,000 files (several DVDs of images) cost about 150 MB to check.
MAX_FILES = 100_000
MAX_ENTRIES = MAX_FILES + 1  # the files and the manifest
MAX_DEPTH = 64  # json's parser recurses once per level; a manifest needs about ten
MAX_VALUES = 32 * MAX_FILES  # a file's record is about ten, its share of the summary a few more
_COPY_SIZE = 1024 * 1024
_SPARE_BYTES = 256 * 1024 * 1024  # left free on the repository's disk after unpacking
_HEX64 = re.compile(r"[0-9a-f]{64}")
# What zipfile raises on a damaged or hostile archive: names that are not UTF-8 under the
# UTF-8 flag (UnicodeDecodeError, a ValueError), impossible offsets, bad streams.
_DAMAGED_ZIP = (zipfile.BadZipFile, OSError, EOFError, zlib.error, ZstdError, NotImplementedError, ValueError)

PROGRESS_EVERY = 5.0  # seconds between progress lines of a long unpacking


class _Meter:
    """How far a long step has got, said every few seconds so that a large contribution
    (a DVD takes minutes) shows that it is moving; small ones finish before the first line."""

    def __init__(self, report: Callable[[str], None], what: str, total: int):
        self._report, self._what, self._total = report, what, max(total, 1)
        self._done, self._last = 0, time.monotonic()

    def add(self, count: int) -> None:
        self._done += count
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY:
            self._last = now
            self._report(f"  {self._what}: {100 * self._done // self._total}% "
                         f"({self._done / 1e6:.0f} of {self._total / 1e6:.0f} MB)")


class _Metered:
    """A file read through a meter."""

    def __init__(self, stream: BinaryIO, meter: _Meter):
        self._stream, self._meter = stream, meter

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._meter.add(len(data))
        return data


class UnpackError(Exception):
    """A contribution that cannot be unpacked; the message says why."""


@dataclass
class Unpacked:
    upload_id: str
    contribution_id: str
    code: str
    files: int
    bytes: int
    unreadable: int
    suite: str
    skipped: bool = False


def open_envelope(
    upload: BinaryIO, keys: PrivateKeys, sink: BinaryIO
) -> tuple[bytes, tuple[int, int, int]]:
    """Decrypt every chunk into `sink`; returns the contribution id and the suite. Raises UnpackError."""
    contribution_id: bytes | None = None
    suite: tuple[int, int, int] | None = None
    expected_index, final_seen = 0, False
    try:
        for header, raw, message in read_chunks(upload):
            if final_seen:
                raise UnpackError("there is data after the final chunk")
            if header.index != expected_index:
                raise UnpackError(f"chunk {expected_index} is missing or out of order")
            if contribution_id is None:
                contribution_id, suite = header.contribution_id, header.suite
            elif header.contribution_id != contribution_id:
                raise UnpackError(f"chunk {header.index} belongs to another contribution")
            elif header.suite != suite:
                raise UnpackError(f"chunk {header.index} is sealed with another suite than chunk 0")
            key = keys.classical if header.suite == SUITE_X25519 else keys.hybrid
            if key is None:
                raise UnpackError("the contribution is sealed with the hybrid suite, and no "
                                  "hybrid private key was given")
            try:
                plaintext = OPENERS[header.suite].decrypt(message, key, info=raw)
            except Exception:
                raise UnpackError(
                    f"chunk {header.index} does not open: it was altered, or sealed to another key"
                ) from None
            if not plaintext and not (header.index == 0 and header.final):
                raise UnpackError(f"chunk {header.index} is empty")
            sink.write(plaintext)
            final_seen = header.final
            expected_index += 1
    except EnvelopeError as exc:
        raise UnpackError(str(exc)) from None
    if contribution_id is None or suite is None:
        raise UnpackError("the upload is empty")
    if not final_seen:
        raise UnpackError("the contribution is cut short: its final chunk is missing")
    return contribution_id, suite


# The package's ZIP layout (FORMAT.md, "Layout"), as a reader checks it.
_ZIP64_END = struct.Struct("<4sQHHIIQQQQ")
_LOCATOR = struct.Struct("<4sIQI")
_END = struct.Struct("<4sHHHHIIH")
_TAIL = _ZIP64_END.size + _LOCATOR.size + _END.size  # the records that end every package
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_ZIP64_EXTRA = struct.Struct("<HHQQQ")
_FLAGS = 0x0808  # bit 3, a data descriptor; bit 11, a UTF-8 name
_ENCRYPTED = 0x0001
_U32 = 0xFFFFFFFF
_LOCAL_SIZE = 30 + 20  # a local header but its name: fixed fields, ZIP64 extra
_DESCRIPTOR_SIZE = 24
MAX_NAME_BYTES = len(FILES_PREFIX) + MAX_PATH_BYTES
DEFLATE_MAX_RATIO = 1032  # deflate's best: 258 bytes from two bits
# Each method's greatest ratio, and which methods each version of the format writes.
MAX_RATIO = {STORED: 1, DEFLATED: DEFLATE_MAX_RATIO, ZSTD: ZSTD_MAX_RATIO}
VERSION_METHODS = {1: {STORED, DEFLATED}, 2: {STORED, ZSTD}}


class _Record(NamedTuple):
    """A central directory header, field by field."""

    signature: bytes
    made_by: int
    needed: int
    flags: int
    method: int
    time: int
    date: int
    crc: int
    compressed: int
    size: int
    name_length: int
    extra_length: int
    comment_length: int
    disk: int
    internal: int
    external: int
    offset: int


@dataclass(frozen=True)
class _Directory:
    offset: int
    size: int
    entries: int


def _directory(package: BinaryIO, size: int) -> _Directory:
    """Where the central directory is and how many entries it declares, from the three records
    that end every package. No other ending is read, so zipfile finds the same directory."""
    if size < _TAIL:
        raise UnpackError("the package is not a readable ZIP archive: it is too short")
    package.seek(size - _TAIL)
    tail = package.read(_TAIL)
    (signature, record_size, _, _, disk, directory_disk, on_disk, entries,
     directory_size, directory_offset) = _ZIP64_END.unpack_from(tail)
    locator = _LOCATOR.unpack_from(tail, _ZIP64_END.size)
    end = _END.unpack_from(tail, _ZIP64_END.size + _LOCATOR.size)
    if ((signature, record_size, disk, directory_disk) != (b"PK\x06\x06", 44, 0, 0)
            or locator != (b"PK\x06\x07", 0, size - _TAIL, 1)
            or end[0] != b"PK\x05\x06" or end[-1] != 0):
        raise UnpackError("the package does not end as this format's archives do "
                          "(a ZIP64 end record, its locator and an end record without comment)")
    if entries > MAX_ENTRIES:
        raise UnpackError(f"the package declares {entries} entries; a package holds at most {MAX_ENTRIES}")
    if on_disk != entries or directory_offset + directory_size != size - _TAIL:
        raise UnpackError("the package's ZIP64 end record contradicts itself or the package")
    return _Directory(directory_offset, directory_size, entries)


def _records(package: BinaryIO, directory: _Directory) -> Iterator[tuple[_Record, bytes, bytes]]:
    """The central directory's records (header, name, extra), one at a time and no more than
    declared: zipfile keeps a ZipInfo of every record it finds, whatever the count says."""
    package.seek(directory.offset)
    read = index = 0
    while read < directory.size:
        if index == directory.entries:
            raise UnpackError(f"the central directory holds more records than the {directory.entries} it declares")
        header = package.read(_CENTRAL.size)
        record = _Record._make(_CENTRAL.unpack(header)) if len(header) == _CENTRAL.size else None
        if (record is None or record.signature != b"PK\x01\x02" or record.comment_length
                or record.extra_length != _ZIP64_EXTRA.size or not 0 < record.name_length <= MAX_NAME_BYTES):
            raise UnpackError(f"central directory record {index} is not laid out as this format's")
        name, extra = package.read(record.name_length), package.read(record.extra_length)
        read += _CENTRAL.size + record.name_length + record.extra_length
        index += 1
        yield record, name, extra
    if (read, index) != (directory.size, directory.entries):
        raise UnpackError(f"the central directory holds {index} records in {read} bytes, not the "
                          f"{directory.entries} in {directory.size} bytes its end records declare")


def _next_entry(record: _Record, name: bytes, extra: bytes, offset: int) -> int:
    """Where the entry after this one starts; refuses what this format never writes, and a
    size that the entry's compressed bytes could not hold (those lie in the package, one entry
    after another, so no package claims more than 32,768 times its size)."""
    label = name[:200].decode("utf-8", "replace")
    if record.flags & _ENCRYPTED:
        raise UnpackError(f"{label} is encrypted: this format never encrypts entries (the envelope seals them)")
    if record.flags != _FLAGS:
        raise UnpackError(f"{label}: general purpose flags {record.flags:#06x}; this format writes only 0x0808")
    if record.method not in MAX_RATIO:
        raise UnpackError(f"{label}: compression method {record.method}; this format uses only "
                          "stored (0) and Zstandard (93), and deflate (8) in version 1")
    tag, length, size, compressed, local = _ZIP64_EXTRA.unpack(extra)
    if (record.compressed, record.size, record.offset, tag, length) != (_U32, _U32, _U32, 1, 24):
        raise UnpackError(f"{label}: its sizes are not in a ZIP64 extra field as this format writes them")
    if local != offset:
        raise UnpackError(f"{label}: it does not start where the entry before it ends")
    most = compressed * MAX_RATIO[record.method]
    if size > most:
        raise UnpackError(f"{label}: it declares {size} bytes, more than {compressed} compressed bytes can hold")
    return local + _LOCAL_SIZE + len(name) + compressed + _DESCRIPTOR_SIZE


def check_directory(package: BinaryIO, size: int) -> None:
    """The package's central directory, checked record by record in bounded memory before
    zipfile reads it: entries one after another from the start, up to the directory."""
    directory = _directory(package, size)
    offset = 0
    for record, name, extra in _records(package, directory):
        offset = _next_entry(record, name, extra, offset)
    if offset != directory.offset:
        raise UnpackError("the package's entries do not end where its central directory begins")


def safe_path(path: Any) -> Path:
    """A manifest path as a relative path that cannot leave the folder it is joined to."""
    problem = "it is not text" if not isinstance(path, str) else path_problem(path)
    if problem:
        raise UnpackError(f"file path {str(path)[:200]!r} is refused: {problem}")
    return Path(*path.split("/"))


def _is_int(value: Any) -> bool:
    return type(value) is int  # JSON true is not 1, and 1.0 is not an integer


_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{},:')
_LEVELS = bytes.maketrans(b"[]{}", b"\x02\x00\x02\x00")


def _outside_strings(raw: bytes) -> bytes:
    """JSON `raw`'s brackets, commas and colons that are not in strings, in passes that cost
    the same per byte whatever the input."""
    # Escaped backslashes first: the quote after one ends its string; then escaped quotes.
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Two quotes side by side change no byte's inside or outside of a string.
    structure = unescaped.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    return b"".join(structure.split(b'"')[::2])


def _values(outside: bytes, brackets: bytes) -> int:
    """How many values, member names among them, JSON holds (an empty array or object counts
    twice): each follows a comma or a colon, or is the first in its array or object, or the top."""
    return len(outside) - len(brackets) + len(brackets) // 2 + 1


def _depth(brackets: bytes) -> int:
    """How deep brackets nest."""
    # An opening bracket as 2, a closing one as 0: after i of them, the sum less i is the depth.
    levels = itertools.accumulate(brackets.translate(_LEVELS))
    return max(map(operator.sub, levels, itertools.count(1)), default=0)


def _json_object(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN or Infinity, no key twice (a reader could take either one),
    and no deeper or larger than a manifest needs, so that parsing it is bounded."""

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("a key occurs twice")
        return dict(pairs)

    # Counted before parsing: json's parser recurses once per level, and a value of three
    # bytes (`{},`) costs it 64. Values first, as they bound the work of counting levels.
    outside = _outside_strings(raw)
    brackets = outside.translate(None, b",:")
    if _values(outside, brackets) > MAX_VALUES:
        raise ValueError(f"it holds more than {MAX_VALUES:,} values")
    if _depth(brackets) > MAX_DEPTH:
        raise ValueError(f"it nests deeper than {MAX_DEPTH} levels")
    return json.loads(raw.decode("utf-8"), parse_constant=no_constants, object_pairs_hook=unique)


def _open(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Any:
    """An entry's bytes as a stream: Zstandard by our own reader, on every Python."""
    if info.compress_type == ZSTD:
        return ZstdEntry(str(archive.filename), info)
    return archive.open(info)


def _manifest(archive: zipfile.ZipFile, contribution_id: bytes) -> tuple[bytes, dict[str, Any]]:
    try:
        info = archive.getinfo(MANIFEST_NAME)
    except KeyError:
        raise UnpackError("the package has no manifest") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise UnpackError("the manifest is too large")
    try:
        with _open(archive, info) as f:
            read = bytearray()  # ZstdEntry.read gives what one step makes: on to the end or the bound
            while len(read) <= MAX_MANIFEST_BYTES:
                block = f.read(MAX_MANIFEST_BYTES + 1 - len(read))
                if not block:
                    break
                read += block
            raw = bytes(read)
    except _DAMAGED_ZIP as exc:
        raise UnpackError(f"the manifest cannot be read: {exc}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise UnpackError("the manifest is too large")
    try:
        manifest = _json_object(raw)
    except ValueError as exc:
        raise UnpackError(f"the manifest is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise UnpackError("the manifest is not a JSON object")
    if manifest.get("format") != FORMAT or not (
        _is_int(manifest.get("version")) and manifest["version"] in VERSION_METHODS
    ):
        raise UnpackError(f"the manifest is not a pcir-contribution version 1 or {FORMAT_VERSION} manifest")
    methods = {i.compress_type for i in archive.infolist()} - VERSION_METHODS[manifest["version"]]
    if methods:
        raise UnpackError(f"a version {manifest['version']} package uses no compression method {min(methods)}")
    if manifest.get("contribution_id") != contribution_id.hex():
        raise UnpackError("the manifest names another contribution than its envelope")
    files = manifest.get("files")
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise UnpackError("the manifest's file list is missing or too long")
    for record in files:
        if not (
            isinstance(record, dict)
            and _is_int(record.get("size")) and record["size"] >= 0
            and isinstance(record.get("sha256"), str) and _HEX64.fullmatch(record["sha256"])
            and record.get("entry") == FILES_PREFIX + str(record.get("path"))
        ):
            raise UnpackError(f"the manifest has a malformed file record: {str(record)[:200]}")
        safe_path(record["path"])
    return raw, manifest


def _entries(archive: zipfile.ZipFile, records: list[dict[str, Any]]) -> list[zipfile.ZipInfo]:
    """Each record's entry, of the record's size: all checked before any file is written."""
    entries = []
    for record in records:
        try:
            info = archive.getinfo(record["entry"])
        except KeyError:
            raise UnpackError(f"{record['path']}: listed in the manifest but not in the package") from None
        if info.file_size != record["size"]:
            raise UnpackError(f"{record['path']}: the package and the manifest disagree on its size")
        entries.append(info)
    return entries


def _extract(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, record: dict[str, Any], root: Path, meter: _Meter
) -> None:
    target = root / safe_path(record["path"])
    digest, written = hashlib.sha256(), 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _open(archive, info) as source, open(target, "xb") as sink:
            # Read at most one byte past the promised size: an entry that inflates beyond
            # it (a decompression bomb) is stopped there.
            while written <= record["size"]:
                block = source.read(min(_COPY_SIZE, record["size"] + 1 - written))
                if not block:
                    break
                digest.update(block)
                sink.write(block)
                written += len(block)
                meter.add(len(block))
    except FileExistsError:
        raise UnpackError(f"{record['path']}: the path occurs twice") from None
    except _DAMAGED_ZIP as exc:
        # A damaged or unsupported entry, or a path whose folder is a file of the package.
        raise UnpackError(f"{record['path']}: {exc}") from None
    if written != record["size"] or digest.hexdigest() != record["sha256"]:
        raise UnpackError(f"{record['path']}: its bytes do not match the manifest's SHA-256")


def delivered(upload_id: str, out: Path) -> Unpacked | None:
    """What this upload delivered, if its delivery record (`out/.uploads/<upload id>`) says so."""
    marker = out / ".uploads" / upload_id
    if marker.exists():
        done_id, kem = marker.read_text().split()
        if (out / done_id / MANIFEST_NAME).exists():
            suite = next(s for s in SUITES if s[0] == int(kem, 16))
            return _summary(upload_id, out / done_id, suite, skipped=True)
    return None


def unpack_upload(
    upload_id: str,
    data: Path | Completed,
    keys: PrivateKeys,
    out: Path,
    report: Callable[[str], None] = lambda line: None,
    attempt: str = "",
) -> Unpacked:
    """Unpack one completed upload into `out/<contribution id>`; skips it if done before.

    What is done is recorded per upload (`out/.uploads/<upload id>`), not read from the
    upload's clear header: anyone can seal chunks under any contribution id, so an upload
    naming a contribution that another upload already delivered is refused, not skipped.
    `data` is the upload's file or a Completed from any source (completed.py). Each attempt
    works in `out/.unpacking-<upload id><attempt>`: attempts that may run at once (queued jobs
    on several machines) pass distinct `attempt`s.
    """
    done = delivered(upload_id, out)
    if done is not None:
        return done
    upload_data = local_upload(upload_id, data) if isinstance(data, Path) else data

    work = out / f".unpacking-{upload_id}{attempt}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "contribution" / "files").mkdir(parents=True)
    try:
        package_path = work / "package.zip"
        with upload_data.open() as upload, open(package_path, "wb") as sink:
            meter = _Meter(report, "opening", upload_data.size)
            contribution_id, suite = open_envelope(_Metered(upload, meter), keys, sink)  # type: ignore[arg-type]
        with open(package_path, "rb") as package:
            check_directory(package, package_path.stat().st_size)
        try:
            archive = zipfile.ZipFile(package_path)
        except _DAMAGED_ZIP as exc:
            raise UnpackError(f"the package is not a readable ZIP archive: {exc}") from None
        with archive:
            raw, manifest = _manifest(archive, contribution_id)
            named = {record["entry"] for record in manifest["files"]} | {MANIFEST_NAME}
            stray = [name for name in archive.namelist() if name not in named]
            if stray:
                raise UnpackError(f"the package holds entries the manifest does not list: {stray[:5]}")
            if len(archive.namelist()) != len(set(archive.namelist())):
                raise UnpackError("the package names an entry twice")
            entries = _entries(archive, manifest["files"])
            needed = sum(record["size"] for record in manifest["files"])
            if shutil.disk_usage(out).free < needed + _SPARE_BYTES:
                raise UnpackError(f"{out} has not enough free space for {needed} bytes")
            meter = _Meter(report, "writing files", needed)
            for info, record in zip(entries, manifest["files"]):
                _extract(archive, info, record, work / "contribution" / "files", meter)
        (work / "contribution" / MANIFEST_NAME).write_bytes(raw)
        final_dir = out / contribution_id.hex()
        _move_into_place(work / "contribution", final_dir, raw)
        marker = out / ".uploads" / upload_id
        marker.parent.mkdir(exist_ok=True)
        (work / "marker").write_text(f"{contribution_id.hex()} {suite[0]:04x}\n")
        os.replace(work / "marker", marker)
        return _summary(upload_id, final_dir, suite)
    except OSError as exc:  # the repository's own disks: the upload unreadable, OUT full
        raise UnpackError(str(exc)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _move_into_place(contribution: Path, final_dir: Path, manifest: bytes) -> None:
    """Rename the checked contribution into place, unless it is there already.

    A contribution in place with this very manifest is this one, delivered before: its
    manifest names every file by SHA-256. That is an attempt of this upload that stopped
    before recording its delivery, or ran at the same time as this one, so the record is
    written and nothing else changes. Another manifest under the same id is another upload's.
    """
    try:
        os.rename(contribution, final_dir)  # refuses a non-empty final_dir; every one is
        return
    except OSError:
        if not final_dir.is_dir():
            raise
    try:
        same = (final_dir / MANIFEST_NAME).read_bytes() == manifest
    except FileNotFoundError:
        same = False
    if not same:
        raise UnpackError(f"contribution {final_dir.name} was already delivered by another upload")


def _summary(
    upload_id: str, folder: Path, suite: tuple[int, int, int], skipped: bool = False
) -> Unpacked:
    manifest = json.loads((folder / MANIFEST_NAME).read_bytes())
    files = manifest["files"]
    return Unpacked(
        upload_id=upload_id,
        contribution_id=manifest["contribution_id"],
        code=receipt_code(bytes.fromhex(manifest["contribution_id"])),
        files=len(files),
        bytes=sum(r["size"] for r in files),
        unreadable=sum(1 for r in files if "error" in r),
        suite=SUITE_NAMES[suite],
        skipped=skipped,
    )


def reason(exc: Exception) -> str:
    """Why an upload failed, in plain words: our checks say it, and for what no check foresaw
    (the machine's limits, or a bug of ours) the exception is named."""
    if isinstance(exc, UnpackError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "unpacking it ran out of memory"
    return f"unpacking it failed unexpectedly ({type(exc).__name__}: {str(exc)[:200] or 'no details'})"


def describe(result: Unpacked) -> str:
    """One line on an unpacked upload, as `unpack` and the workers print it."""
    verb = "already unpacked" if result.skipped else "unpacked"
    note = f", {result.unreadable} not fully readable on the disc" if result.unreadable else ""
    return (f"{verb:16s} {result.contribution_id} (receipt {result.code}): "
            f"{result.files} files, {result.bytes} bytes, sealed with {result.suite}{note}")


def unpack_all(
    data_dir: Path,
    keys: PrivateKeys,
    out: Path,
    report: Callable[[str], None] = print,
) -> bool:
    """Unpack every completed upload; True when all of them are unpacked (or were already)."""
    out.mkdir(parents=True, exist_ok=True)
    ok = True
    for upload in completed_uploads(data_dir):
        try:
            result = unpack_upload(upload.id, upload.data_path, keys, out, report)
        except Exception as exc:  # one upload, whatever it did, must not stop the ones after it
            ok = False
            report(f"FAILED  upload {upload.id}: {reason(exc)}")
            continue
        report(describe(result))
    return ok
