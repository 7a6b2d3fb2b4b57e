"""What the browser tests share: Debian's Chromium, and how a patient goes through the page."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Browser, Page, Request

from pcir_upload.repository.receive.ledger import entries
from pcir_upload.repository.unpack import unpack_all
from support import files_of

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


def begin(browser: Browser, url: str, disc: Path) -> Page:
    """A new page on `url`, through the terms, `disc` chosen and scanned: at the review."""
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "leave this page?" while sending
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    page.click("#start")
    if page.is_visible("#step-terms"):
        agree(page)
    page.set_input_files("#folder-input", disc)
    to_review(page)
    return page


def finished(page: Page, timeout: float = 180) -> str:
    """The receipt code, once the page is done (within `timeout` s of now)."""
    page.wait_for_selector("#step-done:not([hidden]), #error:not([hidden])", timeout=timeout * 1000)
    assert page.is_hidden("#error"), page.inner_text("#error")
    return page.inner_text("#receipt-code")


def arrived(data: Path, keys, tmp_path: Path, disc: Path, code: str) -> dict:
    """Unpack what the receiver holds: exactly the contribution of receipt `code`, `disc`
    byte for byte in it. Returns its manifest."""
    reports: list[str] = []
    out = tmp_path / "out"
    assert unpack_all(data, keys.private, out, reports.append), reports
    assert len(reports) == 1 and code in reports[0], reports
    (contribution,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert files_of(contribution / "files" / "disc-1") == files_of(disc)
    # One complete upload, and nothing half-sent left behind but what will expire.
    assert [e.state for e in entries(data)].count("complete") == 1
    return json.loads((contribution / "manifest.json").read_text())


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
