"""tus 1.0.0 (core, creation, creation-defer-length, termination) over an UploadStore.

Resumable uploads because a disc of images over a home connection takes long
enough to be interrupted; the client picks up at whatever offset the server
says is safely on disk. This module only translates HTTP to store calls.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pcir_upload.server.store import (
    InvalidLength,
    OffsetMismatch,
    UploadBusy,
    UploadNotFound,
    UploadStore,
    UploadTooLarge,
)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-defer-length,termination"
CHUNK_TYPE = "application/offset+octet-stream"


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
    if not (value.isascii() and value.isdigit()):
        raise MalformedHeader(f"{name}: {value!r} is not a byte count")
    return int(value)


class TusEndpoint:
    """The tus routes; mount them where the client's `upload_endpoint` points."""

    def __init__(self, store: UploadStore) -> None:
        self.store = store
        self.routes = [
            Route("/", self.collection, methods=["OPTIONS", "POST"]),
            Route("/{upload_id}", self.upload, methods=["HEAD", "PATCH", "DELETE"]),
        ]

    async def collection(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self.options()
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
        except OffsetMismatch as exc:
            return tus_response(409, text=str(exc))
        except UploadBusy:
            return tus_response(423, text="The upload is being written by another request")
        except InvalidLength as exc:
            return tus_response(400, text=str(exc))
        except UploadTooLarge as exc:
            return tus_response(413, text=str(exc))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return tus_response(507, text="The server's disk is full")
            return tus_response(500, text="The server could not store the upload")

    async def create(self, request: Request) -> Response:
        length = _size(request, "Upload-Length")
        deferred = request.headers.get("Upload-Defer-Length")
        if (length is None) == (deferred is None) or deferred not in (None, "1"):
            return tus_response(400, text="Send either Upload-Length or Upload-Defer-Length: 1")
        # Upload-Metadata is ignored on purpose: nothing readable about the patient is kept.
        upload = await self.store.create(length)
        location = f"{request.url.path.rstrip('/')}/{upload.id}"
        return tus_response(201, {"Location": location, "Upload-Offset": "0"})

    async def head(self, request: Request) -> Response:
        upload = self.store.get(request.path_params["upload_id"])
        if upload is None:
            raise UploadNotFound()
        headers = {"Upload-Offset": str(upload.offset)}
        if upload.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(upload.length)
        return tus_response(200, headers)

    async def patch(self, request: Request) -> Response:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != CHUNK_TYPE:
            return tus_response(415, text=f"Content-Type must be {CHUNK_TYPE}")
        offset = _size(request, "Upload-Offset")
        if offset is None:
            return tus_response(400, text="Upload-Offset required")
        length = _size(request, "Upload-Length")
        upload_id = request.path_params["upload_id"]
        try:
            end = await self.store.append(upload_id, offset, request.stream(), length)
        except ClientDisconnect:
            return tus_response(400)  # nobody is listening; what arrived is kept
        return tus_response(204, {"Upload-Offset": str(end)})

    async def delete(self, request: Request) -> Response:
        await self.store.delete(request.path_params["upload_id"])
        return tus_response(204)
