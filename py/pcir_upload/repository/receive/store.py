"""Durable upload storage: one folder per upload, the bytes on disk are the truth.

    DATA/uploads/<upload_id>/data        the uploaded bytes, appended in order
    DATA/uploads/<upload_id>/info.json   {"id", "length", "created", "completed"}, and only
                                         where they apply: "concat" ("partial" or "final"),
                                         "parts" (a final's partial ids, in order),
                                         "owner" (SHA-256 hex of the creator's secret)
    DATA/uploads/<upload_id>/unverified  only while a checksummed PATCH runs: its start offset

The offset of an upload is the size of its `data` file, never a number kept
elsewhere, so a crash or restart can't make the two disagree. Bytes are fsynced
before a new offset is acknowledged (by a PATCH's answer or by a HEAD while a PATCH
still runs), and info.json is only ever replaced atomically, so nothing acknowledged
to a patient's browser is lost.

A contribution is either one upload, or partial uploads (one per sealed chunk or a few)
joined by a final upload. Partials never count as complete contributions: the final's
`data` is their bytes copied into one file, so the opener sees one complete upload
either way. Unfinished uploads (every partial among them) expire a while after their
last write; complete ones once they have waited long enough for `unpack` (limits.py).

What the store knows about all uploads at once (who made them, how many bytes they hold)
comes from an index in memory (index.py), so no request reads more than its own upload's
folder; whether a new upload or more bytes are taken is admission.py's to say.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import anyio
import anyio.to_thread

from pcir_upload.repository.receive.admission import Admission, Refused
from pcir_upload.repository.receive.index import Entry, UploadIndex, timestamp
from pcir_upload.repository.receive.limits import Limits

MAX_UPLOAD_SIZE = 64 * 1024**3
MAX_CONTRIBUTION_SIZE = 64 * 1024**3
# A long PATCH is fsynced at least this often, so a HEAD during it, or a crash, finds
# most of what arrived already safe.
SYNC_EVERY = 4 * 1024 * 1024
_COPY_SIZE = 4 * 1024 * 1024

# secrets.token_urlsafe(24) is 32 characters of this alphabet; anything else in a
# URL is not one of our uploads (and can't smuggle '/' or '..' into a path).
UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")

log = logging.getLogger("pcir_upload.repository.receive")
TERMINATED_MEMORY = 3600.0  # seconds a terminated contribution's late chunks are still refused
TERMINATED_CAP = 10_000  # terminated contributions remembered at most (the oldest are forgotten first)
# Partials already joined into a final are remembered (so a retried final gets the same answer)
# for as long as they would have lived unjoined, and at most this many.
CONSUMED_CAP = 200_000


class UploadError(Exception):
    """A request the store refuses; the upload is left as it was."""


class UploadNotFound(UploadError):
    """No such upload, or not one the asker created: the two are not told apart."""


class UploadGone(UploadError):
    """The upload expired: nobody wrote to it for too long."""


class UploadBusy(UploadError):
    """Another request is writing this upload; its bytes must not interleave."""


class OffsetMismatch(UploadError):
    """The client's idea of the offset is not what is on disk."""


class InvalidLength(UploadError):
    """The declared length contradicts an earlier one or the bytes already stored."""


class UploadTooLarge(UploadError):
    """More bytes than the upload's length, or than the server accepts."""


class ChecksumMismatch(UploadError):
    """The request's bytes are not the ones the client hashed: none of them are kept."""


class FinalUpload(UploadError):
    """A final upload is made by concatenation; nobody writes to it."""


class InvalidConcat(UploadError):
    """A final upload that names something other than complete partials of its creator."""


class AlreadyConcatenated(UploadError):
    """A partial already belongs to another final upload."""


@dataclass(frozen=True)
class Upload:
    """One upload as it is on disk right now. Timestamps are ISO-8601 UTC strings, as in info.json."""

    id: str
    length: int | None
    offset: int
    created: str
    completed: str | None
    data_path: Path  # on an object store (s3store.py): None, the bytes are an object
    concat: str | None = None  # "partial", "final", or None for a plain upload
    parts: tuple[str, ...] = ()
    owner: str | None = None
    modified: float = 0.0  # when `data` was last written (POSIX time)

    @property
    def partial(self) -> bool:
        return self.concat == "partial"

    @property
    def finished(self) -> bool:
        """Finished business: a complete contribution, kept for the opener (limits.keep_completed).
        Partials never are."""
        return self.completed is not None and not self.partial


@dataclass(frozen=True)
class Checksum:
    """The tus checksum of one request's body: `algorithm` as hashlib names it, and the digest."""

    algorithm: str
    digest: bytes


def secret_owner(secret: str) -> str:
    """What info.json keeps of an upload secret: its SHA-256, so the folder can't be used to resume."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _same_owner(stored: str | None, given: str | None) -> bool:
    if stored is None or given is None:
        return stored is given
    return hmac.compare_digest(stored, given)


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
        stat = (folder / "data").stat()
    except (FileNotFoundError, NotADirectoryError):
        return None  # half-created or being deleted: not an upload (yet, or any more)
    offset = stat.st_size
    unverified = _unverified(folder)
    if unverified is not None:
        offset = min(offset, unverified)  # bytes past it are a checksummed request's, unproven
    return Upload(
        id=info["id"],
        length=info["length"],
        offset=offset,
        created=info["created"],
        completed=info["completed"],
        data_path=folder / "data",
        concat=info.get("concat"),
        parts=tuple(info.get("parts", ())),
        owner=info.get("owner"),
        modified=stat.st_mtime,
    )


def _unverified(folder: Path) -> int | None:
    try:
        return int((folder / "unverified").read_text(encoding="ascii"))
    except (FileNotFoundError, ValueError):
        return None


def _mark_unverified(folder: Path, offset: int) -> None:
    """Note durably where a checksummed request starts, so a crash can't leave its bytes behind."""
    fd = os.open(folder / "unverified", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write(fd, str(offset).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(folder)


def _clear_unverified(folder: Path) -> None:
    (folder / "unverified").unlink(missing_ok=True)
    _fsync_dir(folder)


def _undo_unverified(folder: Path) -> None:
    """Cut off what an interrupted checksummed request left: its bytes were never proven."""
    start = _unverified(folder)
    if start is not None:
        fd = os.open(folder / "data", os.O_WRONLY)
        try:
            if os.fstat(fd).st_size > start:
                os.ftruncate(fd, start)
                os.fsync(fd)
        finally:
            os.close(fd)
    _clear_unverified(folder)


def _info(upload: Upload, *, length: int | None, completed: str | None) -> dict[str, object]:
    info: dict[str, object] = {
        "id": upload.id, "length": length, "created": upload.created, "completed": completed
    }
    if upload.concat is not None:
        info["concat"] = upload.concat
    if upload.parts:
        info["parts"] = list(upload.parts)
    if upload.owner is not None:
        info["owner"] = upload.owner
    return info


def _new_upload_files(root: Path) -> tuple[str, Path, int]:
    """A fresh folder with an empty `data`, still invisible: it has no info.json yet."""
    upload_id = secrets.token_urlsafe(24)
    folder = root / upload_id
    folder.mkdir()
    fd = os.open(folder / "data", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return upload_id, folder, fd


def _entry(upload: Upload) -> Entry:
    """What the index keeps of an upload read from disk (its client is not on disk)."""
    completed = timestamp(upload.completed) if upload.finished else None
    return Entry(upload.owner, None, upload.length, upload.offset, upload.partial, completed, upload.modified)


def _remove(folder: Path) -> None:
    """Delete an upload folder; info.json first, so a crash midway leaves a folder get() ignores."""
    (folder / "info.json").unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


class _Writer:
    """An append in progress, and how far its bytes are safe on disk.

    `durable` is what a HEAD may report: fsynced, and kept whatever happens to the
    request. A checksummed request holds everything back until its digest matches.
    """

    def __init__(self, fd: int, start: int, hold: bool) -> None:
        self.fd = fd
        self.start = start
        self.written = start
        self.durable = start
        self.hold = hold
        self.closed = False
        self.lock = anyio.Lock()

    async def sync(self) -> int:
        """fsync what is written so far and make it durable; returns the durable offset."""
        async with self.lock:
            if not self.hold and not self.closed and self.written > self.durable:
                end = self.written
                # A duplicate, so the request may finish and close its descriptor meanwhile
                # without this fsync landing on whatever file reuses the number.
                fd = os.dup(self.fd)
                try:
                    await anyio.to_thread.run_sync(os.fsync, fd)
                finally:
                    os.close(fd)
                self.durable = end
            return self.durable


class UploadStore:
    """Uploads under `data_dir/uploads`, at most `max_size` bytes each, and at most
    `max_contribution_size` bytes for what becomes one contribution.

    Mutations are async and meant to run on one event loop: that loop's single
    thread is what makes the per-upload "someone is writing" check race-free.
    """

    def __init__(
        self,
        data_dir: Path,
        max_size: int = MAX_UPLOAD_SIZE,
        *,
        max_contribution_size: int = MAX_CONTRIBUTION_SIZE,
        limits: Limits = Limits(),
    ) -> None:
        self.root = Path(data_dir) / "uploads"
        self.max_size = max_size
        self.max_contribution_size = max_contribution_size
        self.limits = limits
        self.root.mkdir(parents=True, exist_ok=True)
        self.index = UploadIndex()  # filled by recover()
        self.admission = Admission(self.root, limits, self.index)
        self._busy: set[str] = set()
        self._creating: set[str] = set()  # in the index already, but no upload until published
        # Creators whose whole contribution was terminated, and when: a chunk of theirs that
        # finishes arriving afterwards is not kept (kept in memory: a restart forgets them,
        # and such a chunk then simply expires).
        self._terminated: OrderedDict[str, float] = OrderedDict()
        self._writers: dict[str, _Writer] = {}
        self._consumed: dict[str, str] = {}  # partial id -> the final upload made of it
        self._finals: deque[tuple[float, tuple[str, ...]]] = deque()  # when, parts: oldest first

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
        """Completed contributions, oldest first."""
        return (u for u in self.iter_all() if u.finished)

    def expires(self, upload: Upload) -> float | None:
        """When an unfinished upload expires (POSIX time, what Upload-Expires says); None for a
        finished one."""
        return None if upload.finished else upload.modified + self.limits.expire_after

    def removed_after(self, upload: Upload | Entry) -> float | None:
        """When the receiver deletes the upload: an unfinished one when it expires, a finished
        one `keep_completed` after it completed (None: kept until the operator removes it)."""
        if isinstance(upload, Upload):
            completed = timestamp(upload.completed) if upload.finished else None
        else:
            completed = upload.completed
        if completed is None:
            return upload.modified + self.limits.expire_after
        return completed + self.limits.keep_completed if self.limits.keep_completed else None

    def find(self, upload_id: str, owner: str | None = None) -> Upload:
        """The upload, if `owner` may see it: uploads made with a secret answer only to it."""
        upload = self.get(upload_id)
        if upload is None or (upload.owner is not None and not _same_owner(upload.owner, owner)):
            raise UploadNotFound(upload_id)
        removed = self.removed_after(upload)
        if removed is not None and removed <= time.time() and upload_id not in self._busy:
            raise UploadGone(upload_id)
        return upload

    async def lookup(self, upload_id: str, owner: str | None = None) -> Upload:
        """find(), as the store interface has it (an object store's is a request away)."""
        return self.find(upload_id, owner)

    async def current(self, upload_id: str) -> Upload | None:
        """get(), as the store interface has it."""
        return self.get(upload_id)

    async def offset(self, upload: Upload) -> int:
        """The offset a client may rely on: while a PATCH runs, only what is fsynced."""
        writer = self._writers.get(upload.id)
        return await writer.sync() if writer else upload.offset

    def _limit(self, partial: bool) -> int:
        return self.max_size if partial else min(self.max_size, self.max_contribution_size)

    async def create(
        self,
        length: int | None,
        *,
        partial: bool = False,
        owner: str | None = None,
        client: str | None = None,
        body: AsyncIterable[bytes] | None = None,
        checksum: Checksum | None = None,
    ) -> Upload:
        """A new upload, holding `body` if given (tus creation-with-upload).

        `length` None means the client will tell us later. The upload exists only once
        its body is stored (and matched `checksum`): if the body fails, nobody learnt
        its address, so nothing is kept. `client` is who asks (an address), for its limits.
        """
        if length is not None and length < 0:
            raise InvalidLength(f"negative length {length}")
        limit = self._limit(partial)
        if length is not None and length > limit:
            raise UploadTooLarge(f"{length} bytes is more than the {limit} this server accepts")
        await self.admission.creation(client, owner, length)
        upload_id, folder, fd = await anyio.to_thread.run_sync(_new_upload_files, self.root)
        # Counted from now on, so that creations running side by side can't all take the last room.
        self.index.put(upload_id, Entry(owner, client, length, 0, partial, None, time.time()))
        self._creating.add(upload_id)
        try:
            writer = _Writer(fd, 0, hold=True)  # nobody can HEAD it before it exists
            end = 0
            if body is not None or checksum is not None:
                end = await self._receive(upload_id, writer, length if length is not None else limit, body, checksum)
            else:
                await anyio.to_thread.run_sync(os.fsync, fd)
            created = _now()
            completed = created if length == end and not partial else None
            upload = Upload(
                upload_id, length, end, created, completed, folder / "data",
                concat="partial" if partial else None, owner=owner, modified=time.time(),
            )
            if owner is not None and self._terminated_recently(owner):
                # The contribution was cancelled while this chunk was still on its way.
                raise UploadGone(upload_id)
            info = _info(upload, length=length, completed=completed)
            await anyio.to_thread.run_sync(self._publish, folder, info)
        except BaseException:
            os.close(fd)
            _remove(folder)
            self.index.remove(upload_id)
            raise
        finally:
            self._creating.discard(upload_id)
        os.close(fd)
        self.index.put(upload_id, Entry(owner, client, length, end, partial, timestamp(completed), upload.modified))
        kind = "partial upload" if partial else "upload"
        message = "%s %s created: length %s, %d bytes with it"
        (log.debug if partial else log.info)(message, kind, upload_id, length if length is not None else "deferred", end)
        if completed is not None:
            log.info("upload %s completed: %d bytes", upload_id, end)
        return upload

    def _publish(self, folder: Path, info: dict[str, object]) -> None:
        _write_info(folder, info)  # last: until info.json exists, get() says there is no upload
        _fsync_dir(self.root)

    async def append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        length: int | None = None,
        *,
        owner: str | None = None,
        checksum: Checksum | None = None,
    ) -> int:
        """Append `chunks` at `offset` and return the new offset, once it is on disk.

        `length` declares a deferred length (or repeats the known one). If the
        sender stops mid-way (its iterator raises), what arrived is kept, as tus
        wants, unless a `checksum` was given: then bytes are kept only when all of
        them arrived and match it. If the upload is refused or the disk fails, the
        data is cut back to what was already acknowledged.
        """
        upload = self.find(upload_id, owner)
        if upload.concat == "final":
            raise FinalUpload(upload_id)
        if upload_id in self._busy:
            raise UploadBusy(upload_id)
        self._busy.add(upload_id)
        try:
            return await self._append(upload_id, offset, chunks, length, checksum)
        finally:
            self._busy.discard(upload_id)

    async def _append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        length: int | None,
        checksum: Checksum | None,
    ) -> int:
        folder = self.root / upload_id
        if _unverified(folder) is not None:  # left by a request that died with the process
            await anyio.to_thread.run_sync(_undo_unverified, folder)
        upload = self.get(upload_id)
        if upload is None:
            raise UploadNotFound(upload_id)
        if offset != upload.offset:
            raise OffsetMismatch(f"the upload is at {upload.offset}, not {offset}")
        limit = self._limit(upload.partial)
        if length is not None:
            if upload.length is not None and length != upload.length:
                raise InvalidLength(f"the length is already {upload.length}")
            if length < upload.offset:
                raise InvalidLength(f"{upload.offset} bytes are already stored")
            if length > limit:
                raise UploadTooLarge(f"{length} bytes is more than the {limit} this server accepts")
            if upload.length is None:
                await self._declare(upload_id, length)
        elif upload.length is None:
            await self._room(upload_id)  # a declared length's room was promised already
        length = upload.length if upload.length is not None else length
        end_limit = length if length is not None else limit

        if checksum is not None:
            await anyio.to_thread.run_sync(_mark_unverified, folder, offset)
        fd = os.open(upload.data_path, os.O_WRONLY | os.O_APPEND)
        writer = _Writer(fd, offset, hold=checksum is not None)
        self._writers[upload_id] = writer
        try:
            end = await self._receive(upload_id, writer, end_limit, chunks, checksum)
        finally:
            del self._writers[upload_id]
            writer.closed = True
            os.close(fd)
            if checksum is not None:
                _clear_unverified(folder)  # synchronously: also when cancelled

        completed = upload.completed
        if completed is None and not upload.partial and length is not None and end == length:
            completed = _now()
        if (length, completed) != (upload.length, upload.completed):
            info = _info(upload, length=length, completed=completed)
            await anyio.to_thread.run_sync(_write_info, folder, info)
            self.index.update(upload_id, length=length, completed=timestamp(completed))
            if completed is not None:
                log.info("upload %s completed: %d bytes", upload_id, end)
        return end

    async def _declare(self, upload_id: str, length: int) -> None:
        """A deferred length becomes known: from now on it counts whole, if there is room."""
        entry = self.index.get(upload_id)
        if entry is not None:
            declared = replace(entry, length=length)
            self.admission.quota(declared.charge - entry.charge)
            await self.admission.disk(declared.pending)

    async def _room(self, upload_id: str) -> None:
        """Refuse more bytes once the disk's reserve is reached. A declared length's bytes are
        promised already; a deferred one asks for room as it goes, SYNC_EVERY at a time."""
        entry = self.index.get(upload_id)
        await self.admission.disk(SYNC_EVERY if entry is not None and entry.length is None else 0)

    def _count(self, upload_id: str, written: int, *, refuse: bool = True) -> None:
        """The upload's data now reaches `written` bytes; with `refuse`, bytes that would take a
        deferred length past the quota are refused before they are written."""
        entry = self.index.get(upload_id)
        if entry is not None:
            grown = replace(entry, offset=written, modified=time.time())
            if refuse:
                self.admission.quota(grown.charge - entry.charge)
            self.index.put(upload_id, grown)

    async def _receive(
        self,
        upload_id: str,
        writer: _Writer,
        limit: int,
        chunks: AsyncIterable[bytes] | None,
        checksum: Checksum | None,
    ) -> int:
        """Write chunks at the writer's offset, up to `limit` bytes in all; return the synced end.

        Bytes of a refused request (too many, bad checksum, disk full) are cut back to the
        durable offset; an interrupted one keeps what arrived unless it is checksummed.
        """
        fd = writer.fd
        digest = hashlib.new(checksum.algorithm) if checksum else None
        try:
            async for chunk in chunks or _nothing():
                if not chunk:
                    continue
                if writer.written + len(chunk) > limit:
                    raise UploadTooLarge(f"the upload ends at {limit} bytes")
                self._count(upload_id, writer.written + len(chunk))
                if digest is not None:
                    digest.update(chunk)
                await anyio.to_thread.run_sync(_write, fd, chunk)
                writer.written += len(chunk)
                if writer.written - writer.durable >= SYNC_EVERY:
                    await writer.sync()
                    await self._room(upload_id)
            if digest is not None and not hmac.compare_digest(digest.digest(), checksum.digest):  # type: ignore[union-attr]
                raise ChecksumMismatch(f"the body's {checksum.algorithm} does not match Upload-Checksum")  # type: ignore[union-attr]
            writer.hold = False
            return await writer.sync()
        except (UploadTooLarge, ChecksumMismatch, Refused, OSError):
            async with writer.lock:
                os.ftruncate(fd, writer.durable)
                os.fsync(fd)
            writer.written = writer.durable
            raise
        except BaseException:
            # The sender went away (or we are shutting down). Synchronously, as a
            # cancelled task can't await a thread.
            if writer.hold:
                os.ftruncate(fd, writer.durable)
                writer.written = writer.durable
            os.fsync(fd)
            raise
        finally:
            self._count(upload_id, writer.written, refuse=False)

    async def concatenate(
        self, part_ids: Sequence[str], owner: str | None, length: int | None = None
    ) -> Upload:
        """The final upload: the partials' bytes, in order, in one complete upload.

        Answers only once the final upload is on disk; then the partials are deleted.
        Asking again for the same final (its answer was lost) gives the same upload.
        """
        if not part_ids:
            raise InvalidConcat("a final upload names at least one partial upload")
        if len(set(part_ids)) != len(part_ids):
            raise InvalidConcat("a final upload names a partial upload twice")
        done = self._retried_final(part_ids, owner)
        if done is not None:
            return done
        busy = [p for p in part_ids if p in self._busy]
        if busy:
            raise UploadBusy(busy[0])
        self._busy.update(part_ids)
        try:
            # In a thread: a final may name thousands of partials, each an info.json to read.
            parts = await anyio.to_thread.run_sync(lambda: [self._ready_part(p, owner) for p in part_ids])
            total = sum(p.offset for p in parts)
            if length is not None and length != total:
                raise InvalidLength(f"the partial uploads hold {total} bytes, not {length}")
            if total > self.max_contribution_size:
                raise UploadTooLarge(
                    f"{total} bytes is more than the {self.max_contribution_size} this server accepts"
                )
            # No quota asked: the partials' bytes are counted already and go once copied. The
            # copy does need the room on disk for a while.
            await self.admission.disk(total)
            final = await anyio.to_thread.run_sync(self._concatenate, parts, owner)
            self._remember_final(final)
            self.index.put(final.id, Entry(owner, None, total, total, False, timestamp(final.completed), final.modified))
            log.info("upload %s completed: %d bytes from %d partial uploads", final.id, total, len(parts))
            await anyio.to_thread.run_sync(self._remove_parts, parts)
            for part in parts:
                self.index.remove(part.id)
        finally:
            self._busy.difference_update(part_ids)
        return final

    def _remember_final(self, final: Upload, when: float | None = None) -> None:
        """Which final each partial went into, for retried finals: for as long as an unjoined
        partial would have lived, and for at most CONSUMED_CAP partials."""
        self._consumed.update((p, final.id) for p in final.parts)
        self._finals.append((time.time() if when is None else when, final.parts))
        too_old = time.time() - self.limits.expire_after
        while self._finals and (self._finals[0][0] < too_old or len(self._consumed) > CONSUMED_CAP):
            for part_id in self._finals.popleft()[1]:
                self._consumed.pop(part_id, None)

    def _retried_final(self, part_ids: Sequence[str], owner: str | None) -> Upload | None:
        finals = {self._consumed.get(p) for p in part_ids}
        if finals == {None}:
            return None
        final = self.get(next(iter(finals)) or "") if len(finals) == 1 else None
        if final is not None and not _same_owner(final.owner, owner):
            raise UploadNotFound(part_ids[0])
        if final is None or final.parts != tuple(part_ids):
            raise AlreadyConcatenated("a partial upload already belongs to another final upload")
        return final

    def _ready_part(self, part_id: str, owner: str | None) -> Upload:
        part = self.get(part_id)
        if part is None or not _same_owner(part.owner, owner):
            raise UploadNotFound(part_id)  # someone else's partial is as good as none
        if not part.partial:
            raise InvalidConcat(f"{part_id} is not a partial upload")
        expires = self.expires(part)
        if expires is not None and expires <= time.time():
            raise UploadGone(part_id)
        if part.length is None or part.offset != part.length:
            raise InvalidConcat(f"the partial upload {part_id} is not complete")
        return part

    def _concatenate(self, parts: list[Upload], owner: str | None) -> Upload:
        upload_id, folder, fd = _new_upload_files(self.root)
        try:
            try:
                end = 0
                for part in parts:
                    with open(part.data_path, "rb") as source:
                        while block := source.read(min(_COPY_SIZE, part.offset - (source.tell()))):
                            _write(fd, block)
                            end += len(block)
                os.fsync(fd)
            finally:
                os.close(fd)
            created = _now()
            upload = Upload(
                upload_id, end, end, created, created, folder / "data", concat="final",
                parts=tuple(p.id for p in parts), owner=owner, modified=time.time(),
            )
            self._publish(folder, _info(upload, length=end, completed=created))
        except BaseException:
            _remove(folder)
            raise
        return upload

    def _remove_parts(self, parts: list[Upload]) -> None:
        for part in parts:
            _remove(part.data_path.parent)
        _fsync_dir(self.root)

    async def delete(self, upload_id: str, owner: str | None = None) -> None:
        """Remove an upload and its bytes (tus termination)."""
        upload = self.find(upload_id, owner)
        if upload_id in self._busy:
            raise UploadBusy(upload_id)
        self._busy.add(upload_id)
        try:
            await anyio.to_thread.run_sync(self._delete, upload.data_path.parent)
            self.index.remove(upload_id)
        finally:
            self._busy.discard(upload_id)
        (log.debug if upload.partial else log.info)(
            "%s %s terminated: %d bytes", "partial upload" if upload.partial else "upload", upload_id, upload.offset
        )

    def _delete(self, folder: Path) -> None:
        _remove(folder)
        _fsync_dir(self.root)

    def _terminated_recently(self, owner: str) -> bool:
        when = self._terminated.get(owner)
        return when is not None and time.monotonic() - when < TERMINATED_MEMORY

    def _terminate(self, owner: str) -> None:
        """Remember a terminated contribution, forgetting the ones past TERMINATED_MEMORY (and
        the oldest beyond TERMINATED_CAP): a terminating secret costs memory for an hour at most."""
        now = time.monotonic()
        self._terminated.pop(owner, None)
        self._terminated[owner] = now
        while self._terminated:
            oldest, when = next(iter(self._terminated.items()))
            if now - when < TERMINATED_MEMORY and len(self._terminated) <= TERMINATED_CAP:
                break
            del self._terminated[oldest]

    def _unfinished_of(self, owner: str) -> list[str]:
        """The owner's unfinished uploads that exist (a creation still running is stopped by
        `_terminated` instead, when it ends)."""
        found = []
        for upload_id in self.index.owned(owner):
            entry = self.index.get(upload_id)
            if entry is not None and not entry.finished and upload_id not in self._creating:
                found.append(upload_id)
        return found

    async def delete_owned(self, owner: str, wait: float = 5.0) -> int:
        """Remove every unfinished upload of one creator: a cancelled contribution's partials,
        including one whose creation answer never reached the client (it could not name it).
        A request still writing one is given `wait` seconds to end first."""
        deadline = time.monotonic() + wait
        while True:
            owned = self._unfinished_of(owner)
            if not any(upload_id in self._busy for upload_id in owned) or time.monotonic() >= deadline:
                break
            await anyio.sleep(0.1)
        self._terminate(owner)
        removed = 0
        for upload_id in owned:
            if upload_id in self._busy or self.index.get(upload_id) is None:
                continue  # still being written after all (it expires on its own), or gone already
            self._busy.add(upload_id)
            try:
                await anyio.to_thread.run_sync(self._delete, self.root / upload_id)
                self.index.remove(upload_id)
                removed += 1
            finally:
                self._busy.discard(upload_id)
        if removed:
            log.info("%d unfinished uploads of one contribution terminated", removed)
        return removed

    async def recover(self) -> None:
        """Tidy up after a crash, before the first request: half-made folders, the unproven
        bytes of interrupted checksummed requests, partials a final was made of. Fills the
        index (the one time the store reads every upload's folder but the hourly expiry)."""
        uploads = await anyio.to_thread.run_sync(self._recover)
        for upload in uploads:
            if upload.concat == "final":
                self._remember_final(upload, timestamp(upload.completed))
        for upload in uploads:
            self.index.put(upload.id, _entry(upload))

    def _recover(self) -> list[Upload]:
        uploads = []
        for folder in list(self.root.iterdir()):
            if not (folder / "info.json").exists():
                if folder.is_dir() and UPLOAD_ID.fullmatch(folder.name):
                    shutil.rmtree(folder, ignore_errors=True)
                continue
            if (folder / "unverified").exists():
                _undo_unverified(folder)
            upload = _read(folder)
            if upload is not None:
                uploads.append(upload)
        uploads.sort(key=lambda u: (u.created, u.id))
        for final in (u for u in uploads if u.concat == "final"):
            for part_id in final.parts:
                folder = self.root / part_id
                if (folder / "info.json").exists():  # the crash came between final and cleanup
                    _remove(folder)
        _fsync_dir(self.root)
        parts = {p for u in uploads if u.concat == "final" for p in u.parts}
        return [u for u in uploads if u.id not in parts]

    async def expire(self) -> int:
        """Delete every unfinished upload whose time ran out, and every completed one kept
        `keep_completed`; returns how many. The folders are read in a thread (the disk, not
        the index, says when each was last written)."""
        now = time.time()
        candidates = await anyio.to_thread.run_sync(self._due, now)
        removed = 0
        partial_bytes = partials = 0
        for upload_id in candidates:
            if upload_id in self._busy:
                continue
            self._busy.add(upload_id)
            try:
                fresh = await anyio.to_thread.run_sync(self.get, upload_id)
                due = self.removed_after(fresh) if fresh else None
                if fresh is None or due is None or due > now:
                    continue  # written to, or finished, since we looked
                await anyio.to_thread.run_sync(self._delete, fresh.data_path.parent)
                self.index.remove(upload_id)
            finally:
                self._busy.discard(upload_id)
            removed += 1
            if fresh.partial:
                partials += 1
                partial_bytes += fresh.offset
            elif fresh.finished:
                days = self.limits.keep_completed / 86400
                log.info("upload %s removed: completed %s, not collected in %g days", fresh.id, fresh.completed, days)
            else:
                length = fresh.length if fresh.length is not None else "deferred"
                log.info("upload %s expired: %d bytes of %s", fresh.id, fresh.offset, length)
        if partials:
            log.info("%d partial uploads expired: %d bytes", partials, partial_bytes)
        await anyio.to_thread.run_sync(self._remove_strays, now)
        return removed

    def _due(self, now: float) -> list[str]:
        found = []
        for folder in self.root.iterdir():
            upload = _read(folder)
            if upload is not None:
                due = self.removed_after(upload)
                if due is not None and due <= now:
                    found.append(upload.id)
        return found

    def _remove_strays(self, now: float) -> None:
        """Folders without info.json (a creation cut by a crash) once they are surely dead."""
        for folder in self.root.iterdir():
            try:
                stale = not (folder / "info.json").exists() and folder.stat().st_mtime + self.limits.expire_after <= now
            except FileNotFoundError:
                continue
            if stale and folder.is_dir() and UPLOAD_ID.fullmatch(folder.name):
                shutil.rmtree(folder, ignore_errors=True)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover  (makes this an async generator)


def all_uploads(data_dir: Path) -> list[Upload]:
    """Every upload in `data_dir`, oldest first (what `list` shows)."""
    if not (Path(data_dir) / "uploads").is_dir():
        return []
    return list(UploadStore(data_dir).iter_all())


def completed_uploads(data_dir: Path) -> list[Upload]:
    """The complete contributions in `data_dir`, oldest first (what `unpack` reads):
    plain uploads with all their bytes and final uploads, never partials."""
    return [u for u in all_uploads(data_dir) if u.finished]
