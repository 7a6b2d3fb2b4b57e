"""Consent, the session marker, and leaving no trace, proven in a real Chromium.

The disc here carries a distinctive patient name. After contributing it, neither the name nor
any bytes of its DICOM files may be found anywhere in the browser's profile directory, in its
storage, in the worker's memory or in any request; and the only thing stored is the marker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from playwright.sync_api import BrowserContext, Page, Playwright

from pcir_upload.page.session.marker import STORAGE_KEY
from pcir_upload.repository.receive.app import CONTENT_SECURITY_POLICY
from pcir_upload.repository.unpack import unpack_all
from support import receiver
from browsing import CHROMIUM, CHROMIUM_ARGS, DIST, Recorder, agree, assert_nothing_held, to_review

NAME = "Quixotic^Zebulon"
TERMS_VERSION = "2026-11-25"


@pytest.fixture(scope="module")
def named_disc(tmp_path_factory) -> Path:
    """A general-purpose CD: DICOM files of a patient with a name found nowhere else, and a
    DICOMDIR written by DCMTK."""
    root = tmp_path_factory.mktemp("named") / "disc"
    for i, name in enumerate(["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"], start=1):
        dataset = pydicom.dcmread(pydicom.data.get_testdata_file(name))
        dataset.PatientName = NAME
        dataset.PatientID = "ZQ-4242"
        target = root / "DICOM" / "ST000001" / f"SE00000{i}" / "IM000001"
        target.parent.mkdir(parents=True)
        dataset.save_as(target, enforce_file_format=True)
    if not shutil.which("dcmmkdir"):
        pytest.fail("dcmmkdir is missing: install Debian's dcmtk (./dev test does)")
    subprocess.run(["dcmmkdir", "-Pgp", "+I", "+r", "+id", str(root), "+D", str(root / "DICOMDIR"), "DICOM"],
                   check=True, capture_output=True)
    return root


@pytest.fixture
def served(tmp_path: Path, keys) -> Iterator[tuple[str, Path]]:
    data = tmp_path / "data"
    with receiver(data, DIST, keys.public) as url:
        yield url, data


@pytest.fixture
def profile(playwright: Playwright, tmp_path: Path) -> Iterator[tuple[BrowserContext, Path]]:
    """Chromium with a fresh profile directory on disk, as a patient's browser keeps one."""
    directory = tmp_path / "profile"
    context = playwright.chromium.launch_persistent_context(
        directory, executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield context, directory
    finally:
        context.close()


def welcome(context: BrowserContext, url: str) -> Page:
    page = context.pages[0] if context.pages else context.new_page()
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    return page


def contribute(page: Page, disc: Path) -> str:
    page.set_input_files("#folder-input", disc)
    to_review(page)
    page.click("#upload")
    page.wait_for_selector("#step-done:not([hidden]), #error:not([hidden])", timeout=120_000)
    assert page.is_hidden("#error"), page.inner_text("#error")
    return page.inner_text("#receipt-code")


def stored_marker(page: Page) -> dict | None:
    raw = page.evaluate(f"localStorage.getItem({STORAGE_KEY!r})")
    return None if raw is None else json.loads(raw)


def manifests(data: Path, keys, out: Path) -> list[dict]:
    assert unpack_all(data, keys.private, out, lambda line: None)
    return [json.loads((folder / "manifest.json").read_text())
            for folder in sorted(out.iterdir()) if not folder.name.startswith(".")]


def storage_of(page: Page) -> dict:
    return page.evaluate("""async () => ({
        local: Object.keys(localStorage),
        session: Object.keys(sessionStorage),
        // Records in every IndexedDB database: PyScript keeps one library database open
        // (empty) while the page lives; only what is in it counts.
        indexeddb: await Promise.all((await indexedDB.databases()).map((info) => new Promise((resolve) => {
            const request = indexedDB.open(info.name);
            request.onsuccess = () => {
                const db = request.result, stores = Array.from(db.objectStoreNames);
                if (!stores.length) { db.close(); resolve(0); return; }
                const tx = db.transaction(stores), counts = stores.map((s) => tx.objectStore(s).count());
                tx.oncomplete = () => { db.close(); resolve(counts.reduce((a, c) => a + c.result, 0)); };
            };
            request.onerror = () => resolve(-1);
        }))).then((counts) => counts.filter((n) => n !== 0)),
        caches: await caches.keys(),
        opfs: await (async () => { const names = [];
            for await (const name of (await navigator.storage.getDirectory()).keys()) names.push(name);
            return names; })(),
        serviceworkers: (await navigator.serviceWorker.getRegistrations()).length,
    })""")


def test_each_confirmation_is_required_and_recorded(browser, served, keys, named_disc, tmp_path) -> None:
    url, data = served
    page = browser.new_page()
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    page.click("#start")
    boxes = page.query_selector_all("input[name=confirm]")
    assert len(boxes) == 4
    for skipped in range(4):
        for i, box in enumerate(boxes):
            box.set_checked(i != skipped)
        page.click("#agree-continue")
        assert page.is_visible("#terms-missing") and page.is_visible("#step-terms")
    page.fill("#reason", "Knee pain after a fall")
    agree(page)
    contribute(page, named_disc)
    (manifest,) = manifests(data, keys, tmp_path / "out")
    assert manifest["terms"]["version"] == TERMS_VERSION
    assert manifest["terms"]["confirmations"] == ["self", "adult", "public-irrevocable", "terms"]
    assert datetime.strptime(manifest["terms"]["agreed"], "%Y-%m-%dT%H:%M:%SZ")
    assert manifest["reason"] == "Knee pain after a fall"
    assert manifest["contributor_id"] == stored_marker(page)["contributor_id"]
    page.context.close()


def test_a_returning_contributor_is_not_asked_again_but_someone_else_is(browser, served, keys, named_disc, tmp_path) -> None:
    url, data = served
    context = browser.new_context()
    page = welcome(context, url)
    assert page.is_hidden("#not-you")
    page.click("#start")
    agree(page)
    contribute(page, named_disc)
    first = stored_marker(page)
    assert set(first) == {"contributor_id", "terms_version", "agreed", "last_contribution"}
    assert first["terms_version"] == TERMS_VERSION and first["last_contribution"]

    # Back a while later: the same terms, agreed recently: straight to the disc.
    page = welcome(context, url)
    assert "Welcome back" in page.inner_text("#welcome-returning")
    page.click("#start")
    page.wait_for_selector("#step-choose:not([hidden])")
    contribute(page, named_disc)
    second = stored_marker(page)
    assert second["contributor_id"] == first["contributor_id"] and second["agreed"] == first["agreed"]

    # Someone else at the same computer: asked again, and the first person's marker stays.
    page = welcome(context, url)
    page.click("#not-you")
    page.wait_for_selector("#welcome-fresh:not([hidden])")
    assert page.is_hidden("#welcome-returning")
    page.click("#start")
    agree(page)
    contribute(page, named_disc)
    assert stored_marker(page) == second

    ids = [m["contributor_id"] for m in manifests(data, keys, tmp_path / "out")]
    assert sorted(ids).count(first["contributor_id"]) == 2 and len(set(ids)) == 2
    context.close()


@pytest.mark.parametrize("marker", [
    {"contributor_id": "ab" * 16, "terms_version": TERMS_VERSION, "agreed": "2026-01-01T00:00:00Z", "last_contribution": None},
    {"contributor_id": "ab" * 16, "terms_version": "2020-01-01", "agreed": "NOW", "last_contribution": None},
    "not json at all",
    {"contributor_id": "ab" * 16, "terms_version": TERMS_VERSION, "agreed": "NOW", "last_contribution": None, "name": "x"},
], ids=["agreed-long-ago", "older-terms", "garbage", "extra-field"])
def test_the_terms_are_asked_again_unless_the_marker_is_recent_and_exact(browser, served, marker) -> None:
    url, _ = served
    context = browser.new_context()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    value = marker if isinstance(marker, str) else json.dumps({k: (now if v == "NOW" else v) for k, v in marker.items()})
    context.add_init_script(f"localStorage.setItem({STORAGE_KEY!r}, {json.dumps(value)})")
    page = welcome(context, url)
    page.click("#start")
    page.wait_for_selector("#step-terms:not([hidden])")
    context.close()


def test_forget_this_computer_removes_everything(browser, served, named_disc) -> None:
    url, _ = served
    context = browser.new_context()
    page = welcome(context, url)
    page.click("#start")
    agree(page)
    contribute(page, named_disc)
    assert storage_of(page)["local"] == [STORAGE_KEY]
    page.click("#forget")
    page.wait_for_selector("#forgotten:not(:empty)")
    assert storage_of(page) == {"local": [], "session": [], "indexeddb": [], "caches": [], "opfs": [], "serviceworkers": 0}
    # Contributing another disc on this visit still works, and still stores nothing.
    page.click("#another")
    contribute(page, named_disc)
    assert storage_of(page)["local"] == []
    context.close()


def samples(disc: Path) -> list[bytes]:
    """Distinctive pieces of the disc's files: any of them found elsewhere is a leak."""
    found = []
    for path in disc.rglob("*"):
        if path.is_file() and path.name != "DICOMDIR":
            data = path.read_bytes()
            for offset in range(len(data) // 2, len(data) - 32, 997):
                window = data[offset:offset + 32]
                if len(set(window)) >= 20:
                    found.append(window)
                    break
    return found


def test_no_trace_is_left(profile, served, keys, named_disc, tmp_path) -> None:
    context, directory = profile
    url, data = served
    page = welcome(context, url)
    recorder = Recorder(page)
    page.click("#start")
    agree(page)
    contribute(page, named_disc)
    (manifest,) = manifests(data, keys, tmp_path / "out")
    assert manifest["discs"][0]["summary"]["patients"][0]["name"] == NAME  # the name did travel, sealed

    # In the worker: no disc in hand, no large buffers left.
    assert_nothing_held(page)

    # In the browser's storage: the marker, nothing else.
    assert storage_of(page) == {"local": [STORAGE_KEY], "session": [], "indexeddb": [], "caches": [], "opfs": [], "serviceworkers": 0}

    # On the wire: only the page's own origin, and nothing readable.
    assert recorder.origins() == {url}
    leaks = [NAME.encode(), NAME.encode("utf-16-le"), b"ZQ-4242", *samples(named_disc)]
    for request in recorder.requests:
        assert NAME not in request.url and all(NAME not in v for v in request.headers.values())
        body = request.post_data_buffer or b""
        assert not any(leak in body for leak in leaks) and b"DICM" not in body

    # On disk, in the whole profile directory.
    context.close()
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            for leak in leaks:
                assert leak not in content, f"{path} holds disc data"
            assert bytes(128) + b"DICM" not in content, f"{path} holds a DICOM file"


def test_the_page_carries_a_strict_content_security_policy(served) -> None:
    import httpx

    url, _ = served
    policy = httpx.get(url + "/").headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    allowed = {"'self'", "'none'", "'wasm-unsafe-eval'", "'unsafe-eval'", "blob:", "data:", "'unsafe-inline'"}
    for name, sources in directives.items():
        assert set(sources.split()) <= allowed, f"{name} allows {sources}"
    assert directives["default-src"] == "'self'" and directives["connect-src"].split()[0] == "'self'"
    assert "'unsafe-inline'" not in directives["script-src"]
