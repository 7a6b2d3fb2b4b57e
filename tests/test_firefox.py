"""A smoke test in Firefox (Debian's firefox-esr, driven by puppeteer-core over WebDriver
BiDi): the page starts, takes a disc through the folder input (Firefox has no folder picker),
seals it with the classical suite (Firefox's WebCrypto has no ML-KEM) and it unpacks
byte-identical."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pydicom.data
import pytest

from browsing import DIST, ROOT
from pcir_upload.repository.unpack import unpack_all
from support import files_of, receiver

FIREFOX = "/usr/bin/firefox-esr"


def test_a_contribution_in_firefox(tmp_path: Path, keys) -> None:
    if not Path(FIREFOX).exists():
        pytest.fail(f"{FIREFOX} is missing: install Debian's firefox-esr (./dev test does)")
    disc = tmp_path / "disc"
    disc.mkdir()
    for name in ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]:
        shutil.copy(pydicom.data.get_testdata_file(name), disc / name)
    (disc / "README.TXT").write_text("Patient disc\r\n")
    data, out = tmp_path / "data", tmp_path / "out"
    with receiver(data, DIST, keys.public) as url:
        run = subprocess.run(
            ["node", str(ROOT / "tests" / "firefox" / "contribute.mjs"), url + "/",
             *sorted(str(p) for p in disc.iterdir())],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["errors"] == [] and result["error"] == "", result
    assert result["picker"] == "undefined" and result["inputShown"]
    assert "4 files" in result["summary"]
    assert "standard encryption" in result["protection"]
    reports: list[str] = []
    assert unpack_all(data, keys.private, out, reports.append), reports
    assert result["receipt"] in reports[0] and "sealed with X25519" in reports[0]
    (contribution,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert files_of(contribution / "files" / "disc-1") == files_of(disc)
