"""The page's static files over real HTTP on 127.0.0.1: precompressed variants chosen by
Accept-Encoding, cache lifetimes by path, and Range, HEAD and conditional requests still right."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pcir_upload.repository.receive.app import (
    CACHE_IMMUTABLE, CONTENT_SECURITY_POLICY, accepted_encodings, cache_control,
)
from support import receiver

PUBLIC_KEY = bytes(range(32))
HASHED = "assets/0123456789abcdef"
SCRIPT = b"export const answer = 42;\n" * 200
WASM = b"\0asm\1\0\0\0" + bytes(range(256)) * 40
# The server does not look into a variant, so a stand-in for brotli output will do; gzip is real.
BROTLI_STAND_IN = b"brotli stand-in"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    hashed = site / HASHED
    hashed.mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>Contribute</title>" + "<p>text</p>" * 100)
    (site / "index.html.gz").write_bytes(gzip.compress((site / "index.html").read_bytes()))
    (hashed / "app.js").write_bytes(SCRIPT)
    (hashed / "app.js.br").write_bytes(BROTLI_STAND_IN)
    (hashed / "app.js.gz").write_bytes(gzip.compress(SCRIPT))
    (hashed / "module.wasm").write_bytes(WASM)
    (hashed / "module.wasm.br").write_bytes(BROTLI_STAND_IN)
    (hashed / "plain.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (site / "pyodide").mkdir()
    (site / "pyodide" / "module.wasm").write_bytes(WASM)  # a stable alias
    return site


@pytest.fixture
def client(tmp_path: Path, site: Path) -> Iterator[httpx.Client]:
    with receiver(tmp_path / "data", site, PUBLIC_KEY) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client


def get(client: httpx.Client, path: str, method: str = "GET", **headers: str) -> tuple[httpx.Response, bytes]:
    """The response and its body exactly as sent (httpx would otherwise decode gzip)."""
    with client.stream(method, path, headers=headers) as r:
        return r, b"".join(r.iter_raw())


def test_brotli_when_accepted(client: httpx.Client) -> None:
    r, body = get(client, f"/{HASHED}/app.js", **{"Accept-Encoding": "gzip, deflate, br, zstd"})
    assert r.status_code == 200
    assert r.headers["Content-Encoding"] == "br"
    assert body == BROTLI_STAND_IN
    assert int(r.headers["Content-Length"]) == len(BROTLI_STAND_IN)
    assert r.headers["Content-Type"] == "text/javascript; charset=utf-8"  # the original's
    assert r.headers["Vary"] == "Accept-Encoding"
    assert "Accept-Ranges" not in r.headers
    # The security headers cover compressed responses too.
    assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"


def test_gzip_when_brotli_is_not_accepted(client: httpx.Client) -> None:
    r, body = get(client, f"/{HASHED}/app.js", **{"Accept-Encoding": "gzip, deflate"})
    assert r.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == SCRIPT
    assert int(r.headers["Content-Length"]) == len(body)
    # And httpx, decoding as a browser does, gets the file.
    assert client.get(f"/{HASHED}/app.js", headers={"Accept-Encoding": "gzip"}).content == SCRIPT


@pytest.mark.parametrize("accept", ["identity", "", "br;q=0, gzip;q=0", "zstd", "*;q=0"])
def test_the_file_itself_otherwise(client: httpx.Client, accept: str) -> None:
    r, body = get(client, f"/{HASHED}/app.js", **{"Accept-Encoding": accept})
    assert "Content-Encoding" not in r.headers
    assert body == SCRIPT and int(r.headers["Content-Length"]) == len(SCRIPT)
    assert r.headers["Vary"] == "Accept-Encoding"  # a cache must not hand this to a br client


def test_q_values_and_wildcard() -> None:
    assert accepted_encodings("gzip, deflate, br, zstd") == {"gzip", "deflate", "br", "zstd"}
    assert accepted_encodings("br;q=0, gzip;q=0.5") == {"gzip"}
    assert accepted_encodings("br; q=0.000, gzip") == {"gzip"}
    assert accepted_encodings("*") >= {"br", "gzip"}
    assert accepted_encodings("*, br;q=0") == {"*", "gzip"}
    assert accepted_encodings(None) == set()
    assert accepted_encodings("GZIP;Q=1") == {"gzip"}


def test_wildcard_gets_brotli(client: httpx.Client) -> None:
    r, _ = get(client, f"/{HASHED}/app.js", **{"Accept-Encoding": "*"})
    assert r.headers["Content-Encoding"] == "br"


def test_wasm_keeps_its_type_when_compressed(client: httpx.Client) -> None:
    """Streaming compilation needs application/wasm, compressed or not."""
    r, body = get(client, f"/{HASHED}/module.wasm", **{"Accept-Encoding": "br"})
    assert (r.headers["Content-Type"], r.headers["Content-Encoding"], body) == ("application/wasm", "br", BROTLI_STAND_IN)


def test_range_requests_get_the_file_itself(client: httpx.Client) -> None:
    r, body = get(client, f"/{HASHED}/app.js", **{"Accept-Encoding": "br, gzip", "Range": "bytes=7-19"})
    assert r.status_code == 206
    assert "Content-Encoding" not in r.headers
    assert body == SCRIPT[7:20]
    assert r.headers["Content-Range"] == f"bytes 7-19/{len(SCRIPT)}"


def test_head_matches_get(client: httpx.Client) -> None:
    for accept, length in (("br", len(BROTLI_STAND_IN)), ("identity", len(SCRIPT))):
        got, _ = get(client, f"/{HASHED}/app.js", **{"Accept-Encoding": accept})
        head, body = get(client, f"/{HASHED}/app.js", "HEAD", **{"Accept-Encoding": accept})
        assert head.status_code == 200 and body == b""
        assert int(head.headers["Content-Length"]) == length
        for name in ("Content-Type", "Content-Encoding", "Content-Length", "ETag", "Cache-Control", "Vary"):
            assert head.headers.get(name) == got.headers.get(name), name


def test_each_variant_has_its_own_etag_and_revalidates(client: httpx.Client) -> None:
    br, _ = get(client, f"/{HASHED}/app.js", **{"Accept-Encoding": "br"})
    plain, _ = get(client, f"/{HASHED}/app.js", **{"Accept-Encoding": "identity"})
    assert br.headers["ETag"] != plain.headers["ETag"]
    again, body = get(client, f"/{HASHED}/app.js", **{"Accept-Encoding": "br", "If-None-Match": br.headers["ETag"]})
    assert again.status_code == 304 and body == b""
    assert again.headers["Cache-Control"] == CACHE_IMMUTABLE
    # The identity ETag does not validate the brotli variant.
    other, body = get(client, f"/{HASHED}/app.js", **{"Accept-Encoding": "br", "If-None-Match": plain.headers["ETag"]})
    assert other.status_code == 200 and body == BROTLI_STAND_IN


def test_a_variant_older_than_its_file_is_not_used(client: httpx.Client, site: Path) -> None:
    variant = site / HASHED / "app.js.br"
    past = time.time() - 3600
    os.utime(variant, (past, past))
    r, body = get(client, f"/{HASHED}/app.js", **{"Accept-Encoding": "br"})
    assert "Content-Encoding" not in r.headers and body == SCRIPT


def test_cache_lifetimes(client: httpx.Client) -> None:
    immutable = "public, max-age=31536000, immutable"
    expected = {
        "/": "no-cache",
        "/index.html": "no-cache",
        f"/{HASHED}/app.js": immutable,
        f"/{HASHED}/module.wasm": immutable,
        f"/{HASHED}/plain.svg": immutable,
        "/pyodide/module.wasm": "no-cache",  # a stable name: its content may change
    }
    for path, cache in expected.items():
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["Cache-Control"] == cache, path
    # A file without variants does not vary.
    assert "Vary" not in client.get(f"/{HASHED}/plain.svg").headers


def test_index_is_compressed_too(client: httpx.Client, site: Path) -> None:
    r, body = get(client, "/", **{"Accept-Encoding": "gzip"})
    assert r.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == (site / "index.html").read_bytes()
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    ("path", "immutable"),
    [
        ("/assets/0123456789abcdef/app.js", True),
        ("/pyodide/314.0.7-0123456789abcdef/pyodide.asm.wasm", True),
        ("/wheels/0123456789abcdef/pydicom-3.0.2-py3-none-any.whl", True),
        ("/pyscript/0.7.31-0123456789abcdef/core.js", True),
        ("/", False),
        ("/index.html", False),
        ("/keeps.html", False),
        ("/pyodide/pyodide.mjs", False),
        ("/wheels/pcir_upload-0.1.0-py3-none-any.whl", False),
        ("/assets/0123456789abcde/app.js", False),  # 15 digits
        ("/assets/0123456789ABCDEF/app.js", False),
        ("/0123456789abcdef/app.js", False),  # a hash must name a directory inside an area
    ],
)
def test_which_paths_are_immutable(path: str, immutable: bool) -> None:
    assert (cache_control(path) == CACHE_IMMUTABLE) is immutable
