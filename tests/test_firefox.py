"""A whole contribution in Firefox (Debian's firefox-esr, driven by puppeteer-core over
WebDriver BiDi; tests/firefox/contribute.mjs): a disc's folder tree (pydicom's DICOMDIR disc,
with non-DICOM files in subfolders of its own) through the folder input, walked by Firefox
itself; two documents; the page closed mid-upload and the contribution resumed from the
record a new page finds, paused while the rest is on its way and carried on; sealed with the
classical suite (Firefox's WebCrypto has no ML-KEM); and it all unpacks byte-identical."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pydicom.data
import pytest

from browsing import DIST, ROOT
from discs import one_page_pdf, picture
from faultproxy import FaultProxy
from pcir_upload.page.upload.contribution import CHUNK_SIZE, PARALLEL
from pcir_upload.repository.receive.ledger import entries
from pcir_upload.repository.receive.store import completed_uploads
from pcir_upload.repository.unpack import unpack_all
from support import files_of, receiver

FIREFOX = "/usr/bin/firefox-esr"
LINK = 3_000_000  # bytes/s while sending: slow enough to pause and close the page mid-upload


def a_disc(root: Path, dicomdirtests: Path) -> Path:
    """pydicom's DICOMDIR disc, with what discs also carry: a text file, and images that are
    not DICOM (and do not compress) in folders of their own, enough to make several chunks."""
    shutil.copytree(dicomdirtests, root)
    (root / "README.TXT").write_text("Patient disc\r\n")
    for i in range(12):
        folder = root / "EXPORT" / f"SCANS{i // 6}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"SCAN{i:04d}.RAW").write_bytes(os.urandom(3 * 1024 * 1024))
    return root


def test_a_whole_contribution_in_firefox(tmp_path: Path, keys, dicomdirtests: Path) -> None:
    if not Path(FIREFOX).exists():
        pytest.fail(f"{FIREFOX} is missing: install Debian's firefox-esr (./dev test does)")
    disc = a_disc(tmp_path / "disc", dicomdirtests)
    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "letter from Dr. Müller.pdf").write_bytes(one_page_pdf())
    picture(Path(pydicom.data.get_testdata_file("CT_small.dcm")), papers / "scan.png", "png")
    data, out = tmp_path / "data", tmp_path / "out"
    with receiver(data, DIST, keys.public) as upstream, FaultProxy(upstream) as proxy:
        driver = subprocess.Popen(
            ["node", str(ROOT / "tests" / "firefox" / "contribute.mjs"), proxy.url + "/", str(disc),
             *sorted(str(p) for p in papers.iterdir())],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert driver.stdin is not None and driver.stdout is not None
            steps: list[str] = []
            for line in driver.stdout:
                if not line.startswith("step "):
                    break
                steps.append(step := line.split()[1])
                proxy.throttle(LINK if step == "review" else None)
                if step == "closed":
                    proxy.requests.clear()
                driver.stdin.write("go\n")
                driver.stdin.flush()
            driver.wait(timeout=60)
        finally:
            driver.kill()
    assert driver.returncode == 0, driver.stderr.read() if driver.stderr else ""
    result = json.loads(line)
    assert result["errors"] == [], json.dumps(result)[:3000]
    assert steps == ["review", "closed", "review"]
    assert result["picker"] == "undefined" and result["inputShown"]
    # What Firefox gives the page to keep the resumption record in, and the record in it.
    assert result["storage"] == {"localStorage": "object", "opfs": "function"}
    assert f"{len(files_of(disc))} files" in result["discs"]
    assert "PDF" in result["documents"] and "PNG picture" in result["documents"]
    assert "Archibald Doe" in result["summary"] and "Documents: 2" in result["summary"]
    assert "Paused" in result["paused"] and result["stepWhilePaused"]
    assert result["record"]["chunks"] >= 1
    assert result["unfinishedShown"], "the new page did not offer to finish the contribution"
    assert "standard encryption" in result["protection"]
    assert result["recordAfter"] is None

    reports: list[str] = []
    assert unpack_all(data, keys.private, out, reports.append), reports
    assert len(reports) == 1 and result["receipt"] in reports[0] and "sealed with X25519" in reports[0]
    (contribution,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    manifest = json.loads((contribution / "manifest.json").read_text())
    assert manifest["contribution_id"] == result["record"]["contribution_id"], "a new contribution was started"
    assert files_of(contribution / "files" / "disc-1") == files_of(disc)
    assert files_of(contribution / "files" / "documents") == files_of(papers)
    assert [e.state for e in entries(data)].count("complete") == 1
    (upload,) = completed_uploads(data)
    chunks = -(-upload.length // CHUNK_SIZE)
    # The final creation is among them, and Pause aborts the creations in flight (each made again).
    creations = proxy.requests.count(("POST", "/files/"))
    assert creations <= chunks - result["record"]["chunks"] + 1 + PARALLEL, "confirmed chunks were sent again"
    print(f"\n{chunks} chunks, {result['record']['chunks']} confirmed before the page closed, "
          f"{creations} creations after; progress at close {result['progressAtClose']}")
