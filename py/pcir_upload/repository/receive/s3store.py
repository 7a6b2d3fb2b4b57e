"""Uploads on an S3-compatible object store, shared by any number of receivers.

    <prefix>/uploads/<id>.json          an unfinished upload: its info dict (as info.json) and
                                        "pieces" [[key, size], ...] in order, "modified"
    <prefix>/pieces/<id>/<offset>-<r>   the bytes of one piece, at most PIECE bytes
    <prefix>/completed/<id>[.json]      a completed upload (s3keys.py: the unpack workers' contract)

A request's body is cut into pieces of PIECE bytes (the last one of a request may be
shorter), each stored as its own object before the offset past it is acknowledged: the offset
is the sum of the listed pieces, never a number kept elsewhere. A checksummed request lists
its pieces only once its digest matched. When an upload completes (a plain one its last byte,
a final one at concatenation) its pieces, or its partials' pieces in order, are joined by one
S3 multipart upload: a piece of 5 MiB or more, and the very last one, become a part by
UploadPartCopy (server-side); shorter ones are read and merged into a part of at least 5 MiB,
as S3 takes no shorter part but the last.

Any receiver serves any request. "Who is writing" is a lease in Redis (SET NX PX, renewed
while the request runs), so a receiver that dies holds an upload for at most LEASE seconds;
the rest lives in Redis too (which uploads a contribution has unfinished, which were
terminated, which partials went into which final, the per-client limits: sharedadmission.py) or in the store. Swift's s3api refuses
If-Match on PUT (501) but honours If-None-Match: *, used where an object is written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import anyio
import anyio.to_thread
from botocore.exceptions import ClientError

from pcir_upload.repository.receive.admission import Refused
from pcir_upload.repository.receive.index import Entry, UploadIndex, timestamp
from pcir_upload.repository.receive.limits import Limits
from pcir_upload.repository.receive.s3keys import S3Location, completed_info_key, completed_key, completed_prefix
from pcir_upload.repository.receive.sharedadmission import SharedAdmission
from pcir_upload.repository.receive.store import (
    MAX_CONTRIBUTION_SIZE,
    MAX_UPLOAD_SIZE,
    TERMINATED_MEMORY,
    UPLOAD_ID,
    AlreadyConcatenated,
    Checksum,
    ChecksumMismatch,
    FinalUpload,
    InvalidConcat,
    InvalidLength,
    OffsetMismatch,
    Upload,
    UploadBusy,
    UploadGone,
    UploadNotFound,
    UploadTooLarge,
    _info,
    _now,
    _same_owner,
)

log = logging.getLogger("pcir_upload.repository.receive")

PIECE = 8 * 1024 * 1024  # what a request's bytes are stored in; what is lost if a receiver dies
MIN_PART = 5 * 1024 * 1024  # S3's smallest part but the last
LEASE = 10.0  # seconds a dead receiver keeps an upload busy
RENEW_EVERY = LEASE / 3
JOIN_AT_ONCE = 8  # parts copied at once when an upload is joined


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


class _Leases:
    """Per-upload write leases in Redis: all of a request's uploads, or none."""

    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
    _RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"

    def __init__(self, store: S3UploadStore) -> None:
        self.store = store

    @contextlib.asynccontextmanager
    async def hold(self, upload_ids: Sequence[str]) -> AsyncIterator[str]:
        redis = self.store.redis()
        token = secrets.token_hex(16)
        keys = [self.store.rkey("lease", u) for u in upload_ids]
        taken: list[str] = []
        try:
            for key, upload_id in zip(keys, upload_ids):
                if not await redis.set(key, token, nx=True, px=int(LEASE * 1000)):
                    raise UploadBusy(upload_id)
                taken.append(key)
            # A plain task, not a task group: the request's own exceptions must pass unwrapped.
            renewal = asyncio.ensure_future(self._renew(taken, token))
            try:
                yield token
            finally:
                renewal.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                for key in taken:
                    await redis.eval(self._RELEASE, 1, key, token)

    async def _renew(self, keys: list[str], token: str) -> None:
        redis = self.store.redis()
        while True:
            await anyio.sleep(RENEW_EVERY)
            for key in keys:
                await redis.eval(self._RENEW, 1, key, token, int(LEASE * 1000))

    async def still(self, upload_id: str, token: str) -> None:
        """Raise unless the lease is still ours: a receiver stalled past LEASE writes nothing."""
        if await self.store.redis().get(self.store.rkey("lease", upload_id)) != token.encode():
            raise UploadBusy(upload_id)


def _upload(state: dict[str, Any]) -> Upload:
    pieces = state.get("pieces", ())
    return Upload(
        id=state["id"], length=state["length"], offset=sum(size for _, size in pieces) if "pieces" in state else state["length"],
        created=state["created"], completed=state["completed"], data_path=None,  # type: ignore[arg-type]
        concat=state.get("concat"), parts=tuple(state.get("parts", ())), owner=state.get("owner"),
        modified=state.get("modified") or timestamp(state["completed"]) or 0.0,
    )


class S3UploadStore:
    """The same store as UploadStore (tus.py speaks to either), on `location` in an S3 store,
    with shared state in Redis at `redis_url`."""

    def __init__(
        self,
        location: S3Location,
        client: Any,
        redis_url: str,
        max_size: int = MAX_UPLOAD_SIZE,
        *,
        max_contribution_size: int = MAX_CONTRIBUTION_SIZE,
        limits: Limits = Limits(),
    ) -> None:
        self.location = location
        self.bucket = location.bucket
        self.s3 = client
        self.redis_url = redis_url
        self.max_size = max_size
        self.max_contribution_size = max_contribution_size
        self.limits = limits
        # What this receiver itself is writing right now: the quota counts that, per receiver
        # (docs/SCALING.md says so); the per-client and per-contribution limits are in Redis.
        self.index = UploadIndex()
        self.admission = SharedAdmission(limits, self.index, self.redis, self.rkey)
        self.leases = _Leases(self)
        self._redis: Any = None
        self._redis_loop: object = None

    # --- where things are

    def redis(self) -> Any:
        """A Redis client of the running event loop (redis.asyncio's are bound to one)."""
        import redis.asyncio

        loop = asyncio.get_running_loop()
        if self._redis is None or self._redis_loop is not loop:
            self._redis = redis.asyncio.from_url(self.redis_url)
            self._redis_loop = loop
        return self._redis

    def rkey(self, kind: str, name: str) -> str:
        return f"pcir-upload:{self.bucket}/{self.location.prefix}:{kind}:{name}"

    def _state_key(self, upload_id: str) -> str:
        return self.location.key(f"uploads/{upload_id}.json")

    def _piece_key(self, upload_id: str, offset: int) -> str:
        return self.location.key(f"pieces/{upload_id}/{offset:020d}-{secrets.token_hex(4)}")

    # --- objects (sync: run in threads)

    def _get_json(self, key: str) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return json.loads(body)

    def _put_json(self, key: str, value: dict[str, Any], *, once: bool = False) -> None:
        extra = {"IfNoneMatch": "*"} if once else {}
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(value).encode(),
                           ContentType="application/json", **extra)

    def _delete(self, keys: Sequence[str]) -> None:
        """In the order given: a deleted .json first means nobody takes the rest for whole."""
        for key in keys:
            self.s3.delete_object(Bucket=self.bucket, Key=key)

    def _states(self, upload_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Many unfinished uploads' states (a final names thousands), a few requests at a time."""
        with ThreadPoolExecutor(JOIN_AT_ONCE) as pool:
            return list(pool.map(lambda u: self._get_json(self._state_key(u)), upload_ids))

    def _read(self, upload_id: str) -> dict[str, Any] | None:
        """The unfinished upload's state, else the completed upload's info, else None."""
        state = self._get_json(self._state_key(upload_id))
        if state is None:
            state = self._get_json(completed_info_key(self.location.prefix, upload_id))
        return state

    def _join(self, pieces: Sequence[tuple[str, int]], key: str) -> None:
        """One object of the pieces' bytes, in order, by a multipart upload (see the docstring
        at the top for how pieces map onto parts); the parts are made JOIN_AT_ONCE at a time."""
        plan = plan_parts(pieces)
        if not plan:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"")
            return
        mpu = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]

        def make(number: int, segments: list[tuple[str, int, int, bool]]) -> dict[str, Any]:
            common = dict(Bucket=self.bucket, Key=key, UploadId=mpu, PartNumber=number)
            if len(segments) == 1 and segments[0][3]:  # one whole piece: copied by the store
                result = self.s3.upload_part_copy(**common, CopySource={"Bucket": self.bucket, "Key": segments[0][0]})
                etag = result["CopyPartResult"]["ETag"]
            else:
                body = b"".join(
                    self.s3.get_object(Bucket=self.bucket, Key=k, Range=f"bytes={a}-{b - 1}")["Body"].read()
                    for k, a, b, _ in segments
                )
                etag = self.s3.upload_part(**common, Body=body)["ETag"]
            return {"PartNumber": number, "ETag": etag}

        try:
            with ThreadPoolExecutor(JOIN_AT_ONCE) as pool:
                parts = list(pool.map(make, range(1, len(plan) + 1), plan))
            self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=mpu, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=mpu)
            raise

    # --- what tus.py asks

    def expires(self, upload: Upload) -> float | None:
        return None if upload.finished else upload.modified + self.limits.expire_after

    def removed_after(self, upload: Upload) -> float | None:
        if not upload.finished:
            return upload.modified + self.limits.expire_after
        completed = timestamp(upload.completed)
        return completed + self.limits.keep_completed if self.limits.keep_completed and completed else None

    async def current(self, upload_id: str) -> Upload | None:
        if not UPLOAD_ID.fullmatch(upload_id):
            return None
        state = await anyio.to_thread.run_sync(self._read, upload_id)
        return _upload(state) if state is not None else None

    async def lookup(self, upload_id: str, owner: str | None = None) -> Upload:
        upload = await self.current(upload_id)
        if upload is None or (upload.owner is not None and not _same_owner(upload.owner, owner)):
            raise UploadNotFound(upload_id)
        removed = self.removed_after(upload)
        if removed is not None and removed <= time.time():
            raise UploadGone(upload_id)
        return upload

    async def offset(self, upload: Upload) -> int:
        return upload.offset  # every listed piece is stored: nothing held back to flush

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
        if length is not None and length < 0:
            raise InvalidLength(f"negative length {length}")
        limit = self._limit(partial)
        if length is not None and length > limit:
            raise UploadTooLarge(f"{length} bytes is more than the {limit} this server accepts")
        upload_id = secrets.token_urlsafe(24)
        await self.admission.admit(upload_id, client, owner, length)
        self.index.put(upload_id, Entry(owner, client, length, 0, partial, None, time.time()))
        redis = self.redis()
        if owner is not None:
            await redis.sadd(self.rkey("owned", owner), upload_id)
        try:
            # Nobody knows the address yet: every piece is held back until the state exists.
            pieces = await self._receive(upload_id, 0, length if length is not None else limit, body, None, checksum)
            created = _now()
            end = sum(size for _, size in pieces)
            completed = created if length == end and not partial else None
            upload = Upload(upload_id, length, end, created, None, None,  # type: ignore[arg-type]
                            concat="partial" if partial else None, owner=owner, modified=time.time())
            if owner is not None and await redis.exists(self.rkey("terminated", owner)):
                await anyio.to_thread.run_sync(self._delete, [k for k, _ in pieces])
                raise UploadGone(upload_id)  # the contribution was cancelled while this was on its way
            state = {**_info(upload, length=length, completed=None), "pieces": pieces, "modified": upload.modified}
            await anyio.to_thread.run_sync(lambda: self._put_json(self._state_key(upload_id), state, once=True))
        except BaseException:
            self.index.remove(upload_id)
            with anyio.CancelScope(shield=True):
                await self.admission.closed(upload_id, owner)
                if owner is not None:
                    await redis.srem(self.rkey("owned", owner), upload_id)
            raise
        # The index counts what this receiver is writing; the upload is the store's now.
        self.index.remove(upload_id)
        if partial and length == end:
            await self.admission.closed(upload_id, owner)  # whole: it waits for its final only
        log.log(logging.DEBUG if partial else logging.INFO, "%s %s created: length %s, %d bytes with it",
                "partial upload" if partial else "upload", upload_id, length if length is not None else "deferred", end)
        if completed is not None:
            upload = await self._complete(state)
        return upload

    async def _receive(
        self,
        upload_id: str,
        start: int,
        limit: int,
        chunks: AsyncIterable[bytes] | None,
        commit: Any,
        checksum: Checksum | None,
    ) -> list[list[Any]]:
        """Store `chunks` as pieces from offset `start`, up to `limit` bytes in all. With
        `commit` (and no checksum) each stored piece is listed at once (awaited
        `commit(pieces)`); otherwise the stored pieces are returned, to be listed by the caller.
        Refused or damaged bytes are never kept; an interrupted request keeps what arrived
        unless it is checksummed (or nobody can know its address yet)."""
        hold = commit is None or checksum is not None
        digest = hashlib.new(checksum.algorithm) if checksum else None
        buffer = bytearray()
        stored: list[list[Any]] = []  # not yet listed
        written = start

        async def put(data: bytes) -> None:
            nonlocal written
            key = self._piece_key(upload_id, written)
            await anyio.to_thread.run_sync(lambda: self.s3.put_object(Bucket=self.bucket, Key=key, Body=data))
            stored.append([key, len(data)])
            written += len(data)
            if not hold:
                await commit(list(stored))
                stored.clear()

        try:
            async for chunk in chunks or _nothing():
                if not chunk:
                    continue
                if written + len(buffer) + len(chunk) > limit:
                    raise UploadTooLarge(f"the upload ends at {limit} bytes")
                self._count(upload_id, written + len(buffer) + len(chunk))
                if digest is not None:
                    digest.update(chunk)
                buffer += chunk
                while len(buffer) >= PIECE:
                    await put(bytes(buffer[:PIECE]))
                    del buffer[:PIECE]
            if digest is not None and not hmac.compare_digest(digest.digest(), checksum.digest):  # type: ignore[union-attr]
                raise ChecksumMismatch(f"the body's {checksum.algorithm} does not match Upload-Checksum")  # type: ignore[union-attr]
            if buffer:
                await put(bytes(buffer))
            return stored
        except (UploadTooLarge, ChecksumMismatch, Refused, UploadBusy):
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._delete, [k for k, _ in stored])
            raise
        except BaseException:
            # The sender went away: what arrived is kept, unless nothing may be.
            with anyio.CancelScope(shield=True):
                if not hold and buffer:
                    with contextlib.suppress(Exception):
                        await put(bytes(buffer))
                else:
                    await anyio.to_thread.run_sync(self._delete, [k for k, _ in stored])
            raise
        finally:
            self._count(upload_id, written, refuse=False)

    def _count(self, upload_id: str, written: int, *, refuse: bool = True) -> None:
        entry = self.index.get(upload_id)
        if entry is not None:
            grown = replace(entry, offset=written, modified=time.time())
            if refuse:
                self.admission.quota(grown.charge - entry.charge)
            self.index.put(upload_id, grown)

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
        upload = await self.lookup(upload_id, owner)
        if upload.concat == "final":
            raise FinalUpload(upload_id)
        if upload.finished:  # its answer was lost, or the client is wrong about the offset
            if offset != upload.offset:
                raise OffsetMismatch(f"the upload is complete at {upload.offset}")
            return upload.offset
        async with self.leases.hold([upload_id]) as token:
            state = await anyio.to_thread.run_sync(self._get_json, self._state_key(upload_id))
            if state is None:
                raise UploadNotFound(upload_id)  # completed or removed meanwhile
            upload = _upload(state)
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
                state["length"] = length
            total = state["length"]
            self.index.put(upload_id, _entry(upload, None))

            async def commit(pieces: list[list[Any]]) -> None:
                await self.leases.still(upload_id, token)
                state["pieces"] = state["pieces"] + pieces
                state["modified"] = time.time()
                await anyio.to_thread.run_sync(self._put_json, self._state_key(upload_id), state)

            try:
                pieces = await self._receive(
                    upload_id, offset, total if total is not None else limit, chunks, commit, checksum
                )
                if pieces:
                    await commit(pieces)
                elif length is not None and length != upload.length:
                    await commit([])
            finally:
                self.index.remove(upload_id)
            end = sum(size for _, size in state["pieces"])
            if total is not None and end == total:
                if upload.partial:
                    await self.admission.closed(upload_id, upload.owner)
                else:
                    await self._complete(state)
        return end

    async def _complete(self, state: dict[str, Any]) -> Upload:
        """A plain upload got its last byte: its pieces become completed/<id>, then its .json."""
        upload_id = state["id"]
        pieces = [(k, s) for k, s in state["pieces"]]
        data_key = completed_key(self.location.prefix, upload_id)
        await anyio.to_thread.run_sync(self._join, pieces, data_key)
        completed = _now()
        upload = replace(_upload(state), completed=completed, offset=sum(s for _, s in pieces), modified=time.time())
        info = _info(upload, length=upload.length, completed=completed)
        await anyio.to_thread.run_sync(
            lambda: self._put_json(completed_info_key(self.location.prefix, upload_id), info, once=True)
        )
        await anyio.to_thread.run_sync(self._delete, [self._state_key(upload_id), *(k for k, _ in pieces)])
        await self.admission.closed(upload_id, upload.owner)
        if upload.owner is not None:
            await self.redis().srem(self.rkey("owned", upload.owner), upload_id)
        log.info("upload %s completed: %d bytes", upload_id, upload.offset)
        return upload

    async def concatenate(self, part_ids: Sequence[str], owner: str | None, length: int | None = None) -> Upload:
        if not part_ids:
            raise InvalidConcat("a final upload names at least one partial upload")
        if len(set(part_ids)) != len(part_ids):
            raise InvalidConcat("a final upload names a partial upload twice")
        done = await self._retried_final(part_ids, owner)
        if done is not None:
            return done
        async with self.leases.hold(part_ids):
            done = await self._retried_final(part_ids, owner)  # made while we waited for the leases
            if done is not None:
                return done
            states = await anyio.to_thread.run_sync(self._states, part_ids)
            parts = [self._ready_part(p, s, owner) for p, s in zip(part_ids, states)]
            total = sum(p.offset for p in parts)
            if length is not None and length != total:
                raise InvalidLength(f"the partial uploads hold {total} bytes, not {length}")
            if total > self.max_contribution_size:
                raise UploadTooLarge(f"{total} bytes is more than the {self.max_contribution_size} this server accepts")
            final_id = secrets.token_urlsafe(24)
            redis = self.redis()
            # Noted before the final exists: a retry finding it named but without its .json
            # knows the attempt died, and makes the final anew.
            async with redis.pipeline(transaction=True) as pipe:
                for part_id in part_ids:
                    pipe.set(self.rkey("consumed", part_id), final_id, ex=int(self.limits.expire_after) + 1)
                await pipe.execute()
            pieces = [(k, s) for state in states for k, s in state["pieces"]]  # type: ignore[index]
            await anyio.to_thread.run_sync(self._join, pieces, completed_key(self.location.prefix, final_id))
            created = _now()
            final = Upload(final_id, total, total, created, created, None, concat="final",  # type: ignore[arg-type]
                           parts=tuple(part_ids), owner=owner, modified=time.time())
            info = _info(final, length=total, completed=created)
            await anyio.to_thread.run_sync(
                lambda: self._put_json(completed_info_key(self.location.prefix, final_id), info, once=True)
            )
            log.info("upload %s completed: %d bytes from %d partial uploads", final_id, total, len(parts))
            keys = [k for p in part_ids for k in (self._state_key(p),)] + [k for k, _ in pieces]
            await anyio.to_thread.run_sync(self._delete, keys)
            if owner is not None:
                await redis.srem(self.rkey("owned", owner), *part_ids)
        return final

    async def _retried_final(self, part_ids: Sequence[str], owner: str | None) -> Upload | None:
        names = await self.redis().mget([self.rkey("consumed", p) for p in part_ids])
        finals = {n.decode() if n else None for n in names}
        if finals == {None}:
            return None
        final = await self.current(next(iter(finals)) or "") if len(finals) == 1 else None
        if final is None and len(finals) == 1:
            return None  # named, never finished: that attempt died before the final existed
        if final is not None and not _same_owner(final.owner, owner):
            raise UploadNotFound(part_ids[0])
        if final is None or final.parts != tuple(part_ids):
            raise AlreadyConcatenated("a partial upload already belongs to another final upload")
        return final

    def _ready_part(self, part_id: str, state: dict[str, Any] | None, owner: str | None) -> Upload:
        if state is None:
            raise UploadNotFound(part_id)
        part = _upload(state)
        if not _same_owner(part.owner, owner):
            raise UploadNotFound(part_id)
        if not part.partial:
            raise InvalidConcat(f"{part_id} is not a partial upload")
        expires = self.expires(part)
        if expires is not None and expires <= time.time():
            raise UploadGone(part_id)
        if part.length is None or part.offset != part.length:
            raise InvalidConcat(f"the partial upload {part_id} is not complete")
        return part

    async def delete(self, upload_id: str, owner: str | None = None) -> None:
        upload = await self.lookup(upload_id, owner)
        async with self.leases.hold([upload_id]):
            await self._remove(upload_id)
        (log.debug if upload.partial else log.info)(
            "%s %s terminated: %d bytes", "partial upload" if upload.partial else "upload", upload_id, upload.offset
        )

    async def _remove(self, upload_id: str) -> bool:
        """Delete an upload, unfinished (state first) or completed (.json first); True if it was there."""
        state = await anyio.to_thread.run_sync(self._get_json, self._state_key(upload_id))
        if state is not None:
            keys = [self._state_key(upload_id), *(k for k, _ in state["pieces"])]
        else:
            state = await anyio.to_thread.run_sync(
                self._get_json, completed_info_key(self.location.prefix, upload_id)
            )
            if state is None:
                return False
            keys = [completed_info_key(self.location.prefix, upload_id), completed_key(self.location.prefix, upload_id)]
        await anyio.to_thread.run_sync(self._delete, keys)
        await self.admission.closed(upload_id, state.get("owner"))
        if state.get("owner") is not None:
            await self.redis().srem(self.rkey("owned", state["owner"]), upload_id)
        return True

    async def delete_owned(self, owner: str, wait: float = 5.0) -> int:
        redis = self.redis()
        await redis.set(self.rkey("terminated", owner), "1", ex=int(TERMINATED_MEMORY))
        deadline = time.monotonic() + wait
        removed = 0
        pending = {m.decode() for m in await redis.smembers(self.rkey("owned", owner))}
        while pending:
            for upload_id in sorted(pending):
                try:
                    async with self.leases.hold([upload_id]):
                        state = await anyio.to_thread.run_sync(self._get_json, self._state_key(upload_id))
                        if state is not None and await self._remove(upload_id):
                            removed += 1
                    pending.discard(upload_id)
                except UploadBusy:
                    pass
            if not pending or time.monotonic() >= deadline:
                break  # what is still being written expires on its own
            await anyio.sleep(0.1)
        if removed:
            log.info("%d unfinished uploads of one contribution terminated", removed)
        return removed

    async def recover(self) -> None:
        """Nothing of this receiver's own survives it; only check that the store answers."""
        await anyio.to_thread.run_sync(lambda: self.s3.head_bucket(Bucket=self.bucket))
        await self.redis().ping()

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(page.get("Contents", ()))
        return found

    async def expire(self) -> int:
        """Remove unfinished uploads whose time ran out and completed ones kept `keep_completed`.
        Listings only suggest candidates (they may lag): each is read by key before it goes."""
        now = time.time()
        removed = 0
        states = await anyio.to_thread.run_sync(self._list, self.location.key("uploads/"))
        completed = await anyio.to_thread.run_sync(self._list, completed_prefix(self.location.prefix))
        candidates = [o["Key"].rsplit("/", 1)[1][: -len(".json")] for o in states if o["Key"].endswith(".json")]
        candidates += [o["Key"].rsplit("/", 1)[1][: -len(".json")] for o in completed if o["Key"].endswith(".json")]
        for upload_id in candidates:
            upload = await self.current(upload_id)
            due = self.removed_after(upload) if upload is not None else None
            if due is None or due > now:
                continue
            try:
                async with self.leases.hold([upload_id]):
                    upload = await self.current(upload_id)
                    due = self.removed_after(upload) if upload is not None else None
                    if upload is None or due is None or due > now:
                        continue
                    if await self._remove(upload_id):
                        removed += 1
            except UploadBusy:
                continue
            if upload.finished:
                log.info("upload %s removed: completed %s, not collected in %g days",
                         upload_id, upload.completed, self.limits.keep_completed / 86400)
            elif not upload.partial:
                log.info("upload %s expired: %d bytes of %s", upload_id, upload.offset,
                         upload.length if upload.length is not None else "deferred")
        await anyio.to_thread.run_sync(self._remove_strays, now)
        return removed

    def _remove_strays(self, now: float) -> None:
        """Objects nothing names any more (a receiver died between storing and listing them):
        pieces of no upload, data without its .json, once older than `expire_after`."""
        old = now - self.limits.expire_after
        live = {o["Key"] for o in self._list(self.location.key("uploads/"))}
        done = {o["Key"]: o for o in self._list(completed_prefix(self.location.prefix))}
        for obj in self._list(self.location.key("pieces/")):
            upload_id = obj["Key"].split("/")[-2]
            if obj["LastModified"].timestamp() < old and self._state_key(upload_id) not in live:
                self._delete([obj["Key"]])
        for key, obj in done.items():
            if not key.endswith(".json") and key + ".json" not in done and obj["LastModified"].timestamp() < old:
                self._delete([key])


def plan_parts(pieces: Sequence[tuple[str, int]]) -> list[list[tuple[str, int, int, bool]]]:
    """The parts of a multipart upload of `pieces`, each a list of (key, start, end, whole)
    byte ranges: a piece of at least MIN_PART on its own (whole: UploadPartCopy), the last
    piece too, and shorter ones merged with what follows them until the part reaches
    MIN_PART. A part never exceeds MIN_PART + PIECE bytes (S3's largest is 5 GiB)."""
    total = sum(size for _, size in pieces)
    parts: list[list[tuple[str, int, int, bool]]] = []
    current: list[tuple[str, int, int, bool]] = []
    filled = done = 0
    for key, size in pieces:
        if size == 0:
            continue
        done += size
        if not current and (size >= MIN_PART or done == total):
            parts.append([(key, 0, size, True)])
            continue
        current.append((key, 0, size, False))
        filled += size
        if filled >= MIN_PART or done == total:
            parts.append(current)
            current, filled = [], 0
    return parts


def _entry(upload: Upload, client: str | None) -> Entry:
    return Entry(upload.owner, client, upload.length, upload.offset, upload.partial, None, upload.modified)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover
