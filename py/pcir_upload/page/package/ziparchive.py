"""A ZIP archive written front to back as a stream, never seeking and never holding a file.

Sizes and CRCs are not known when an entry starts, so every entry uses a data descriptor
(general purpose flag bit 3). Every entry is ZIP64 (APPNOTE 4.3.9.2 allows it at any size),
so one layout serves a 1 KiB report and a 5 GiB CT series alike and the format has no size
switch to get wrong. Names are UTF-8 (flag bit 11). Timestamps are all 1980-01-01: the disc's
file times say nothing the repository needs, and a constant keeps packages reproducible.
Entries are stored or Zstandard (method 93, APPNOTE 6.3.8): a tighter and faster encoding
than deflate, which held an old laptop's cores and sent more bytes on the patient's uplink.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from pcir_upload.page.package.zstandard import zstd

STORED = 0
DEFLATED = 8  # written by format version 1 only; the repository still reads such packages
ZSTD = 93
METHODS = (STORED, ZSTD)  # what this writer writes

_VERSION = 63  # 6.3: Zstandard (and ZIP64, 4.5)
_FLAGS = 0x0808  # bit 3: data descriptor; bit 11: UTF-8 names
_DOS_TIME, _DOS_DATE = 0, (0 << 9) | (1 << 5) | 1  # 1980-01-01 00:00:00
_U32 = 0xFFFFFFFF
_U16 = 0xFFFF

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_ZIP64_LOCAL_EXTRA = struct.Struct("<HHQQ")
_DESCRIPTOR = struct.Struct("<IIQQ")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_ZIP64_CENTRAL_EXTRA = struct.Struct("<HHQQQ")
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_END = struct.Struct("<IHHHHIIH")


@dataclass
class _Entry:
    name: bytes
    method: int
    offset: int
    crc: int = 0
    size: int = 0
    compressed_size: int = 0


class ZipWriter:
    """Frames entries into archive bytes; the caller sends the bytes on as they come.

    Use: `begin(name, method)`, then `data(encoded)` any number of times, then
    `end(crc, size)`, for each entry; `finish()` once. Each returns the bytes to append to
    the archive. The entry's data is encoded elsewhere (`EntryEncoder`), so that it can be
    compressed on another core while this writer stays in order.
    """

    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self._current: _Entry | None = None
        self.offset = 0  # bytes of archive produced so far

    def _emit(self, data: bytes) -> bytes:
        self.offset += len(data)
        return data

    def begin(self, name: str, method: int = ZSTD) -> bytes:
        """`method` DEFLATED frames a version 1 entry: for the tests of what the repository
        still reads; this writer's own encoder makes only `METHODS`."""
        if self._current is not None:
            raise RuntimeError("the previous entry is not ended")
        if method not in METHODS + (DEFLATED,):
            raise ValueError(f"unsupported method {method}")
        encoded = name.encode("utf-8")
        if not encoded or len(encoded) > _U16:
            raise ValueError(f"bad entry name {name!r}")
        self._current = _Entry(encoded, method, self.offset)
        extra = _ZIP64_LOCAL_EXTRA.pack(0x0001, 16, 0, 0)
        header = _LOCAL.pack(
            0x04034B50, _VERSION, _FLAGS, method, _DOS_TIME, _DOS_DATE,
            0, _U32, _U32, len(encoded), len(extra),
        )
        return self._emit(header + encoded + extra)

    def data(self, encoded: bytes) -> bytes:
        """Entry data as stored (compressed or not): passed through, counted."""
        if self._current is None:
            raise RuntimeError("no entry begun")
        self._current.compressed_size += len(encoded)
        return self._emit(encoded)

    def end(self, crc: int, size: int) -> bytes:
        """The data descriptor: the entry's CRC-32 and uncompressed size."""
        entry = self._current
        if entry is None:
            raise RuntimeError("no entry begun")
        entry.crc, entry.size = crc, size
        self._entries.append(entry)
        self._current = None
        descriptor = _DESCRIPTOR.pack(0x08074B50, entry.crc, entry.compressed_size, entry.size)
        return self._emit(descriptor)

    def finish(self) -> bytes:
        if self._current is not None:
            raise RuntimeError("the last entry is not ended")
        central_offset = self.offset
        parts = []
        for e in self._entries:
            extra = _ZIP64_CENTRAL_EXTRA.pack(0x0001, 24, e.size, e.compressed_size, e.offset)
            parts.append(_CENTRAL.pack(
                0x02014B50, _VERSION, _VERSION, _FLAGS, e.method, _DOS_TIME, _DOS_DATE,
                e.crc, _U32, _U32, len(e.name), len(extra), 0, 0, 0, 0, _U32,
            ) + e.name + extra)
        central = b"".join(parts)
        zip64_end_offset = central_offset + len(central)
        count = len(self._entries)
        zip64_end = _ZIP64_END.pack(
            0x06064B50, _ZIP64_END.size - 12, _VERSION, _VERSION, 0, 0,
            count, count, len(central), central_offset,
        )
        locator = _ZIP64_LOCATOR.pack(0x07064B50, 0, zip64_end_offset, 1)
        end = _END.pack(
            0x06054B50, 0, 0, min(count, _U16), min(count, _U16),
            min(len(central), _U32), min(central_offset, _U32), 0,
        )
        return self._emit(central + zip64_end + locator + end)


def compressor(level: int) -> zstd.ZstdCompressor:
    """One Zstandard frame at `level` (2 to 9, see `levels`): no checksum (the entry's CRC-32
    covers its bytes), no content size (it is not known when the frame starts)."""
    return zstd.ZstdCompressor(level)


class EntryEncoder:
    """One entry's data as ZIP stores it, fed in pieces: a Zstandard frame or stored as it is,
    and the CRC-32 and size its data descriptor needs. Zstandard fed with `compress` (never a
    flush but the last) gathers input into blocks of its own, so its output does not depend
    on how the input is split: the same file always encodes to the same bytes."""

    def __init__(self, method: int, level: int = 3):
        if method not in METHODS:
            raise ValueError(f"unsupported method {method}")
        self.method = method
        self._compressor = compressor(level) if method == ZSTD else None
        self.crc = 0
        self.size = 0

    def encode(self, data: bytes) -> bytes:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        return self._compressor.compress(data) if self._compressor else data

    def flush(self) -> bytes:
        """The last of the entry's data; the encoder is done after it."""
        tail = self._compressor.flush() if self._compressor else b""
        self._compressor = None
        return tail


def entry(writer: ZipWriter, name: str, content: bytes, method: int = ZSTD, level: int = 3) -> bytes:
    """A whole entry at once: for small ones (the manifest) and tests."""
    encoder = EntryEncoder(method, level)
    encoded = encoder.encode(content) + encoder.flush()
    return writer.begin(name, method) + writer.data(encoded) + writer.end(encoder.crc, encoder.size)
