"""The page's first load and a return visit in Chromium, as the server saw them: compressed
on the first visit, and nothing but the page itself asked for on the second (every other file
has a content-hashed name the browser keeps). Times are bench/firstload.py's business."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from browsing import CHROMIUM, CHROMIUM_ARGS, DIST
from pcir_upload.repository.receive.app import create_app
from support import running


class Counted:
    """The receiver's app, with every response's path, status, coding and body size noted."""

    def __init__(self, app: Any):
        self.app = app
        self.responses: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record: dict[str, Any] = {"path": scope["path"], "bytes": 0, "encoding": None}
        self.responses.append(record)

        async def counting(message: Any) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-encoding":
                        record["encoding"] = value.decode()
            elif message["type"] == "http.response.body":
                record["bytes"] += len(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, counting)

    def take(self) -> list[dict[str, Any]]:
        taken, self.responses = self.responses, []
        return taken


def visit(playwright: Any, profile: Path, url: str) -> None:
    """Open the page in Chromium on `profile` until Python is ready, then close the browser."""
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='true']", state="attached", timeout=120_000)
    finally:
        context.close()


def test_first_visit_compressed_and_a_return_visit_asks_only_for_the_page(playwright, tmp_path, keys) -> None:
    app = Counted(create_app(tmp_path / "data", DIST, keys.public.classical, hybrid_public_key=keys.public.hybrid))
    with running(app) as url:
        profile = tmp_path / "profile"
        visit(playwright, profile, url)
        first = app.take()
        visit(playwright, profile, url)
        second = app.take()

    assert all(r["status"] == 200 for r in first), [r for r in first if r["status"] != 200]
    paths = {r["path"] for r in first}
    for needed in ("pyodide.asm.wasm", "python_stdlib.zip", "pydicom-", "pcir_upload-", "app.js", "core.js"):
        assert any(needed in p for p in paths), needed
    # Chromium accepts brotli from 127.0.0.1: everything of size went compressed.
    large = [r for r in first if r["bytes"] > 1024]
    assert large and all(r["encoding"] == "br" for r in large), [r for r in large if r["encoding"] != "br"]
    total = sum(r["bytes"] for r in first)
    assert total < 7e6, f"the first visit took {total / 1e6:.1f} MB"  # 25 MB uncompressed

    # The return visit: the page revalidated (it may have changed), everything else from the cache.
    assert [r["path"] for r in second] == ["/"], second
    assert second[0]["status"] in (200, 304)
