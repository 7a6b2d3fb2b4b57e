"""A whole contribution in WebKitGTK 2.50, Safari's engine (Debian's, under an Xvfb of the test's
own): a disc tree with subfolders, a DICOMDIR, other pydicom files, large images and a text
file, plus two documents; the classical suite (no ML-KEM in WebKit's WebCrypto), said so;
the page closed while sending and the contribution carried on after coming back (the
resumption record in localStorage: WebKitGTK has no navigator.storage); byte-identical.

How the folder gets in: the page's <input webkitdirectory> opens WebKit's file chooser
request, which tests/webkitview.py answers with the folder as a GTK browser does when its
dialog closes; WebKit walks the folder itself into the FileList. Not exercised: the GTK
dialog's own clicks. Dropping a folder: a real X drag session from a GTK drag source onto the
page (tests/dragsource.py, xdotool) reaches the page, but WebKitGTK 2.50 hands pages no
files from any drop (only text/uri-list as a string), so the page's webkitGetAsEntry walk
cannot be exercised in WebKitGTK; the test checks the page says to use the button instead.
(Safari on macOS does hand over the folder; Chromium's tests walk a dropped tree.)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import pydicom.data
import pytest

import webkit
from browsing import DIST, ROOT
from faultproxy import FaultProxy
from pcir_upload.repository.unpack import unpack_all
from support import files_of, receiver

SHOTS = Path(os.environ.get("PCIR_SCREENSHOTS") or ROOT / "tests" / "artifacts" / "screenshots")


def disc_tree(root: Path, dicomdirtests: Path) -> Path:
    """pydicom's DICOMDIR disc, more of its files in a folder of their own, images that do not
    compress (a package of several chunks, so that closing the page leaves some sent) and
    a README."""
    shutil.copytree(dicomdirtests, root)
    extra = root / "EXTRA" / "SERIES1"
    extra.mkdir(parents=True)
    for name in ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm"]:
        shutil.copy(pydicom.data.get_testdata_file(name), extra / name)
    rng = random.Random(13)
    for i in range(3):
        (root / "EXTRA" / f"RAW{i}.IMG").write_bytes(rng.randbytes(3 * 1024 * 1024))
    (root / "README.TXT").write_text("Patient disc\r\nOpen VIEWER.EXE\r\n")
    return root


def documents(folder: Path) -> list[Path]:
    folder.mkdir()
    letter = folder / "letter.pdf"
    letter.write_bytes(b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
    photo = folder / "report.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9")
    return [letter, photo]


def text(page: webkit.View, css: str) -> str:
    return str(page.run(f"return document.querySelector({json.dumps(css)}).innerText"))


def shown(page: webkit.View, css: str) -> bool:
    return bool(page.run(f"return !document.querySelector({json.dumps(css)}).hidden"))


def choose(page: webkit.View, disc: Path, docs: list[Path], discs: int = 1) -> None:
    """The disc through the folder input, the documents through theirs: WebKit's chooser."""
    page.choose(disc)
    page.click("#folder-input")
    page.wait(f"#discs li:nth-child({discs}), #error:not([hidden])")
    assert not shown(page, "#error"), text(page, "#error")
    page.choose(*docs)
    page.click("#documents-input")
    page.wait(f"#documents li:nth-child({len(docs)}), #error:not([hidden])")
    assert not shown(page, "#error"), text(page, "#error")


def test_a_whole_contribution_in_webkit(tmp_path: Path, keys, dicomdirtests: Path) -> None:
    if problem := webkit.missing():
        pytest.fail(problem)
    disc = disc_tree(tmp_path / "disc", dicomdirtests)
    docs = documents(tmp_path / "documents")
    data, out = tmp_path / "data", tmp_path / "out"
    with (receiver(data, DIST, keys.public) as url, FaultProxy(url) as proxy,
          webkit.xvfb() as display, webkit.view(display, tmp_path / "webkit") as page):
        started = time.monotonic()
        page.load(proxy.url + "/")
        page.wait("body[data-ready=true], #error:not([hidden])", 120)
        assert not shown(page, "#error"), text(page, "#error")
        print(f"\nPython ready in WebKit in {time.monotonic() - started:.1f} s")
        # What the page copes without here (feature tests, not the user agent).
        engine = page.run("return {sab: typeof SharedArrayBuffer, storage: typeof navigator.storage,"
                          " picker: typeof showDirectoryPicker, isolated: crossOriginIsolated}")
        assert engine == {"sab": "undefined", "storage": "undefined", "picker": "undefined",
                          "isolated": True}, engine
        assert shown(page, "#input-row") and not shown(page, "#picker-row")
        page.screenshot(SHOTS / "webkit-1-welcome.png")
        page.click("#start")
        page.screenshot(SHOTS / "webkit-2-terms.png")
        page.run("for (const box of document.querySelectorAll('input[name=confirm]')) box.click()")
        page.click("#agree-continue")
        page.wait("#step-choose:not([hidden])")

        page.run("window.over = false; window.dropped = null;"
                 " for (const type of ['dragenter', 'dragover'])"
                 "   document.addEventListener(type, () => { window.over = true; }, true);"
                 " document.addEventListener('drop', (e) =>"
                 " { window.dropped = Array.from(e.dataTransfer.types); }, true)")
        webkit.drag_folder(display, disc, (500, 400), lambda: page.run("return window.over"))
        page.wait("#choose-status:not(:empty)", 10)
        assert page.run("return window.dropped") == ["text/uri-list", "text/html"]
        assert "did not pass on what was dropped" in text(page, "#choose-status")

        choose(page, disc, docs)
        page.screenshot(SHOTS / "webkit-3-choose.png")
        page.click("#choose-continue")
        page.wait("#step-review:not([hidden])")
        summary = text(page, "#summary")
        assert f"{len(files_of(disc))} files" in summary and "letter.pdf" in summary, summary
        page.screenshot(SHOTS / "webkit-4-review.png")

        proxy.throttle(3_000_000)
        page.click("#upload")
        deadline = time.monotonic() + 60
        while not (record := json.loads(page.run("return localStorage.getItem('pcir-resume')") or "null")):
            assert time.monotonic() < deadline, page.run(
                "return [Object.keys(localStorage), document.getElementById('progress-text').innerText,"
                " document.getElementById('error-detail').textContent, document.getElementById('upload-notice').innerText]")
            time.sleep(0.1)
        page.screenshot(SHOTS / "webkit-5-sending.png")
        page.load("about:blank")  # the patient closes the page
        proxy.clear()

        page.load(proxy.url + "/")
        page.wait("body[data-ready=true], #error:not([hidden])", 120)
        assert shown(page, "#welcome-unfinished")
        page.click("#start")  # agreed a moment ago: straight to the disc
        page.wait("#step-choose:not([hidden])")
        choose(page, disc, docs)
        page.click("#choose-continue")
        page.wait("#step-review:not([hidden])")
        page.click("#upload")
        page.wait("#step-done:not([hidden]), #error:not([hidden])", 120)
        assert not shown(page, "#error"), text(page, "#error")
        page.screenshot(SHOTS / "webkit-6-done.png")
        receipt = text(page, "#receipt-code")
        assert "standard encryption" in text(page, "#done-protection")
        assert page.run("return localStorage.getItem('pcir-resume')") is None
        held = json.loads(page.run(
            "return await document.querySelector('script[type=\"py\"][worker]').xworker.sync.memory_report()"))
        assert held["disc_in_hand"] is False and held["large_buffers"] == 0, held

    reports: list[str] = []
    assert unpack_all(data, keys.private, out, reports.append), reports
    assert len(reports) == 1 and receipt in reports[0] and "sealed with X25519" in reports[0], reports
    (contribution,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    manifest = json.loads((contribution / "manifest.json").read_text())
    assert manifest["contribution_id"] == record["contribution_id"], "a new contribution was started"
    assert files_of(contribution / "files" / "disc-1") == files_of(disc)
    assert files_of(contribution / "files" / "documents") == files_of(docs[0].parent)
    assert len(held["packers"]) >= 1, "packed without packer workers"
