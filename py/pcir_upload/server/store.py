"""Durable upload storage: one folder per upload, the bytes on disk are the truth.

    DATA/uploads/<upload_id>/data       the uploaded bytes, appended in order
    DATA/uploads/<upload_id>/info.json  {"id", "length", "created", "completed"}

The offset of an upload is the size of its `data` file, never a number kept
elsewhere, so a crash or restart can't make the two disagree. Bytes are fsynced
before a new offset is acknowledged, and info.json is only ever replaced
atomically, so nothing acknowledged to a patient's browser is lost.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import anyio.to_thread

MAX_UPLOAD_SIZE = 64 * 1024**3

# secrets.token_urlsafe(24) is 32 characters of this alphabet; anything else in a
# URL is not one of our uploads (and can't smuggle '/' or '..' into a path).
UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")


class UploadError(Exception):
    """A request the store refuses; the upload is left as it was."""


class UploadNotFound(UploadError):
    pass


class UploadBusy(UploadError):
    """Another request is writing this upload; its bytes must not interleave."""


class OffsetMismatch(UploadError):
    """The client's idea of the offset is not what is on disk."""


class InvalidLength(UploadError):
    """The declared length contradicts an earlier one or the bytes already stored."""


class UploadTooLarge(UploadError):
    """More bytes than the upload's length, or than the server accepts."""


@dataclass(frozen=True)
class Upload:
    """One upload as it is on disk right now. Timestamps are ISO-8601 UTC strings, as in info.json."""

    id: str
    length: int | None
    offset: int
    created: str
    completed: str | None
    data_path: Path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    """Make a rename, creation or removal inside `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(fd: int, chunk: bytes) -> None:
    """Write all of `chunk`; a module function so tests can make the disk run full."""
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]


def _write_info(folder: Path, info: dict[str, object]) -> None:
    """Replace info.json atomically: readers see the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".info.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / "info.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def _read(folder: Path) -> Upload | None:
    try:
        info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
        size = (folder / "data").stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return None  # half-created or being deleted: not an upload (yet, or any more)
    return Upload(
        id=info["id"],
        length=info["length"],
        offset=size,
        created=info["created"],
        completed=info["completed"],
        data_path=folder / "data",
    )


def _info(upload: Upload, *, length: int | None, completed: str | None) -> dict[str, object]:
    return {"id": upload.id, "length": length, "created": upload.created, "completed": completed}


class UploadStore:
    """Uploads under `data_dir/uploads`, at most `max_size` bytes each.

    Mutations are async and meant to run on one event loop: that loop's single
    thread is what makes the per-upload "someone is writing" check race-free.
    """

    def __init__(self, data_dir: Path, max_size: int = MAX_UPLOAD_SIZE) -> None:
        self.root = Path(data_dir) / "uploads"
        self.max_size = max_size
        self.root.mkdir(parents=True, exist_ok=True)
        self._busy: set[str] = set()

    def _folder(self, upload_id: str) -> Path | None:
        return self.root / upload_id if UPLOAD_ID.fullmatch(upload_id) else None

    def get(self, upload_id: str) -> Upload | None:
        folder = self._folder(upload_id)
        return _read(folder) if folder else None

    def iter_all(self) -> Iterator[Upload]:
        """Every upload, complete or not, oldest first."""
        uploads = (self.get(folder.name) for folder in self.root.iterdir())
        yield from sorted((u for u in uploads if u is not None), key=lambda u: (u.created, u.id))

    def iter_completed(self) -> Iterator[Upload]:
        """Completed uploads, oldest first."""
        return (u for u in self.iter_all() if u.completed is not None)

    async def create(self, length: int | None) -> Upload:
        """A new, empty upload; `length` None means the client will tell us later."""
        if length is not None and length < 0:
            raise InvalidLength(f"negative length {length}")
        if length is not None and length > self.max_size:
            raise UploadTooLarge(f"{length} bytes is more than the {self.max_size} this server accepts")
        return await anyio.to_thread.run_sync(self._create, length)

    def _create(self, length: int | None) -> Upload:
        upload_id = secrets.token_urlsafe(24)
        folder = self.root / upload_id
        folder.mkdir()
        fd = os.open(folder / "data", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        created = _now()
        completed = created if length == 0 else None
        info = {"id": upload_id, "length": length, "created": created, "completed": completed}
        _write_info(folder, info)  # last: until info.json exists, get() says there is no upload
        _fsync_dir(self.root)
        return Upload(upload_id, length, 0, created, completed, folder / "data")

    async def append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        length: int | None = None,
    ) -> int:
        """Append `chunks` at `offset` and return the new offset, once it is on disk.

        `length` declares a deferred length (or repeats the known one). If the
        sender stops mid-way (its iterator raises), what arrived is kept, as tus
        wants. If the upload is refused or the disk fails, the data is cut back to
        `offset`: a failed request changes nothing.
        """
        if upload_id in self._busy:
            raise UploadBusy(upload_id)
        self._busy.add(upload_id)
        try:
            return await self._append(upload_id, offset, chunks, length)
        finally:
            self._busy.discard(upload_id)

    async def _append(
        self, upload_id: str, offset: int, chunks: AsyncIterable[bytes], length: int | None
    ) -> int:
        upload = self.get(upload_id)
        if upload is None:
            raise UploadNotFound(upload_id)
        if offset != upload.offset:
            raise OffsetMismatch(f"the upload is at {upload.offset}, not {offset}")
        if length is not None:
            if upload.length is not None and length != upload.length:
                raise InvalidLength(f"the length is already {upload.length}")
            if length < upload.offset:
                raise InvalidLength(f"{upload.offset} bytes are already stored")
            if length > self.max_size:
                raise UploadTooLarge(f"{length} bytes is more than the {self.max_size} this server accepts")
        length = upload.length if upload.length is not None else length
        limit = length if length is not None else self.max_size

        fd = os.open(upload.data_path, os.O_WRONLY | os.O_APPEND)
        try:
            end = await self._receive(fd, offset, limit, chunks)
        finally:
            os.close(fd)

        completed = upload.completed
        if completed is None and length is not None and end == length:
            completed = _now()
        if (length, completed) != (upload.length, upload.completed):
            info = _info(upload, length=length, completed=completed)
            await anyio.to_thread.run_sync(_write_info, upload.data_path.parent, info)
        return end

    async def _receive(self, fd: int, offset: int, limit: int, chunks: AsyncIterable[bytes]) -> int:
        """Write chunks to `fd` (at `offset`) up to `limit` bytes in all; return the synced end."""
        end = offset
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                if end + len(chunk) > limit:
                    raise UploadTooLarge(f"the upload ends at {limit} bytes")
                await anyio.to_thread.run_sync(_write, fd, chunk)
                end += len(chunk)
            await anyio.to_thread.run_sync(os.fsync, fd)
        except (UploadTooLarge, OSError):
            os.ftruncate(fd, offset)
            os.fsync(fd)
            raise
        except BaseException:
            # The sender went away (or we are shutting down): keep what arrived.
            # Synchronously, as a cancelled task can't await a thread.
            os.fsync(fd)
            raise
        return end

    async def delete(self, upload_id: str) -> None:
        """Remove an upload and its bytes (tus termination)."""
        folder = self._folder(upload_id)
        if folder is None or _read(folder) is None:
            raise UploadNotFound(upload_id)
        if upload_id in self._busy:
            raise UploadBusy(upload_id)
        self._busy.add(upload_id)
        try:
            await anyio.to_thread.run_sync(self._delete, folder)
        finally:
            self._busy.discard(upload_id)

    def _delete(self, folder: Path) -> None:
        # info.json first, so a crash midway leaves a folder get() already ignores.
        (folder / "info.json").unlink()
        shutil.rmtree(folder)
        _fsync_dir(self.root)


def all_uploads(data_dir: Path) -> list[Upload]:
    """Every upload in `data_dir`, oldest first (what `list` shows)."""
    if not (Path(data_dir) / "uploads").is_dir():
        return []
    return list(UploadStore(data_dir).iter_all())


def completed_uploads(data_dir: Path) -> list[Upload]:
    """The uploads in `data_dir` that have all their bytes, oldest first (what `unpack` reads)."""
    return [u for u in all_uploads(data_dir) if u.completed is not None]
