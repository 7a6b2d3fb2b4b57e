"""A Zstandard entry of a package (method 93), read as a stream in bounded memory.

Python's `zipfile` reads method 93 only from 3.14 on, and even there it would decompress
whatever window a frame asks for; this reader is used on every Python so that one rule holds
everywhere (docs/FORMAT.md, "Opening"): exactly one frame, filling the entry's compressed
bytes to the end, with a window of at most 8 MiB, and the entry's CRC-32 at its end. The
caller bounds the output (it reads at most one byte past the size the manifest gives).
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from typing import BinaryIO

from pcir_upload.page.package.zstandard import zstd

WINDOW_LOG_MAX = 23  # 8 MiB: the writer's levels (2 to 9) use at most 4 MiB
MAX_RATIO = 32768  # Zstandard's best: a 4-byte RLE block for 128 KiB
_READ = 1024 * 1024
_LOCAL = struct.Struct("<4sHHHHHIIIHH")

ZstdError = zstd.ZstdError


class ZstdEntry:
    """`read(n)` of one entry's uncompressed bytes; raises zipfile.BadZipFile on a damaged one."""

    def __init__(self, path: str, info: zipfile.ZipInfo):
        self._file: BinaryIO = open(path, "rb")
        try:
            self._file.seek(info.header_offset)
            header = _LOCAL.unpack(self._file.read(_LOCAL.size))
            name = self._file.read(header[9])
            if header[0] != b"PK\x03\x04" or header[3] != 93 or name != info.orig_filename.encode("utf-8"):
                raise zipfile.BadZipFile(f"{info.filename}: its local header does not match the central directory")
            self._file.seek(header[10], 1)
        except BaseException:
            self._file.close()
            raise
        self._left = info.compress_size
        self._crc, self._expected_crc = 0, info.CRC
        self._name = info.filename
        self._decompressor = zstd.ZstdDecompressor(
            options={zstd.DecompressionParameter.window_log_max: WINDOW_LOG_MAX})

    def read(self, size: int) -> bytes:
        out = b""
        while not out and size > 0 and not self._decompressor.eof:
            data = b""
            if self._decompressor.needs_input:
                data = self._file.read(min(_READ, self._left))
                if not data:
                    raise zipfile.BadZipFile(f"{self._name}: its Zstandard frame is cut short")
                self._left -= len(data)
            out = self._decompressor.decompress(data, size)
        self._crc = zlib.crc32(out, self._crc)
        if self._decompressor.eof:
            if self._left or self._decompressor.unused_data:
                raise zipfile.BadZipFile(f"{self._name}: bytes follow its Zstandard frame")
            if self._crc != self._expected_crc:
                raise zipfile.BadZipFile(f"{self._name}: bad CRC-32")
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ZstdEntry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
