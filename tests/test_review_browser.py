"""The review page in Chromium, as an operator works it, by keyboard: log in, open a contribution
with burned-in text and documents, blank one more box, accept, black out the patient's name on
a letter's page, accept it, reject a file with a reason, release; axe-core finds nothing on any
view, and a screenshot of each is kept.

Screenshots go to tests/artifacts/screenshots, or to $PCIR_SCREENSHOTS (the README's come from
`PCIR_SCREENSHOTS=docs/screenshots`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from browsing import CHROMIUM, CHROMIUM_ARGS, ROOT
from reviewing import CID, MARK, reviewed_contribution
from test_accessibility import SHOTS, tab_to, violations
from test_review import NAME_ON_LETTER, check_released, png_pixels

PASSWORD = "operator-password-for-tests"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`pcir-upload review` in its own process, as the operator starts it."""
    out = reviewed_contribution(tmp_path)
    (tmp_path / "password").write_text(PASSWORD + "\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "py"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "pcir_upload.cli", "review", "--out", str(out), "--port", str(port),
                                "--password-file", str(tmp_path / "password"), "--in", str(tmp_path / "unpacked")], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/login", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield url, out
    finally:
        process.terminate()
        process.wait(10)


def view(page: Page, name: str) -> None:
    """Every view: nothing for axe, and a picture of it."""
    assert violations(page) == [], name
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"review-{name}.png", full_page=True)


def submit_with(page: Page, selector: str, text: str | None = None) -> None:
    """Focus a form's field by keyboard, type into it, and send the form with Enter."""
    page.focus("main")
    tab_to(page, selector, 80)
    if text is not None:
        page.keyboard.press("Control+A")
        page.keyboard.type(text)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_an_operator_reviews_and_releases_by_keyboard(chromium: Browser, served: tuple[str, Path]) -> None:
    url, out = served
    page = chromium.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []  # the browser's own favicon request is the only 404 allowed
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None)
    page.goto(f"{url}/c/{CID}")
    assert page.url == f"{url}/login"  # no session: the contribution is not shown
    view(page, "login")
    tab_to(page, "#operator", 80)
    page.keyboard.type("Grace Hopper")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{url}/"
    view(page, "list")
    tab_to(page, f'a[href="/c/{CID}"]', 80)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("h1").inner_text() == f"Contribution {CID}"
    assert page.locator('rect[stroke="#ff4040"]').count() == 2
    assert page.locator("tr:has-text('letter.pdf') strong").inner_text() == "same patient"
    page.wait_for_function("() => [...document.images].every((i) => i.complete && i.naturalWidth > 0)")
    view(page, "contribution")

    x, y, w, h = MARK
    page.focus("main")
    for name, value in (("x", x), ("y", y), ("w", w), ("h", h)):
        tab_to(page, f"#box-0-{name}", 80)
        page.keyboard.press("Control+A")
        page.keyboard.type(str(value))
    submit_with(page, "#box-0-why", "a bright marker OCR does not read")
    assert page.locator('rect[stroke="#40a0ff"]').count() == 1
    view(page, "box")
    submit_with(page, "#accept-0-why")  # the reason is filled in; the operator may change it
    page.focus("main")
    for name, value in zip(("page", "x", "y", "w", "h"), (1, *NAME_ON_LETTER)):
        tab_to(page, f"#redact-2-{name}", 80)
        page.keyboard.press("Control+A")
        page.keyboard.type(str(value))
    submit_with(page, "#redact-2-why", "the patient's name and birth date")
    assert "blacked out by the operator: 1." in page.locator("section:has(#file-2) figcaption").inner_text()
    page.wait_for_function("() => [...document.images].every((i) => i.complete && i.naturalWidth > 0)")
    page.locator("section:has(#file-2) img.page").scroll_into_view_if_needed()
    view(page, "redaction")
    submit_with(page, "#accept-2-why", "the letter's pages: checked, the name blacked out")
    submit_with(page, "#reject-3-why", "a photo of the patient's face")
    assert "rejected" in page.locator("#file-3 ~ p.state, section:has(#file-3) p.state").first.inner_text()
    submit_with(page, "#release-why", "reviewed and released")
    assert "released to released/" in page.locator("section:has(#file-0) p.state").inner_text()
    view(page, "released")
    assert errors == []

    check_released(out / "released")
    entries = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert [(e["action"], e.get("file")) for e in entries] == [
        ("boxes", "DISC/US0001"), ("accept", "DISC/US0001"), ("redact", "letter.pdf"), ("accept", "letter.pdf"),
        ("reject", "photo.jpg"), ("release", None)]
    assert {e["operator"] for e in entries} == {"Grace Hopper"}
    assert entries[4]["why"] == "a photo of the patient's face"
    x, y, w, h = NAME_ON_LETTER
    [letter] = (out / "released").glob("*/documents/*/page-001.png")
    assert (png_pixels(letter.read_bytes())[y:y + h, x:x + w] == 0).all()
