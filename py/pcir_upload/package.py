"""The contribution package: every file of the disc, byte for byte, and a manifest, as one ZIP.

The package is produced as a stream of bytes pieces, file by file, slice by slice; nothing
holds a whole file. Each file's SHA-256 is computed on the way through and written into
`manifest.json`, the archive's last entry, so the repository can check every byte it unpacks.
A file that cannot be read is not a reason to stop: what was read is kept, the manifest says
what went wrong, and the rest of the disc goes on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .disc import DiscFile, DiscReader, DiscReadError
from .ziparchive import DEFLATED, STORED, ZipWriter

FORMAT = "pcir-contribution"
FORMAT_VERSION = 1
FILES_PREFIX = "files/"
MANIFEST_NAME = "manifest.json"
READ_SIZE = 4 * 1024 * 1024


class Packager:
    """Streams the package of one disc; its counters tell the caller how far it has got."""

    def __init__(
        self,
        listing: Sequence[DiscFile],
        reader: DiscReader,
        manifest: dict[str, Any],
        level: int = 1,
        read_size: int = READ_SIZE,
    ):
        self._listing = listing
        self._reader = reader
        self._manifest = manifest
        self._zip = ZipWriter(level)
        self._read_size = read_size
        self.files_done = 0
        self.bytes_read = 0  # disc bytes consumed, for progress
        self.records: list[dict[str, Any]] = []

    async def stream(self) -> AsyncIterator[bytes]:
        for disc_file in self._listing:
            async for piece in self._file(disc_file):
                yield piece
            self.files_done += 1
        manifest = dict(self._manifest, format=FORMAT, version=FORMAT_VERSION, files=self.records)
        body = json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8")
        yield self._zip.begin(MANIFEST_NAME, DEFLATED)
        yield self._zip.write(body)
        yield self._zip.end()
        yield self._zip.finish()

    async def _file(self, disc_file: DiscFile) -> AsyncIterator[bytes]:
        entry = FILES_PREFIX + disc_file.path
        yield self._zip.begin(entry, DEFLATED if disc_file.size else STORED)
        digest = hashlib.sha256()
        stored, error = 0, None
        while stored < disc_file.size:
            want = min(self._read_size, disc_file.size - stored)
            try:
                data = await self._reader.read(disc_file.path, stored, want)
            except DiscReadError as exc:
                error = str(exc)
                break
            if not data:
                error = f"The file ended after {stored} of {disc_file.size} bytes."
                break
            digest.update(data)
            stored += len(data)
            self.bytes_read += len(data)
            yield self._zip.write(data)
        yield self._zip.end()
        # A file cut short still counts fully towards progress, so the bar reaches the end.
        self.bytes_read += disc_file.size - stored
        record: dict[str, Any] = {
            "path": disc_file.path,
            "entry": entry,
            "size": stored,
            "sha256": digest.hexdigest(),
        }
        if disc_file.role is not None:
            record["role"] = disc_file.role
        if disc_file.original is not None:
            record["original_path"] = disc_file.original
        if error is not None:
            record["error"] = error
            record["expected_size"] = disc_file.size
        self.records.append(record)
