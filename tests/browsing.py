"""What the browser tests share: Debian's Chromium, and how a patient goes through the page."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Page, Request

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
CHROMIUM = "/usr/bin/chromium"
# Without these, Chromium calls home at start; this machine's closed network refuses it.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class Recorder:
    """Every request the page makes, and its body, as the network would see it."""

    def __init__(self, page: Page):
        self.requests: list[Request] = []
        # The context sees the page's, its workers' and any service worker's requests.
        page.context.on("request", lambda request: self.requests.append(request))

    def origins(self) -> set[str]:
        # A blob: URL (the worker's script) belongs to the origin that made it.
        return {"/".join(r.url.removeprefix("blob:").split("/")[:3]) for r in self.requests}

    def bodies(self) -> list[bytes]:
        return [r.post_data_buffer or b"" for r in self.requests]


def agree(page: Page) -> None:
    """Confirm each point of the terms, one by one, and go on to choosing the disc."""
    for box in page.query_selector_all("input[name=confirm]"):
        box.check()
    page.click("#agree-continue")
    page.wait_for_selector("#step-choose:not([hidden])")


def to_review(page: Page, discs: int = 1) -> None:
    """Once the chosen disc is listed (the scan done), go on to the review."""
    page.wait_for_selector(f"#discs li:nth-child({discs}), #error:not([hidden])", timeout=60_000)
    assert page.is_hidden("#error"), page.inner_text("#error")
    page.click("#choose-continue")
    page.wait_for_selector("#step-review:not([hidden])")


def worker_holds(page: Page) -> dict:
    """What the page's Python worker and its packer workers still hold (memory_report)."""
    return json.loads(page.evaluate(
        "document.querySelector('script[type=\"py\"][worker]').xworker.sync.memory_report()"))


def assert_nothing_held(page: Page) -> None:
    """No disc in hand, no large buffers left: in the worker, and in each packer it used."""
    report = worker_holds(page)
    assert report["disc_in_hand"] is False and report["large_buffers"] == 0, report
    assert report["packers"], "the contribution was not packed by packer workers"
    assert all(p == {"files_in_progress": 0, "large_buffers": 0} for p in report["packers"]), report
