"""The contribution package: every file of the disc, byte for byte, and a manifest, as one ZIP.

The package is produced as a stream of bytes pieces, file by file, piece by piece; nothing
holds a whole file. Each file's SHA-256 is computed on the way through and written into
`manifest.json`, the archive's last entry, so the repository can check every byte it unpacks.
A file that cannot be read is not a reason to stop: what was read is kept, the manifest says
what went wrong, and the rest of the disc goes on.

Reading, hashing and compressing a piece is a packer's work (`Packer`): in the browser, packer
workers on the other cores do it for pieces ahead of the one being framed, while this module
puts their results into the archive in order. `LocalPacker` does it in place, one piece at a
time. Either way the bytes are the same: a file's pieces are fixed by its size, its method
by its first piece (`compressible`) and its level by `levels`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pcir_upload.page.package.compressible import worth_deflating
from pcir_upload.page.disc.disc import DiscFile, DiscReader, DiscReadError
from pcir_upload.page.package.levels import START, Levels
from pcir_upload.page.package.ziparchive import STORED, ZSTD, EntryEncoder, ZipWriter, entry

FORMAT = "pcir-contribution"
FORMAT_VERSION = 2  # 2: Zstandard entries; 1 (deflate) is still read by the repository
FILES_PREFIX = "files/"
MANIFEST_NAME = "manifest.json"
READ_SIZE = 4 * 1024 * 1024
AHEAD_BYTES = 16 * 1024 * 1024  # disc bytes given to packers beyond the piece being framed
AHEAD_PIECES = 32  # and at most this many pieces (a disc of tiny files)


@dataclass(frozen=True)
class PieceRequest:
    """One piece of one file for a packer: pieces of a file come in order, first to last."""

    file: int  # the file's index in the listing
    path: str
    size: int  # the file's size in the listing
    offset: int
    length: int
    level: int  # the file's Zstandard level, if its first piece says to compress
    first: bool
    last: bool


@dataclass(frozen=True)
class Piece:
    """What a packer made of a piece: entry data, and the file's totals where the entry ends."""

    data: bytes = b""
    method: int = STORED  # the entry's, decided at its first piece
    end: bool = False  # the entry ends here: its last piece, or reading failed
    skipped: bool = False  # a piece after the file failed: nothing was read
    crc: int = 0
    size: int = 0  # bytes of the file read, at the end
    sha256: str = ""
    error: str | None = None  # why the file ended early, in words for the patient


class Packer(Protocol):
    def submit(self, request: PieceRequest) -> Awaitable[Piece]:
        """Take a piece on; its result is awaited later, in the order pieces were submitted."""


class FileEncoder:
    """One file into its entry's data, piece by piece: SHA-256, CRC-32 and Zstandard (or not,
    as its first piece says) in one pass. `hashed`: the caller hashes the file itself (the
    browser's native SHA-256 is three times wasm's, but takes a file only whole), and the
    result's sha256 is left empty for it."""

    def __init__(self, level: int, hashed: bool = False):
        self._level = level
        self._entry: EntryEncoder | None = None
        self._digest = None if hashed else hashlib.sha256()

    def add(self, data: bytes, last: bool, error: str | None = None) -> Piece:
        """Encode the next piece; with `last` or an `error` the entry ends after it."""
        if self._entry is None:
            self._entry = EntryEncoder(ZSTD if worth_deflating(data) else STORED, self._level)
        if self._digest is not None:
            self._digest.update(data)
        encoded = self._entry.encode(data)
        if not (last or error):
            return Piece(encoded, self._entry.method)
        return Piece(
            encoded + self._entry.flush(), self._entry.method, end=True, crc=self._entry.crc,
            size=self._entry.size, sha256=self._digest.hexdigest() if self._digest else "",
            error=error,
        )


class Encoders:
    """A packer's files in progress, by index. A piece of a file that has ended (it failed)
    is skipped; an entry that never gets its last piece is dropped with `clear()`."""

    def __init__(self) -> None:
        self._files: dict[int, FileEncoder] = {}

    def wants(self, request: PieceRequest) -> bool:
        return request.first or request.file in self._files

    def piece(self, request: PieceRequest, data: bytes, error: str | None = None,
              hashed: bool = False) -> Piece:
        """`hashed` only for a file in one piece (see FileEncoder)."""
        if request.first:
            self._files[request.file] = FileEncoder(request.level, hashed and request.last)
        encoder = self._files.get(request.file)
        if encoder is None:
            return Piece(skipped=True)
        if error is None and len(data) < request.length:
            error = f"The file ended after {request.offset + len(data)} of {request.size} bytes."
        piece = encoder.add(data, request.last, error)
        if piece.end:
            del self._files[request.file]
        return piece

    def clear(self) -> None:
        self._files.clear()

    def __len__(self) -> int:
        return len(self._files)


async def read_piece(reader: DiscReader, request: PieceRequest) -> tuple[bytes, str | None]:
    """The piece's bytes (fewer if the file ended early) and why reading stopped, if it did."""
    parts: list[bytes] = []
    done = 0
    while done < request.length:
        try:
            data = await reader.read(request.path, request.offset + done, request.length - done)
        except DiscReadError as exc:
            return b"".join(parts), str(exc)
        if not data:
            break
        parts.append(data)
        done += len(data)
    return b"".join(parts), None


class LocalPacker:
    """Reads and encodes where it is called, one piece when it is awaited: on CPython, and
    in a browser that could not start packer workers."""

    def __init__(self, reader: DiscReader):
        self._reader = reader
        self._encoders = Encoders()

    def submit(self, request: PieceRequest) -> Awaitable[Piece]:
        return self._pack(request)

    async def _pack(self, request: PieceRequest) -> Piece:
        if not self._encoders.wants(request):
            return Piece(skipped=True)
        data, error = await read_piece(self._reader, request)
        return self._encoders.piece(request, data, error)


def pieces(listing: Sequence[DiscFile], levels: Callable[[int], int],
           read_size: int = READ_SIZE) -> Iterator[PieceRequest]:
    """Every file cut into pieces, in listing order. A file's level is asked for when its
    first piece is wanted, so that it can follow what the link takes at the time."""
    for index, f in enumerate(listing):
        level = levels(index)
        offset = 0
        while True:
            length = min(read_size, f.size - offset)
            last = offset + length >= f.size
            yield PieceRequest(index, f.path, f.size, offset, length, level, offset == 0, last)
            offset += length
            if last:
                break


class Packager:
    """Streams the package of one contribution; its counters tell the caller how far it has got.

    `levels` gives each file's Zstandard level and is told how long the packers kept it waiting."""

    def __init__(
        self,
        listing: Sequence[DiscFile],
        packer: Packer,
        manifest: dict[str, Any],
        levels: Levels | None = None,
        ahead: int = AHEAD_BYTES,
    ):
        self._listing = listing
        self._packer = packer
        self._manifest = manifest
        self._levels = levels if levels is not None else Levels()
        self._ahead = ahead
        self._zip = ZipWriter()
        self.files_done = 0
        self.bytes_read = 0  # disc bytes consumed, for progress
        self.records: list[dict[str, Any]] = []

    async def stream(self) -> AsyncIterator[bytes]:
        ahead = _Ahead(self._packer, pieces(self._listing, self._levels.level), self._ahead)
        counted = 0  # disc bytes of the current file counted in bytes_read
        try:
            while True:
                waiting = time.monotonic()
                taken = await ahead.next()
                self._levels.waited(False, time.monotonic() - waiting)
                if taken is None:
                    break
                request, piece = taken
                if piece.skipped:
                    continue
                disc_file = self._listing[request.file]
                if request.first:
                    counted = 0
                    yield self._zip.begin(FILES_PREFIX + disc_file.path, piece.method)
                step = disc_file.size - counted if piece.end else request.length
                counted += step
                self.bytes_read += step  # a file cut short counts fully: the bar reaches the end
                yield self._zip.data(piece.data)
                if piece.end:
                    yield self._zip.end(piece.crc, piece.size)
                    self.records.append(_record(disc_file, piece))
                    self.files_done += 1
        finally:
            ahead.abandon()
        manifest = dict(self._manifest, format=FORMAT, version=FORMAT_VERSION, files=self.records)
        body = json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8")
        yield entry(self._zip, MANIFEST_NAME, body, ZSTD, START)
        yield self._zip.finish()


class _Ahead:
    """Pieces handed to the packer before they are needed, within a budget of disc bytes, so
    that packers on other cores work while earlier pieces are framed, sealed and sent."""

    def __init__(self, packer: Packer, requests: Iterator[PieceRequest], budget: int):
        self._packer = packer
        self._requests = requests
        self._budget = budget
        self._pending: deque[tuple[PieceRequest, Awaitable[Piece]]] = deque()
        self._bytes = 0

    def _top_up(self) -> None:
        while not self._pending or (self._bytes < self._budget and len(self._pending) < AHEAD_PIECES):
            request = next(self._requests, None)
            if request is None:
                return
            self._pending.append((request, self._packer.submit(request)))
            self._bytes += request.length

    async def next(self) -> tuple[PieceRequest, Piece] | None:
        self._top_up()
        if not self._pending:
            return None
        request, result = self._pending.popleft()
        self._bytes -= request.length
        piece = await result
        self._top_up()
        return request, piece

    def abandon(self) -> None:
        """Drop work not taken (the contribution stops, or starts again)."""
        for _, result in self._pending:
            if asyncio.isfuture(result):
                result.cancel()
            elif asyncio.iscoroutine(result):
                result.close()
        self._pending.clear()


def _record(disc_file: DiscFile, piece: Piece) -> dict[str, Any]:
    record: dict[str, Any] = {
        "path": disc_file.path,
        "entry": FILES_PREFIX + disc_file.path,
        "size": piece.size,
        "sha256": piece.sha256,
    }
    if disc_file.role is not None:
        record["role"] = disc_file.role
    if disc_file.original is not None:
        record["original_path"] = disc_file.original
    if piece.error is not None:
        record["error"] = piece.error
        record["expected_size"] = disc_file.size
    return record
