"""The embedded receiver: the contribution page, its config, and the tus endpoint, on one origin.

One origin on purpose: the page needs no CORS, and cross-origin isolation
(COOP/COEP, for the Python worker's SharedArrayBuffer) is simple to give. Other
origins may send uploads only when the operator names them (`allowed_origins`).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import mimetypes
import os
import re
import stat
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pcir_upload.repository.receive.connections import ConnectionGuard, ConnectionLimits, guarded_protocol
from pcir_upload.repository.receive.limits import Limits
from pcir_upload.repository.receive.store import MAX_CONTRIBUTION_SIZE, MAX_UPLOAD_SIZE
from pcir_upload.repository.receive.stores import open_store
from pcir_upload.repository.receive.tus import TUS_VERSION, authority, TusEndpoint

UPLOAD_ENDPOINT = "/files/"
EXPIRE_EVERY = 3600.0
# A final upload names every partial in one header: 8,000 of them (64 GiB in 8 MiB chunks) is
# about 400 KB, past h11's 16 KiB default for a request head. What all pending heads may hold
# together is bounded by connections.py.
MAX_REQUEST_HEAD = 1024 * 1024

log = logging.getLogger("pcir_upload.repository.receive")

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


# build.py puts every file whose content can change under a directory named by a hash of its
# content (`/assets/<hash>/app.js`, `/pyodide/314.0.7-<hash>/pyodide.asm.wasm`,
# `/wheels/<hash>/...`): such a URL always means the same bytes, so browsers may keep it for a
# year without asking again. Everything else (index.html, keeps.html, stable aliases) is
# revalidated on every load.
IMMUTABLE_PATH = re.compile(r"^/[^/]+/(?:[^/]*-)?[0-9a-f]{16}/")
CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_REVALIDATE = "no-cache"

# Precompressed variants build.py writes beside a file (`app.js.br`), best first.
PRECOMPRESSED = (("br", ".br"), ("gzip", ".gz"))


def cache_control(path: str) -> str:
    """The Cache-Control for a static file at URL path `path`."""
    return CACHE_IMMUTABLE if IMMUTABLE_PATH.match(path) else CACHE_REVALIDATE


def accepted_encodings(header: str | None) -> set[str]:
    """The content codings an Accept-Encoding header allows (RFC 9110, 12.5.3), lower case;
    `*` stands for any coding not named. A coding with q=0 is refused."""
    accepted: set[str] = set()
    refused: set[str] = set()
    for item in (header or "").split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        (accepted if q > 0 else refused).add(coding)
    if "*" in accepted:
        accepted |= {coding for coding, _ in PRECOMPRESSED if coding not in refused}
    return accepted


class SiteFiles(StaticFiles):
    """The static page: our media types, long caching for content-hashed paths, and the
    precompressed variant of a file when the request accepts its coding.

    A Range request always gets the file itself (ranges of a compressed body are of no use to
    a client that asked for the file's bytes). A variant older than its file is ignored.
    """

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        request_headers = Headers(scope=scope)
        variants = self._variants(full_path, stat_result)
        chosen = None
        if variants and "range" not in request_headers:
            accepted = accepted_encodings(request_headers.get("accept-encoding"))
            chosen = next(((coding, path, st) for coding, path, st in variants if coding in accepted), None)
        if chosen is None:
            response = super().file_response(full_path, stat_result, scope, status_code)
        else:
            coding, path, st = chosen
            response = super().file_response(path, st, scope, status_code)
            response.headers["Content-Encoding"] = coding
            if "accept-ranges" in response.headers:
                del response.headers["accept-ranges"]
        if variants:
            response.headers["Vary"] = "Accept-Encoding"
        response.headers["Cache-Control"] = cache_control(scope["path"])
        if response.status_code != 304:
            response.headers["Content-Type"] = media_type(full_path)
        return response

    @staticmethod
    def _variants(
        full_path: str | os.PathLike[str], stat_result: os.stat_result
    ) -> list[tuple[str, str, os.stat_result]]:
        found = []
        for coding, suffix in PRECOMPRESSED:
            path = os.fspath(full_path) + suffix
            try:
                st = os.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mtime >= stat_result.st_mtime:
                found.append((coding, path, st))
        return found


CORS_PATHS = (UPLOAD_ENDPOINT, "/api/")
CORS_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
CORS_REQUEST_HEADERS = (
    "Tus-Resumable, Upload-Length, Upload-Defer-Length, Upload-Offset, Upload-Metadata, "
    "Upload-Checksum, Upload-Concat, Pcir-Upload-Secret, Content-Type"
)
CORS_RESPONSE_HEADERS = (
    "Location, Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Expires, Upload-Concat, "
    "Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Retry-After"
)


def normalize_origin(origin: str) -> str | None:
    """scheme://host[:port] in lower case without a default port; None if it is not an origin."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or "@" in parts.netloc:
        return None
    return f"{parts.scheme}://{authority(parts.scheme, parts.netloc)}"


class OriginCheck:
    """Uploads and config from other origins only where the operator allowed them.

    A browser sends `Origin` with cross-origin requests (and with same-origin POSTs);
    an origin that is neither this server's own nor configured gets 403, so no page
    elsewhere can drive a patient's browser to upload here, or read our answers.
    Configured origins get what tus needs from CORS, preflight included.
    """

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path + "/").startswith(CORS_PATHS):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("Origin")
        own = f"{scope['scheme']}://{authority(scope['scheme'], headers.get('Host', ''))}"
        normalized = normalize_origin(origin) if origin is not None else None
        # "null" is what the Fetch standard has our own page send with its POSTs and PATCHes
        # under `Referrer-Policy: no-referrer` (Chromium sends the origin anyway). It gets
        # no CORS headers, so elsewhere it buys nothing: tus needs Tus-Resumable, which no
        # cross-origin request may carry without passing a preflight.
        if origin is None or origin == "null" or normalized == own:
            await self.app(scope, receive, send)
            return
        if normalized not in self.allowed:
            response = Response("Requests from other sites are not accepted", 403, media_type="text/plain")
            await response(scope, receive, send)
            return
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if scope["method"] == "OPTIONS" and "Access-Control-Request-Method" in headers:
            preflight = {
                **cors,
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_REQUEST_HEADERS,
                "Access-Control-Max-Age": "86400",
                "Tus-Resumable": TUS_VERSION,
            }
            await Response(status_code=204, headers=preflight)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in cors.items():
                    response_headers[name] = value
                response_headers["Access-Control-Expose-Headers"] = CORS_RESPONSE_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_cors)


class Receiver(Starlette):
    """Starlette with the security headers outside even its error handler, so 500s carry them too."""

    def __init__(self, *args: Any, allowed_origins: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allowed_origins = frozenset(allowed_origins)

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(OriginCheck(super().build_middleware_stack(), self.allowed_origins))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def create_app(
    data_dir: Path,
    site_dir: Path,
    public_key_raw: bytes,
    *,
    hybrid_public_key: bytes | None = None,
    max_upload_size: int = MAX_UPLOAD_SIZE,
    max_contribution_size: int = MAX_CONTRIBUTION_SIZE,
    limits: Limits = Limits(),
    expire_every: float = EXPIRE_EVERY,
    allowed_origins: Iterable[str] = (),
    store_url: str | None = None,
    s3_endpoint: str | None = None,
    redis_url: str | None = None,
) -> Starlette:
    """The receiver: uploads land in `data_dir` (or, with `store_url` s3://bucket/prefix, on
    that object store at `s3_endpoint`, shared with other receivers through `redis_url`), sealed by the page to `public_key_raw` (X25519)
    or, where the browser has ML-KEM, to `hybrid_public_key` (X-Wing, 1,216 bytes).

    What anyone may hold, and how long uploads are kept, is `limits`; uploads whose time ran
    out are removed every `expire_every` seconds. `allowed_origins` (scheme://host[:port])
    may upload from pages of their own.
    """
    if len(public_key_raw) != 32:
        raise ValueError("public_key_raw must be a 32-byte raw X25519 public key")
    config = {"public_key": _b64(public_key_raw), "upload_endpoint": UPLOAD_ENDPOINT}
    if hybrid_public_key is not None:
        if len(hybrid_public_key) != 1216:
            raise ValueError("hybrid_public_key must be a 1,216-byte X-Wing public key")
        config["hybrid_public_key"] = _b64(hybrid_public_key)
    origins = set()
    for origin in allowed_origins:
        normalized = normalize_origin(origin)
        if normalized is None:
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
        origins.add(normalized)

    async def api_config(request: Request) -> Response:
        return JSONResponse(config, headers={"Cache-Control": "no-store"})

    store = open_store(
        data_dir, store_url, s3_endpoint=s3_endpoint, redis_url=redis_url,
        max_size=max_upload_size, max_contribution_size=max_contribution_size, limits=limits,
    )

    async def expire_forever() -> None:
        while True:
            await anyio.sleep(expire_every)
            try:
                await store.expire()
            except Exception:  # a bad folder must not stop the next round
                log.exception("removing expired uploads failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.recover()  # before the first request: a crash's leftovers are tidied
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(expire_forever)
            yield
            tasks.cancel_scope.cancel()

    tus = TusEndpoint(store)
    app = Receiver(
        routes=[
            Route("/api/config", api_config, methods=["GET"]),
            Mount(UPLOAD_ENDPOINT.rstrip("/"), routes=tus.routes),
            Mount("/", SiteFiles(directory=site_dir, html=True)),
        ],
        lifespan=lifespan,
        allowed_origins=origins,
    )
    app.state.store = store
    return app


def uvicorn_options(
    connections: ConnectionLimits = ConnectionLimits(), trusted_proxies: Iterable[str] = ()
) -> dict[str, object]:
    """What `run` gives uvicorn beyond host and port (tests start servers with the same).

    X-Forwarded-For and X-Forwarded-Proto are believed only from `trusted_proxies` (addresses
    or networks): anyone else could name any address and escape the per-client limits.
    """
    log_config = {
        **LOGGING_CONFIG,
        "loggers": {
            **LOGGING_CONFIG["loggers"],
            "pcir_upload.repository.receive": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }
    trusted = list(trusted_proxies)
    # No access log: it would record every patient's address and every request, and the
    # receiver logs one line per contribution event instead.
    return {
        "http": guarded_protocol(ConnectionGuard(connections)),
        "h11_max_incomplete_event_size": MAX_REQUEST_HEAD,
        "timeout_keep_alive": connections.idle_timeout,
        "backlog": connections.backlog,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "access_log": False,
        "log_config": log_config,
    }


def run(
    data_dir: Path,
    site_dir: Path,
    public_key_raw: bytes,
    hybrid_public_key: bytes | None,
    host: str,
    port: int,
    allowed_origins: Iterable[str] = (),
    *,
    limits: Limits = Limits(),
    connections: ConnectionLimits = ConnectionLimits(),
    trusted_proxies: Iterable[str] = (),
    store_url: str | None = None,
    s3_endpoint: str | None = None,
    redis_url: str | None = None,
) -> None:
    """Serve until interrupted. Uvicorn streams request bodies, so large PATCHes are never buffered."""
    app = create_app(
        data_dir, site_dir, public_key_raw, hybrid_public_key=hybrid_public_key,
        allowed_origins=allowed_origins, limits=limits,
        store_url=store_url, s3_endpoint=s3_endpoint, redis_url=redis_url,
    )
    options = uvicorn_options(connections, trusted_proxies)
    uvicorn.run(app, host=host, port=port, log_level="info", **options)  # type: ignore[arg-type]
