"""tus 1.0.0 over a store (a local folder or an object store, stores.py): core, creation, creation-with-upload, creation-defer-length,
termination, checksum (sha256), expiration and concatenation.

Resumable uploads because a disc of images over a home connection takes long
enough to be interrupted; the client picks up at whatever offset the server
says is safely on disk. Concatenation lets it send sealed chunks as separate
partial uploads, several at a time, and join them at the end; a checksum per
request means no damaged byte is ever stored as a patient's. An upload created
with a `Pcir-Upload-Secret` answers only to that secret. This module only
translates HTTP to store calls.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import re
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pcir_upload.repository.receive.admission import ReceiverFull, TooMany
from pcir_upload.repository.receive.store import (
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
    secret_owner,
)
from pcir_upload.repository.receive.stores import Store

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = (
    "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration,concatenation"
)
CHECKSUM_ALGORITHMS = ("sha256",)
CHUNK_TYPE = "application/offset+octet-stream"
SECRET_HEADER = "Pcir-Upload-Secret"
# 32 random bytes, base64url without padding.
SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
DEFAULT_PORTS = {"http": "80", "https": "443"}
# No byte count this server takes is longer (2**63 - 1 has 19 digits); refusing longer ones
# before int() also keeps Python's 4,300-digit conversion limit from becoming a 500.
MAX_DIGITS = 19


def tus_response(status_code: int, headers: dict[str, str] | None = None, text: str = "") -> Response:
    """Every tus answer says which protocol it speaks, and is never cached: offsets go stale."""
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store", **(headers or {})}
    if text:
        return PlainTextResponse(text, status_code=status_code, headers=headers)
    return Response(status_code=status_code, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


class MalformedHeader(Exception):
    pass


def _size(request: Request, name: str) -> int | None:
    """A non-negative decimal header value (tus allows nothing else); None if absent."""
    value = request.headers.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_DIGITS:
        raise MalformedHeader(f"{name}: {value[:40]!r} is not a byte count this server takes")
    return int(value)


def _client(request: Request) -> str | None:
    """Who is asking, for the per-client limits: the remote address as uvicorn sees it (behind
    a proxy the operator trusts, the address that proxy forwards)."""
    return request.client.host if request.client else None


def _owner(request: Request) -> str | None:
    """Who the request speaks for: the digest of its upload secret, if it has one."""
    secret = request.headers.get(SECRET_HEADER)
    if secret is None:
        return None
    if not SECRET.fullmatch(secret):
        raise MalformedHeader(f"{SECRET_HEADER} must be 32 bytes in base64url without padding")
    return secret_owner(secret)


def _checksum(request: Request) -> Checksum | None:
    value = request.headers.get("Upload-Checksum")
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise MalformedHeader(f"Upload-Checksum: {algorithm!r} is not one of {', '.join(CHECKSUM_ALGORITHMS)}")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise MalformedHeader("Upload-Checksum: the digest is not base64") from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise MalformedHeader(f"Upload-Checksum: that is not a {algorithm} digest")
    return Checksum(algorithm, digest)


def _has_body(request: Request) -> bool:
    length = request.headers.get("Content-Length")
    return "Transfer-Encoding" in request.headers or (length is not None and length != "0")


def authority(scheme: str, netloc: str) -> str:
    """host[:port] in lower case, without the scheme's default port, for comparing origins."""
    netloc = netloc.lower()
    default = DEFAULT_PORTS.get(scheme)
    if default and netloc.endswith(f":{default}"):
        netloc = netloc[: -len(default) - 1]
    return netloc


def _part_ids(value: str, request: Request) -> list[str]:
    """The upload ids an `Upload-Concat: final;<url> <url> ...` names, if they are ours."""
    prefix = request.url.path.rstrip("/") + "/"
    host = authority(request.url.scheme, request.headers.get("Host", ""))
    ids = []
    for url in value.split():
        parts = urlsplit(url)
        if parts.scheme or parts.netloc:
            if parts.scheme not in DEFAULT_PORTS or authority(parts.scheme, parts.netloc) != host:
                raise MalformedHeader(f"Upload-Concat: {url[:100]!r} is not an upload of this server")
        upload_id = parts.path[len(prefix):] if parts.path.startswith(prefix) else ""
        if parts.query or parts.fragment or not UPLOAD_ID.fullmatch(upload_id):
            raise MalformedHeader(f"Upload-Concat: {url[:100]!r} is not an upload of this server")
        ids.append(upload_id)
    return ids


class TusEndpoint:
    """The tus routes; mount them where the client's `upload_endpoint` points."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.routes = [
            Route("/", self.collection, methods=["OPTIONS", "POST", "DELETE"]),
            Route("/{upload_id}", self.upload, methods=["HEAD", "PATCH", "DELETE"]),
        ]

    async def collection(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self.options()
        if request.method == "DELETE":
            return await self.guarded(request, self.delete_owned)
        return await self.guarded(request, self.create)

    async def upload(self, request: Request) -> Response:
        handler = {"HEAD": self.head, "PATCH": self.patch, "DELETE": self.delete}[request.method]
        return await self.guarded(request, handler)

    def options(self) -> Response:
        return tus_response(
            204,
            {
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": TUS_EXTENSIONS,
                "Tus-Max-Size": str(self.store.max_size),
                "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
            },
        )

    async def guarded(self, request: Request, handler: Handler) -> Response:
        """Refuse other protocol versions, and map the store's refusals to status codes."""
        if request.headers.get("Tus-Resumable") != TUS_VERSION:
            return tus_response(412, {"Tus-Version": TUS_VERSION}, "Tus-Resumable 1.0.0 required")
        try:
            return await handler(request)
        except MalformedHeader as exc:
            return tus_response(400, text=str(exc))
        except UploadNotFound:
            return tus_response(404, text="No such upload")
        except UploadGone:
            return tus_response(410, text="The upload expired")
        except FinalUpload:
            return tus_response(403, text="A final upload is made by concatenation, not written to")
        except OffsetMismatch as exc:
            return tus_response(409, text=str(exc))
        except AlreadyConcatenated as exc:
            return tus_response(409, text=str(exc))
        except UploadBusy:
            return tus_response(423, text="The upload is being written by another request")
        except (InvalidLength, InvalidConcat) as exc:
            return tus_response(400, text=str(exc))
        except UploadTooLarge as exc:
            return tus_response(413, text=str(exc))
        except TooMany as exc:
            return tus_response(429, {"Retry-After": str(exc.retry_after)}, str(exc))
        except ReceiverFull as exc:
            return tus_response(507, text=str(exc))
        except ChecksumMismatch:
            return tus_response(460, text="Checksum mismatch: none of the request's bytes were kept")
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return tus_response(507, text="The server's disk is full")
            return tus_response(500, text="The server could not store the upload")

    def _expiry(self, upload: Upload | None) -> dict[str, str]:
        expires = self.store.expires(upload) if upload is not None else None
        return {} if expires is None else {"Upload-Expires": formatdate(expires, usegmt=True)}

    async def create(self, request: Request) -> Response:
        owner = _owner(request)
        concat = request.headers.get("Upload-Concat")
        if concat is not None and concat.startswith("final;"):
            return await self.create_final(request, concat[len("final;"):], owner)
        if concat not in (None, "partial"):
            return tus_response(400, text="Upload-Concat must be partial or final;<upload URLs>")
        length = _size(request, "Upload-Length")
        deferred = request.headers.get("Upload-Defer-Length")
        if (length is None) == (deferred is None) or deferred not in (None, "1"):
            return tus_response(400, text="Send either Upload-Length or Upload-Defer-Length: 1")
        checksum = _checksum(request)
        body = None
        if _has_body(request):
            if request.headers.get("Content-Type", "").split(";")[0].strip().lower() != CHUNK_TYPE:
                return tus_response(415, text=f"Content-Type must be {CHUNK_TYPE}")
            body = request.stream()
        # Upload-Metadata is ignored on purpose: nothing readable about the patient is kept.
        try:
            upload = await self.store.create(
                length, partial=concat == "partial", owner=owner, client=_client(request),
                body=body, checksum=checksum,
            )
        except ClientDisconnect:
            return tus_response(400)  # nobody is listening, and nothing was kept
        location = f"{request.url.path.rstrip('/')}/{upload.id}"
        headers = {"Location": location, "Upload-Offset": str(upload.offset), **self._expiry(upload)}
        if concat is not None:
            headers["Upload-Concat"] = concat
        return tus_response(201, headers)

    async def create_final(self, request: Request, urls: str, owner: str | None) -> Response:
        if _has_body(request):
            return tus_response(400, text="A final upload takes no body")
        part_ids = _part_ids(urls, request)
        final = await self.store.concatenate(part_ids, owner, _size(request, "Upload-Length"))
        location = f"{request.url.path.rstrip('/')}/{final.id}"
        return tus_response(201, {"Location": location, "Upload-Length": str(final.length)})

    async def head(self, request: Request) -> Response:
        upload_id = request.path_params["upload_id"]
        upload = await self.store.lookup(upload_id, _owner(request))
        headers = {"Upload-Offset": str(await self.store.offset(upload)), **self._expiry(upload)}
        if upload.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(upload.length)
        if upload.concat == "final":
            prefix = request.url.path[: -len(upload_id)]
            headers["Upload-Concat"] = "final;" + " ".join(prefix + part for part in upload.parts)
        elif upload.concat == "partial":
            headers["Upload-Concat"] = "partial"
        return tus_response(200, headers)

    async def patch(self, request: Request) -> Response:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != CHUNK_TYPE:
            return tus_response(415, text=f"Content-Type must be {CHUNK_TYPE}")
        offset = _size(request, "Upload-Offset")
        if offset is None:
            return tus_response(400, text="Upload-Offset required")
        length = _size(request, "Upload-Length")
        checksum = _checksum(request)
        upload_id = request.path_params["upload_id"]
        try:
            end = await self.store.append(
                upload_id, offset, request.stream(), length, owner=_owner(request), checksum=checksum
            )
        except ClientDisconnect:
            return tus_response(400)  # nobody is listening; what arrived is kept (unless checksummed)
        return tus_response(204, {"Upload-Offset": str(end), **self._expiry(await self.store.current(upload_id))})

    async def delete(self, request: Request) -> Response:
        await self.store.delete(request.path_params["upload_id"], _owner(request))
        return tus_response(204)

    async def delete_owned(self, request: Request) -> Response:
        """Termination of a whole contribution (our extension of tus): every unfinished upload
        made with this secret, even ones whose address the client never learned."""
        owner = _owner(request)
        if owner is None:
            return tus_response(400, text=f"{SECRET_HEADER} required")
        removed = await self.store.delete_owned(owner)
        return tus_response(204, {"Pcir-Uploads-Deleted": str(removed)})
