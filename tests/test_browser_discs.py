"""Discs as patients have them, through the page in Chromium: an IHE PDI disc with its viewer,
a second disc, scanned documents, a disc without DICOMDIR dropped onto the page. Each ends in
an unpacked contribution that is byte-identical for every file chosen to be sent, with the
manifest telling the truth about the rest."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from browsing import DIST, agree, to_review
from discs import general_purpose_cd, ihe_pdi_cd, many_small_dicom_files, one_page_pdf, picture
from pcir_upload.repository.unpack import unpack_all
from support import files_of, receiver


@pytest.fixture
def site(tmp_path: Path, keys) -> Iterator[tuple[str, Path]]:
    with receiver(tmp_path / "data", DIST, keys.public) as url:
        yield url, tmp_path / "data"


def start(browser: Browser, url: str) -> Page:
    page = browser.new_page()
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    page.click("#start")
    agree(page)
    return page


def send(page: Page) -> None:
    page.click("#upload")
    page.wait_for_selector("#step-done:not([hidden]), #error:not([hidden])", timeout=120_000)
    assert page.is_hidden("#error"), page.inner_text("#error")


def unpacked(data: Path, keys, out: Path) -> tuple[Path, dict]:
    reports: list[str] = []
    assert unpack_all(data, keys.private, out, reports.append), reports
    (contribution,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    return contribution / "files", json.loads((contribution / "manifest.json").read_text())


@pytest.fixture(scope="module")
def pdi(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("pdi") / "PATIENT CD"
    return root, ihe_pdi_cd(root)


@pytest.mark.parametrize("viewer_too", [False, True], ids=["viewer-left-out", "everything"])
def test_two_discs_and_documents_in_one_contribution(browser, site, keys, pdi, tmp_path, viewer_too) -> None:
    url, data = site
    pdi_root, roles = pdi
    second = tmp_path / "second"
    general_purpose_cd(second)
    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "letter from Dr. Müller.pdf").write_bytes(one_page_pdf())
    picture(next(second.rglob("IM000001")), papers / "scan.png", "png")

    page = start(browser, url)
    page.set_input_files("#folder-input", pdi_root)
    page.wait_for_selector("#discs li:nth-child(1)", timeout=60_000)
    page.set_input_files("#folder-input", second)
    page.wait_for_selector("#discs li:nth-child(2)", timeout=60_000)
    page.set_input_files("#documents-input", sorted(papers.iterdir()))
    page.wait_for_selector("#documents li:nth-child(2)")
    assert "PDF" in page.inner_text("#documents") and "PNG picture" in page.inner_text("#documents")
    to_review(page, discs=2)

    review = page.inner_text("#summary")
    assert "Disc 1" in review and "Disc 2" in review and "Documents: 2" in review
    assert "viewer program" in review
    if viewer_too:
        page.check(".include-viewer[data-disc='0']")
    send(page)

    files, manifest = unpacked(data, keys, tmp_path / "out")
    viewer = {p for p, r in roles.items() if r == "viewer"}
    expected_first = {p: b for p, b in files_of(pdi_root).items() if viewer_too or p not in viewer}
    assert files_of(files / "disc-1") == expected_first
    assert files_of(files / "disc-2") == files_of(second)
    assert files_of(files / "documents") == files_of(papers)

    records = {r["path"]: r for r in manifest["files"]}
    assert records["documents/scan.png"]["role"] == "document"
    assert records["disc-1/DICOMDIR"]["role"] == "index"
    assert {r["role"] for p, r in records.items() if p.startswith("disc-1/VIEWER/")} == ({"viewer"} if viewer_too else set())
    not_sent = {r["path"] for r in manifest["not_sent"]}
    assert not_sent == (set() if viewer_too else {f"disc-1/{p}" for p in viewer})
    assert [d["viewer_sent"] for d in manifest["discs"]] == [viewer_too, False]
    assert manifest["discs"][0]["summary"]["kind"] == "dicom"
    page.close()


def test_a_dropped_folder_without_dicomdir_is_read_in_batches(browser, site, keys, tmp_path) -> None:
    url, data = site
    disc = tmp_path / "usb"
    many_small_dicom_files(disc, 250, per_series=100)
    assert not any(p.name.upper() == "DICOMDIR" for p in disc.rglob("*"))
    page = start(browser, url)
    # Real File objects for the dropped entries: from a file input the test adds to the page.
    page.evaluate("""() => document.body.append(Object.assign(document.createElement('input'),
                        { type: 'file', multiple: true, id: 'test-files', hidden: true }))""")
    page.set_input_files("#test-files", sorted(p for p in disc.rglob("*") if p.is_file()))
    page.evaluate("""() => {
        const files = Array.from(document.getElementById('test-files').files);
        const fileEntry = (file) => ({ isFile: true, isDirectory: false, name: file.name, file: (ok) => ok(file) });
        const folder = { isFile: false, isDirectory: true, name: 'USB', createReader() {
            let next = 0;  // as Chromium does: at most 100 entries per readEntries() call
            return { readEntries(ok) {
                const batch = files.slice(next, next + 100).map(fileEntry);
                next += batch.length;
                setTimeout(() => ok(batch));
            } };
        } };
        const transfer = new DataTransfer();
        transfer.items.add(files[0]);
        DataTransferItem.prototype.webkitGetAsEntry = () => folder;  // what a dropped folder gives
        document.getElementById('drop-zone').dispatchEvent(
            new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""")
    page.wait_for_selector("#discs li", timeout=60_000)
    assert "250 files" in page.inner_text("#discs"), "the folder was not read to its end"
    to_review(page)
    review = page.inner_text("#summary")
    assert "Images of" in review, review  # the patient, read from the files' own headers
    send(page)
    files, manifest = unpacked(data, keys, tmp_path / "out")
    # The stand-in folder is flat: every file by its name, byte for byte.
    assert files_of(files / "disc-1") == {p.name: p.read_bytes() for p in disc.rglob("*") if p.is_file()}
    assert manifest["discs"][0]["summary"]["kind"] == "dicom-without-index"
    page.close()


def lowercase_mount(root: Path) -> None:
    general_purpose_cd(root / "src")
    for path in sorted((root / "src").rglob("*"), key=lambda p: -len(p.parts)):
        path.rename(path.with_name(path.name.lower()))
    for path in (root / "src").iterdir():
        path.rename(root / path.name)
    (root / "src").rmdir()


def truncated_index(root: Path) -> None:
    general_purpose_cd(root)
    index = root / "DICOMDIR"
    index.write_bytes(index.read_bytes()[:300])


def not_dicom(root: Path) -> None:
    picture_source = general_purpose_cd(root / "tmp")
    picture(next(picture_source.rglob("IM000001")), root / "photo.jpg", "jpeg")
    (root / "movie.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(500))
    (root / "Report 2024 (final) – Ärztin.pdf").write_bytes(one_page_pdf())
    shutil.rmtree(root / "tmp")


def odd_names(root: Path) -> None:
    deep = root / "a b" / "ünïcödé" / ("x" * 60) / ("y" * 60) / "z"
    deep.mkdir(parents=True)
    (deep / "empty file").write_bytes(b"")
    (deep / "名前.txt").write_text("note")
    general_purpose_cd(root / "CD")


@pytest.mark.parametrize("build,kind", [
    (lowercase_mount, "dicom"),
    (truncated_index, "dicom-without-index"),
    (not_dicom, "not-dicom"),
    (odd_names, "dicom"),
], ids=["lowercase-mount", "truncated-dicomdir", "not-dicom", "odd-names-deep-paths-empty-files"])
def test_every_kind_of_disc_arrives(browser, site, keys, tmp_path, build, kind) -> None:
    url, data = site
    disc = tmp_path / "disc"
    disc.mkdir()
    build(disc)
    page = start(browser, url)
    page.set_input_files("#folder-input", disc)
    to_review(page)
    send(page)
    files, manifest = unpacked(data, keys, tmp_path / "out")
    assert files_of(files / "disc-1") == files_of(disc)
    assert manifest["discs"][0]["summary"]["kind"] == kind
    if kind == "not-dicom":
        assert "will be sent as it is" in " ".join(manifest["discs"][0]["summary"]["notes"])
    page.close()
