"""What the receiver holds, for the repository operator: every upload, read without the key.

Only what is in clear is used (the server's record and the chunk headers): state, size,
chunks, the suite each contribution was sealed with, when it started and finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pcir_upload.page.seal.envelope import HEADER_SIZE, SUITE_HYBRID, ChunkHeader, EnvelopeError
from pcir_upload.repository.receive.store import Upload, all_uploads


@dataclass(frozen=True)
class Entry:
    upload_id: str
    state: str  # "uploading" or "complete"
    size: int
    chunks: int
    suite: str
    started: str
    finished: str


def _headers(data_path: Path) -> Iterator[ChunkHeader]:
    """The clear headers of the whole chunks in an upload, skipping their sealed messages."""
    size = data_path.stat().st_size
    with open(data_path, "rb") as f:
        while f.tell() + HEADER_SIZE <= size:
            header = ChunkHeader.parse(f.read(HEADER_SIZE))
            if f.tell() + header.length > size:
                return
            f.seek(header.length, 1)
            yield header


def _entry(upload: Upload) -> Entry:
    try:
        headers = list(_headers(upload.data_path))
        suite = "" if not headers else (
            "ML-KEM-768+X25519" if headers[0].suite == SUITE_HYBRID else "X25519")
    except (EnvelopeError, OSError):
        headers, suite = [], "unreadable"
    return Entry(
        upload_id=upload.id,
        state="complete" if upload.completed else "uploading",
        size=upload.offset,
        chunks=len(headers),
        suite=suite,
        started=upload.created,
        finished=upload.completed or "",
    )


def entries(data_dir: Path) -> list[Entry]:
    return [_entry(upload) for upload in all_uploads(data_dir)]


def table(data_dir: Path) -> str:
    rows = [("UPLOAD", "STATE", "BYTES", "CHUNKS", "SUITE", "STARTED", "FINISHED")]
    rows += [(e.upload_id, e.state, str(e.size), str(e.chunks), e.suite, e.started, e.finished)
             for e in entries(data_dir)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
