"""The whole flow by keyboard alone, checked with axe-core on every step, in layouts from a
phone to a laptop; a screenshot of each step is saved (the README shows them).

Screenshots go to tests/artifacts/screenshots, or to $PCIR_SCREENSHOTS (the README's come
from `PCIR_SCREENSHOTS=docs/screenshots ./dev test tests/test_accessibility.py`).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from browsing import DIST, ROOT, agree, to_review
from faultproxy import FaultProxy
from support import files_of, receiver

AXE = (ROOT / "node_modules" / "axe-core" / "axe.min.js").read_text()
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
SHOTS = Path(os.environ.get("PCIR_SCREENSHOTS") or ROOT / "tests" / "artifacts" / "screenshots")


@pytest.fixture
def proxied(tmp_path: Path, keys) -> Iterator[tuple[str, FaultProxy]]:
    """The receiver behind a proxy that can slow the link, so the sending step can be seen."""
    with receiver(tmp_path / "data", DIST, keys.public) as url, FaultProxy(url) as proxy:
        yield proxy.url, proxy


def violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.2 AA (and best-practice) findings for what is on screen now."""
    page.evaluate(AXE)  # evaluated, not injected as a <script>: the page's CSP forbids inline code
    result = page.evaluate(
        "(tags) => axe.run(document, { runOnly: { type: 'tag', values: tags } })", AXE_TAGS)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])}: {v['nodes'][0]['target']})" for v in result["violations"]]


def check_step(page: Page, heading: str, name: str) -> None:
    """On arrival at a step, focus is on its heading, axe finds nothing, and a picture is kept."""
    page.wait_for_selector(f"#{heading}:focus")
    assert violations(page) == [], name
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def tab_to(page: Page, selector: str, limit: int = 40) -> None:
    """Press Tab until `selector` has the focus: it must be reachable by keyboard."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} cannot be reached with Tab")


def opfs_disc(page: Page, disc: Path) -> None:
    """An Origin Private File System folder stands in for what the folder picker returns."""
    files = {path: base64.b64encode(content).decode() for path, content in files_of(disc).items()}
    page.evaluate(
        """async (files) => {
            const root = await (await navigator.storage.getDirectory()).getDirectoryHandle('disc', {create: true});
            for (const [path, b64] of Object.entries(files)) {
                let dir = root;
                const parts = path.split('/');
                for (const part of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(part, {create: true});
                const writable = await (await dir.getFileHandle(parts.at(-1), {create: true})).createWritable();
                await writable.write(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
                await writable.close();
            }
            window.showDirectoryPicker = async () => root;
        }""",
        files,
    )


def test_the_whole_flow_by_keyboard_with_nothing_for_axe(browser: Browser, proxied, dicomdirtests) -> None:
    url, proxy = proxied
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    assert violations(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "1-welcome.png", full_page=True)

    tab_to(page, "#start")
    page.keyboard.press("Enter")
    check_step(page, "terms-heading", "2-terms")
    for box in page.query_selector_all("input[name=confirm]"):
        tab_to(page, f"input[value='{box.get_attribute('value')}']")
        page.keyboard.press("Space")
    tab_to(page, "#reason")
    page.keyboard.type("Headaches")
    tab_to(page, "#agree-continue")
    page.keyboard.press("Enter")

    check_step(page, "choose-heading", "3-choose")
    opfs_disc(page, dicomdirtests)
    tab_to(page, "#choose-folder")
    page.keyboard.press("Enter")
    page.wait_for_selector("#discs li", timeout=60_000)
    assert violations(page) == []
    page.screenshot(path=SHOTS / "3-chosen.png", full_page=True)
    tab_to(page, "#choose-continue")
    page.keyboard.press("Enter")

    check_step(page, "review-heading", "4-review")
    tab_to(page, "#upload")
    proxy.throttle(10_000)  # a slow link, so that the sending step stays on screen
    page.keyboard.press("Enter")

    check_step(page, "upload-heading", "5-sending")
    assert page.is_visible("#step-upload"), "sending ended before it could be checked"
    proxy.clear()

    page.wait_for_selector("#step-done:not([hidden])", timeout=120_000)
    check_step(page, "done-heading", "6-done")
    tab_to(page, "#forget")
    context.close()


def test_errors_say_what_to_do_and_keep_details_one_click_away(browser: Browser, proxied) -> None:
    url, _ = proxied
    page = browser.new_page()
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    page.click("#start")
    agree(page)
    page.evaluate("() => { window.showDirectoryPicker = async () => { throw new DOMException('denied', 'SecurityError'); }; }")
    page.click("#choose-folder")
    page.wait_for_selector("#error:focus")
    assert page.inner_text("#error-message") == "The folder could not be opened."
    assert page.is_hidden("#error-detail")  # the technical part waits behind one click
    page.click("#error summary")
    assert "SecurityError" in page.inner_text("#error-detail")
    assert violations(page) == []
    page.screenshot(path=SHOTS / "error.png", full_page=True)
    # And axe does look: an image without a text alternative is reported.
    page.evaluate("() => document.querySelector('main').append(Object.assign(document.createElement('img'), {src: 'favicon.svg'}))")
    assert any(v.startswith("image-alt") for v in violations(page))
    page.close()


@pytest.mark.parametrize("width,height,scale,name", [
    (320, 640, 1, "phone-320"),      # WCAG 1.4.10 reflow: 320 CSS px
    (683, 384, 2, "laptop-zoom-200"),  # a 1366x768 laptop at 200% zoom
])
def test_it_reflows_without_sideways_scrolling(browser: Browser, proxied, dicomdirtests, width, height, scale, name) -> None:
    url, _ = proxied
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=scale)
    page = context.new_page()
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)

    def fits(step: str) -> None:
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{step} scrolls sideways by {overflow} px at {width} px"

    fits("welcome")
    page.click("#start")
    fits("terms")
    agree(page)
    fits("choose")
    page.set_input_files("#folder-input", dicomdirtests)
    page.wait_for_selector("#discs li", timeout=60_000)
    fits("choose, with a disc")
    to_review(page)
    fits("review")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}-review.png", full_page=True)
    context.close()


@pytest.mark.parametrize("remove", ["delete globalThis.WebAssembly", "delete SubtleCrypto.prototype.generateKey"],
                         ids=["no-webassembly", "no-webcrypto-keys"])
def test_a_browser_that_lacks_something_is_told_what_to_use(browser: Browser, proxied, remove) -> None:
    url, _ = proxied
    context = browser.new_context()
    context.add_init_script(remove)
    page = context.new_page()
    page.goto(url + "/")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "up-to-date Chrome, Edge, Firefox or Safari" in page.inner_text("#error-message")
    assert page.is_disabled("#start")
    assert page.is_visible("#welcome-heading")  # the page is there, never blank
    context.close()
