"""The scan in the browser's Python: Pyodide (CPython 3.14 on WebAssembly) under Node.js gives the
same summary, byte for byte, as CPython does on the same discs."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

import discs
from pcir_upload.page.disc.discovery import scan_disc
from support import FolderDisc

ROOT = Path(__file__).resolve().parent.parent
PYODIDE = ROOT / "node_modules" / "pyodide"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed"),
    pytest.mark.skipif(not (PYODIDE / "pyodide.mjs").exists(), reason="npm ci has not installed Pyodide"),
    pytest.mark.skipif(not discs.have_dcmtk(), reason="DCMTK is not installed (apt install dcmtk)"),
]


def in_pyodide(root: Path) -> tuple[str, dict]:
    """The summary from Pyodide, with this pydicom (pure Python, the version the page loads)."""
    package = Path(pydicom.__file__).parent
    dist_info = package.parent / f"pydicom-{pydicom.__version__}.dist-info"
    result = subprocess.run(
        ["node", str(ROOT / "tests" / "pyodide_scan.mjs"), str(PYODIDE), str(package), str(dist_info),
         str(ROOT / "py"), str(root)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    answer = json.loads(result.stdout)
    return answer["python"], answer["summary"]


def in_cpython(root: Path) -> dict:
    disc = FolderDisc(root)
    return asyncio.run(scan_disc(disc.listing, disc)).to_json()


def test_pyodide_gives_the_same_summary(tmp_path):
    """An IHE PDI disc, then the same without its DICOMDIR plus files only found by content."""
    root = tmp_path / "cd"
    discs.ihe_pdi_cd(root)
    python, summary = in_pyodide(root)
    assert python.startswith("3.14")
    assert summary == in_cpython(root)
    assert summary["kind"] == "dicom" and len(summary["excluded_by_default"]) == 14

    (root / "DICOMDIR").unlink()
    discs.without_preamble(Path(get_testdata_file("rtplan.dcm")), root / "EXPORT/PLAN", explicit=False)
    shutil.copyfile(get_testdata_file("examples_ybr_color.dcm"), root / "EXPORT/US")  # header past 8 KiB
    _, summary = in_pyodide(root)
    assert summary == in_cpython(root)
    assert summary["kind"] == "dicom-without-index"
    assert len(summary["patients"]) == 9
