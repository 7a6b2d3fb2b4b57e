"""The embedded receiver: the contribution page, its config, and the tus endpoint, on one origin.

One origin on purpose: the page needs no CORS, and cross-origin isolation
(COOP/COEP, for the Python worker's SharedArrayBuffer) is simple to give.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pcir_upload.server.store import MAX_UPLOAD_SIZE, UploadStore
from pcir_upload.server.tus import TusEndpoint

UPLOAD_ENDPOINT = "/files/"

# PyScript evaluates Python glue with eval() ('unsafe-eval') and runs its worker
# from a blob: URL; WebAssembly compilation needs 'wasm-unsafe-eval'. Everything
# else comes from this origin only, and uploads go nowhere but here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; "
    "script-src 'self' 'wasm-unsafe-eval' 'unsafe-eval'; "
    "worker-src 'self' blob:; "
    "connect-src 'self' blob:; "
    "img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; "
    "base-uri 'none'; "
    "form-action 'none'; "
    "frame-ancestors 'none'; "
    "object-src 'none'"
)

SECURITY_HEADERS = {
    # Cross-origin isolation, so the page's Python worker gets SharedArrayBuffer.
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

# Not left to the platform's mimetypes table: with nosniff, a wrong type for
# .wasm or .mjs breaks the page, and that table differs between machines.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".wasm": "application/wasm",
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".py": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def media_type(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    return MEDIA_TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


class SecurityHeaders:
    """Pure ASGI, so it also covers streamed files and the error responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class SiteFiles(StaticFiles):
    """The static page, with our media types, revalidated on every load while it changes often."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        if response.status_code != 304:
            response.headers["Content-Type"] = media_type(full_path)
        return response


class Receiver(Starlette):
    """Starlette with the security headers outside even its error handler, so 500s carry them too."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def create_app(
    data_dir: Path,
    site_dir: Path,
    public_key_raw: bytes,
    *,
    hybrid_public_key: bytes | None = None,
    max_upload_size: int = MAX_UPLOAD_SIZE,
) -> Starlette:
    """The receiver: uploads land in `data_dir`, sealed by the page to `public_key_raw` (X25519)
    or, where the browser has ML-KEM, to `hybrid_public_key` (X-Wing, 1,216 bytes)."""
    if len(public_key_raw) != 32:
        raise ValueError("public_key_raw must be a 32-byte raw X25519 public key")
    config = {"public_key": _b64(public_key_raw), "upload_endpoint": UPLOAD_ENDPOINT}
    if hybrid_public_key is not None:
        if len(hybrid_public_key) != 1216:
            raise ValueError("hybrid_public_key must be a 1,216-byte X-Wing public key")
        config["hybrid_public_key"] = _b64(hybrid_public_key)

    async def api_config(request: Request) -> Response:
        return JSONResponse(config, headers={"Cache-Control": "no-store"})

    tus = TusEndpoint(UploadStore(data_dir, max_size=max_upload_size))
    return Receiver(
        routes=[
            Route("/api/config", api_config, methods=["GET"]),
            Mount(UPLOAD_ENDPOINT.rstrip("/"), routes=tus.routes),
            Mount("/", SiteFiles(directory=site_dir, html=True)),
        ]
    )


def run(
    data_dir: Path,
    site_dir: Path,
    public_key_raw: bytes,
    hybrid_public_key: bytes | None,
    host: str,
    port: int,
) -> None:
    """Serve until interrupted. Uvicorn streams request bodies, so large PATCHes are never buffered."""
    app = create_app(data_dir, site_dir, public_key_raw, hybrid_public_key=hybrid_public_key)
    uvicorn.run(app, host=host, port=port, log_level="info")
