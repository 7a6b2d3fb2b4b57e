"""The page in a real Chromium (Debian's), talking to the real receiver on 127.0.0.1.

A disc is contributed through each way of choosing a folder, then unpacked with the private
key and compared byte for byte. Every request the page makes is recorded: all of them must go
to the page's own origin, and none may carry a readable byte of the disc.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from pcir_upload.page.seal.envelope import SUITE_HYBRID, SUITE_X25519, ChunkHeader
from pcir_upload.repository.unpack import OPENERS, unpack_all
from browsing import DIST, Recorder, agree, assert_nothing_held, to_review, worker_holds
from support import files_of, receiver

PATIENT_NAME = b"Doe^Archibald"  # in the headers of pydicom's test disc
VECTOR = (Path(__file__).parent / "vectors" / "rfc9180-x25519-sha256-aes256gcm-base.json").read_text()


@pytest.fixture
def site(tmp_path: Path, keys) -> Iterator[tuple[str, Path]]:
    """The built page and the receiver, on a free port: (base URL, data folder)."""
    data = tmp_path / "data"
    with receiver(data, DIST, keys.public) as url:
        yield url, data


def open_page(browser: Browser, url: str) -> tuple[Page, Recorder]:
    context = browser.new_context()
    page = context.new_page()
    recorder = Recorder(page)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    page.click("#start")
    agree(page)
    assert not errors, errors
    return page, recorder


def finish_upload(page: Page, post_quantum: bool = True) -> str:
    to_review(page)
    assert "Archibald Doe" in page.inner_text("#summary")
    page.click("#upload")
    page.wait_for_selector("#step-done:not([hidden]), #error:not([hidden])", timeout=120_000)
    assert page.is_hidden("#error"), page.inner_text("#error")
    # One plain line tells the patient which protection the contribution got.
    protection = page.inner_text("#done-protection")
    assert ("post-quantum protection:" in protection) == post_quantum, protection
    return page.inner_text("#receipt-code")


def check_arrival(data: Path, keys, tmp_path: Path, code: str, disc: Path, post_quantum: bool = True) -> dict:
    out = tmp_path / "out"
    reports: list[str] = []
    assert unpack_all(data, keys.private, out, reports.append), reports
    assert len(reports) == 1 and code in reports[0]
    sealed_with = "ML-KEM-768+X25519 (post-quantum)" if post_quantum else "X25519"
    assert f"sealed with {sealed_with}" in reports[0]
    (contribution,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert files_of(contribution / "files" / "disc-1") == files_of(disc)
    return json.loads((contribution / "manifest.json").read_text())


def check_traffic(recorder: Recorder, url: str) -> None:
    assert recorder.origins() == {url}, "the page loaded something from another origin"
    uploads = [r for r in recorder.requests
               if "/files/" in r.url and r.method in ("POST", "PATCH") and r.post_data_buffer]
    assert uploads, "no upload requests were seen"
    for request in recorder.requests:
        assert PATIENT_NAME.decode() not in request.url
        assert all(PATIENT_NAME.decode() not in v for v in request.headers.values())
    for body in recorder.bodies():
        assert PATIENT_NAME not in body and b"DICM" not in body and b"PK\x03\x04" not in body


def test_contribution_through_webkitdirectory(browser, site, keys, dicomdirtests, tmp_path) -> None:
    url, data = site
    page, recorder = open_page(browser, url)
    # Firefox's and Safari's way: the <input webkitdirectory> the page offers.
    page.set_input_files("#folder-input", dicomdirtests)
    code = finish_upload(page)
    manifest = check_arrival(data, keys, tmp_path, code, dicomdirtests)
    assert manifest["terms"]["version"] == page.get_attribute("#terms", "data-version")
    check_traffic(recorder, url)
    assert_nothing_held(page)  # and the packer workers did the packing
    page.context.close()


def test_without_packer_workers_the_page_packs_in_its_own_worker(browser, keys, dicomdirtests, tmp_path) -> None:
    """A page that cannot start the packers (their script fails to load, say) still sends the
    disc, only more slowly."""
    site_copy = tmp_path / "site"
    shutil.copytree(DIST, site_copy, copy_function=os.link)
    for packer in site_copy.glob("assets/*/packer.mjs*"):
        packer.unlink()
    data = tmp_path / "data"
    with receiver(data, site_copy, keys.public) as url:
        page, _ = open_page(browser, url)
        page.set_input_files("#folder-input", dicomdirtests)
        code = finish_upload(page)
        check_arrival(data, keys, tmp_path, code, dicomdirtests)
        assert worker_holds(page)["packers"] == []
        page.context.close()


def test_without_ml_kem_the_classical_suite_is_used(browser, site, keys, dicomdirtests, tmp_path) -> None:
    url, data = site
    page, _ = open_page(browser, url)
    # As in browsers whose WebCrypto has no ML-KEM: take it away from the page's worker.
    assert page.workers, "the Python worker is not running"
    for worker in page.workers:
        worker.evaluate("delete SubtleCrypto.prototype.encapsulateBits")
    page.set_input_files("#folder-input", dicomdirtests)
    code = finish_upload(page, post_quantum=False)
    check_arrival(data, keys, tmp_path, code, dicomdirtests, post_quantum=False)
    page.context.close()


def test_contribution_through_a_directory_handle(browser, site, keys, dicomdirtests, tmp_path) -> None:
    url, data = site
    page, recorder = open_page(browser, url)
    # Chrome's and Edge's way: showDirectoryPicker(). An Origin Private File System folder,
    # the same FileSystemDirectoryHandle type, stands in for the patient's choice.
    files = {path: base64.b64encode(content).decode() for path, content in files_of(dicomdirtests).items()}
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
    page.click("#choose-folder")
    code = finish_upload(page)
    manifest = check_arrival(data, keys, tmp_path, code, dicomdirtests)
    # The same listing as through the input: every path, relative to the chosen folder.
    assert sorted(r["path"] for r in manifest["files"]) == sorted(f"disc-1/{p}" for p in files_of(dicomdirtests))
    check_traffic(recorder, url)
    page.context.close()


# The quickest new user there can be: Start and every point of the terms while Python is
# still loading, and the disc chosen (the picker; an Origin Private File System folder stands
# in) in the same moment the step appears.
QUICKEST_USER = """
window.addEventListener('DOMContentLoaded', () => {
  const step = document.getElementById('step-choose');
  new MutationObserver(() => {
    if (!step.hidden && !window.pcirChosen) {
      window.pcirChosen = true;
      document.getElementById('choose-folder').click();
    }
  }).observe(step, { attributes: true, attributeFilter: ['hidden'] });
});
window.showDirectoryPicker = async () => {
  const root = await (await navigator.storage.getDirectory()).getDirectoryHandle('disc', { create: true });
  for (const name of ['README.TXT', 'IMAGE1', 'IMAGE2']) {
    const writable = await (await root.getFileHandle(name, { create: true })).createWritable();
    await writable.write(new TextEncoder().encode(name.repeat(1000)));
    await writable.close();
  }
  return root;
};
"""


def test_a_folder_chosen_while_python_is_still_starting_is_read_at_the_first_try(browser, site) -> None:
    """The page posts the listing only once the worker listens for it: posted earlier (agreed
    before Python was ready, so the worker opened its end of the channel only after
    answering), it reached nobody and the page said the folder could not be read."""
    url, _ = site
    for _ in range(3):  # fresh profiles: Python starts from nothing each time
        context = browser.new_context()
        context.add_init_script(QUICKEST_USER)
        page = context.new_page()
        page.goto(url + "/")
        assert page.evaluate("document.body.dataset.ready") is None, "Python was ready too soon to tell"
        page.evaluate("""() => {
            document.getElementById('start').click();
            for (const box of document.querySelectorAll('input[name=confirm]')) box.checked = true;
            document.getElementById('agree-continue').click();
        }""")
        page.wait_for_selector("#discs li, #error:not([hidden])", timeout=90_000)
        assert page.is_hidden("#error"), page.inner_text("#error")
        assert "3 files" in page.inner_text("#discs")
        context.close()


def run_python_in_page(page: Page, code: str) -> str:
    """Run `code` in a bare Pyodide on the page's origin, with our wheel; returns `result`."""
    wheel = next((DIST / "wheels").glob("pcir_upload-*.whl")).name
    return page.evaluate(
        """async ([wheel, code]) => {
            const { loadPyodide } = await import('/pyodide/pyodide.mjs');
            const pyodide = await loadPyodide({ indexURL: location.origin + '/pyodide/' });
            await pyodide.loadPackage(location.origin + '/wheels/' + wheel);
            await pyodide.runPythonAsync(code);
            return pyodide.globals.get('result');
        }""",
        [wheel, code],
    )


WEBCRYPTO_PRELUDE = """
import base64, json
import js
from pcir_upload.page.seal import hpke
from pcir_upload.page.browser._js import js_object
from pcir_upload.page.browser.webcrypto import WebCrypto
"""


def test_webcrypto_seal_matches_the_rfc_9180_vector(browser, site) -> None:
    url, _ = site
    page = browser.new_page()
    page.goto(url + "/")
    code = WEBCRYPTO_PRELUDE + f"""
V = json.loads({VECTOR!r})
def b64(h):
    return base64.urlsafe_b64encode(bytes.fromhex(h)).rstrip(b"=").decode()

class FixedEphemeral(WebCrypto):
    async def generate_x25519(self):
        jwk = {{"kty": "OKP", "crv": "X25519", "d": b64(V["skEm"]), "x": b64(V["pkEm"])}}
        key = await js.crypto.subtle.importKey(
            "jwk", js_object(jwk), js_object({{"name": "X25519"}}), False, js_object(["deriveBits"]))
        return key, bytes.fromhex(V["pkEm"])

first = V["encryptions"][0]
sealed = await hpke.seal(FixedEphemeral(), hpke.KEM_X25519_HKDF_SHA256, bytes.fromhex(V["pkRm"]), bytes.fromhex(V["info"]),
                         bytes.fromhex(first["pt"]), bytes.fromhex(first["aad"]))
result = sealed.hex()
"""
    vector = json.loads(VECTOR)
    assert run_python_in_page(page, code) == vector["enc"] + vector["encryptions"][0]["ct"]
    page.close()


@pytest.mark.parametrize("suite", [SUITE_HYBRID, SUITE_X25519], ids=["hybrid", "classical"])
def test_chunks_sealed_by_webcrypto_open_with_pyca(browser, site, keys, suite) -> None:
    url, _ = site
    page = browser.new_page()
    page.goto(url + "/")
    public_key = keys.public.hybrid if suite == SUITE_HYBRID else keys.public.classical
    code = WEBCRYPTO_PRELUDE + f"""
from pcir_upload.page.seal.envelope import Recipient, Sealer
sealer = Sealer(WebCrypto(), Recipient({suite!r}, bytes.fromhex({public_key.hex()!r})), bytes(range(16)))
chunks = [await sealer.seal(bytes([i]) * 100_000, final=(i == 2)) for i in range(3)]
result = json.dumps([c.hex() for c in chunks])
"""
    chunks = [bytes.fromhex(c) for c in json.loads(run_python_in_page(page, code))]
    for i, chunk in enumerate(chunks):
        header, message = ChunkHeader.parse(chunk[:40]), chunk[40:]
        assert header.suite == suite and header.index == i
        key = keys.private.hybrid if suite == SUITE_HYBRID else keys.private.classical
        assert OPENERS[suite].decrypt(message, key, info=chunk[:40]) == bytes([i]) * 100_000
    page.close()


def test_a_file_gone_from_the_disc_is_recorded_and_the_rest_arrives(browser, site, keys, disc, tmp_path) -> None:
    url, data = site
    page, _ = open_page(browser, url)
    page.set_input_files("#folder-input", disc)
    to_review(page)
    # Between choosing and sending, one file disappears (a disc taken out, a scratch).
    lost = "77654033/CR1/6154"
    (disc / lost).unlink()
    page.click("#upload")
    page.wait_for_selector("#step-done:not([hidden]), #error:not([hidden])", timeout=120_000)
    assert page.is_hidden("#error"), page.inner_text("#error")

    out = tmp_path / "out"
    reports: list[str] = []
    assert unpack_all(data, keys.private, out, reports.append), reports
    assert "1 not fully readable" in reports[0]
    (contribution,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    manifest = json.loads((contribution / "manifest.json").read_text())
    (record,) = [r for r in manifest["files"] if "error" in r]
    assert record["path"] == f"disc-1/{lost}" and record["size"] == 0 and record["expected_size"] > 0
    assert record["error"] == "This file is no longer there. Was the disc taken out?"
    arrived = files_of(contribution / "files" / "disc-1")
    assert arrived.pop(lost) == b""
    assert arrived == files_of(disc)
    page.context.close()
