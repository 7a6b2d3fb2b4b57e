"""Builders of the discs patients really bring, written by the tools that write real ones.

DICOM files are pydicom's shipped test files (several modalities and transfer syntaxes),
changed only with DCMTK (dcmodify for new UIDs, dcmconv for files without preamble) or
pydicom; DICOMDIRs are written by DCMTK's dcmmkdir; JPEG and PNG by dcmj2pnm; programs are
real ones (pip's Windows launchers, this system's ELF binaries). Only a Mach-O header, which
no tool here writes, and a one-page PDF are spelled out byte by byte.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pip
import pydicom
from pydicom.data import get_testdata_file

# (pydicom test file, modality, transfer syntax): one study each on the general purpose CD.
GP_SOURCES = [
    ("CT_small.dcm", "CT", "1.2.840.10008.1.2.1"),  # explicit VR little endian
    ("MR_small_implicit.dcm", "MR", "1.2.840.10008.1.2"),  # implicit VR little endian
    ("JPEG2000.dcm", "NM", "1.2.840.10008.1.2.4.91"),  # JPEG 2000
    ("SC_rgb_jpeg_dcmtk.dcm", "OT", "1.2.840.10008.1.2.4.50"),  # JPEG baseline
    ("MR_small_RLE.dcm", "MR", "1.2.840.10008.1.2.5"),  # RLE; new series UIDs: same patient as MR
    ("image_dfl.dcm", "OT", "1.2.840.10008.1.2.1.99"),  # deflated explicit VR little endian
    ("examples_rgb_color.dcm", "US", "1.2.840.10008.1.2.1"),
    ("liver_expb_1frame.dcm", "SEG", "1.2.840.10008.1.2.2"),  # explicit VR big endian
]


def have_dcmtk() -> bool:
    return all(shutil.which(tool) for tool in ("dcmmkdir", "dcmodify", "dcmconv", "dcmj2pnm"))


def run(*command: str | Path, cwd: Path | None = None) -> None:
    subprocess.run([str(c) for c in command], cwd=cwd, check=True, capture_output=True)


def gp_file_id(number: int) -> str:
    """The n-th study's image as a STD-GEN-CD disc names it."""
    return f"DICOM/ST{number:06d}/SE000001/IM000001"


def place_gp_images(root: Path) -> list[Path]:
    """The GP_SOURCES copied under `root` as DICOM/ST00000n/SE000001/IM000001."""
    placed = []
    for number, (name, _, _) in enumerate(GP_SOURCES, start=1):
        target = root / gp_file_id(number)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(get_testdata_file(name), target)
        if name == "MR_small_RLE.dcm":  # shares its UIDs with MR_small_implicit.dcm
            run("dcmodify", "-nb", "-gse", "-gin", target)
        placed.append(target)
    return placed


def make_dicomdir(root: Path, folder: str = "DICOM") -> Path:
    """dcmmkdir's DICOMDIR at `root` for every file below root/folder (any transfer syntax)."""
    run("dcmmkdir", "-q", "-Pgp", "-Nxc", "+I", "+r", "+id", ".", "+D", "DICOMDIR", folder, cwd=root)
    return root / "DICOMDIR"


def general_purpose_cd(root: Path) -> Path:
    """A PS3.11 STD-GEN-CD style disc: DICOMDIR plus DICOM/ST.../SE.../IM... files."""
    root.mkdir(parents=True, exist_ok=True)
    place_gp_images(root)
    make_dicomdir(root)
    return root


@dataclass(frozen=True)
class Facts:
    """What a DICOM file's header says, read fully by pydicom: the test's expectation."""

    patient: str
    patient_id: str
    study_uid: str
    study_date: str
    study_description: str
    series_uid: str
    modality: str
    instance_uid: str


def facts(path: Path) -> Facts:
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    return Facts(
        str(ds.get("PatientName", "")),
        str(ds.get("PatientID", "")),
        str(ds.get("StudyInstanceUID", "")),
        str(ds.get("StudyDate", "")),
        str(ds.get("StudyDescription", "")),
        str(ds.get("SeriesInstanceUID", "")),
        str(ds.get("Modality", "")),
        str(ds.get("SOPInstanceUID", "")),
    )


def without_preamble(source: Path, target: Path, explicit: bool) -> Path:
    """The dataset alone, no preamble, no 'DICM', no meta: as old writers and some exports leave it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    run("dcmconv", "+te" if explicit else "+ti", "-F", source, target)
    return target


def windows_program() -> bytes:
    """A real Windows PE executable: pip's own console launcher."""
    return (Path(pip.__file__).parent / "_vendor" / "distlib" / "t64.exe").read_bytes()


def linux_program() -> bytes:
    """A real ELF executable of this system."""
    return Path(shutil.which("true") or "/bin/true").read_bytes()


def linux_library() -> bytes:
    """A real ELF shared library: the head of pyca/cryptography's extension module."""
    from cryptography.hazmat.bindings import _rust

    with open(_rust.__file__, "rb") as f:
        return f.read(64 * 1024)


def macos_program() -> bytes:
    """A 64-bit Mach-O executable header (MH_MAGIC_64, x86_64, MH_EXECUTE): no tool here writes one."""
    return struct.pack("<IiiIIIII", 0xFEEDFACF, 0x01000007, 3, 0x2, 0, 0, 0x00200085, 0) + bytes(4064)


def one_page_pdf() -> bytes:
    """A minimal valid PDF, as a scanned letter would start."""
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def picture(source: Path, target: Path, kind: str) -> Path:
    """A JPEG or PNG rendered from a DICOM image by DCMTK's dcmj2pnm."""
    target.parent.mkdir(parents=True, exist_ok=True)
    run("dcmj2pnm", "+oj" if kind == "jpeg" else "+on", source, target)
    return target


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.replace("\n", "\r\n").encode("cp1252")  # as Windows tools write them
    path.write_bytes(data)
    return path


AUTORUN = """[autorun]
open=VIEWER\\viewer.exe /dicomdir ..\\DICOMDIR
icon=VIEWER\\viewer.exe,0
label=Patient CD
"""

INDEX_HTM = """<html><head><title>Patient CD</title>
<link rel="stylesheet" href="IHE_PDI/style.css"></head>
<body><img src="logo.gif" alt="Hospital">
<p>This CD holds medical images. <a href="README.TXT">Read me</a>,
<a href="IHE_PDI/INDEX.HTM">the images</a>, <a href="https://example.org/">our site</a>.</p>
</body></html>
"""

README = """This CD contains medical images in the DICOM format (IHE PDI).
Start VIEWER\\viewer.exe to view them.
"""


def ihe_pdi_cd(root: Path) -> dict[str, str]:
    """A general purpose CD with IHE PDI's viewer, web content and README; returns the intended roles."""
    general_purpose_cd(root)
    roles = {"DICOMDIR": "index"}
    roles |= {gp_file_id(n): "dicom" for n in range(1, len(GP_SOURCES) + 1)}
    files: list[tuple[str, bytes | str, str]] = [
        ("AUTORUN.INF", AUTORUN, "disc-text"),
        ("README.TXT", README, "disc-text"),
        ("INDEX.HTM", INDEX_HTM, "disc-text"),
        ("logo.gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
         b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;", "disc-text"),  # linked from INDEX.HTM
        ("IHE_PDI/INDEX.HTM", "<html><body><a href='STUDY1.HTM'>CT</a></body></html>", "disc-text"),
        ("IHE_PDI/STUDY1.HTM", "<html><body>CT head</body></html>", "disc-text"),
        ("IHE_PDI/style.css", "body { font-family: sans-serif }", "disc-text"),
        ("VIEWER/viewer.exe", windows_program(), "viewer"),
        ("VIEWER/dcmdata.dll", windows_program(), "viewer"),
        ("VIEWER/viewer.ini", "[viewer]\nlanguage=en\n", "viewer"),
        ("VIEWER/help/manual.pdf", one_page_pdf(), "viewer"),
        ("VIEWER/help/readme.txt", "How to use the viewer.\n", "viewer"),
        ("VIEWER/Viewer.app/Contents/MacOS/Viewer", macos_program(), "viewer"),
        ("VIEWER/Viewer.app/Contents/Info.plist", "<?xml version='1.0'?><plist><dict/></plist>", "viewer"),
        ("VIEWER/Viewer.app/Contents/Resources/viewer.icns", b"icns\x00\x00\x00\x08", "viewer"),
        ("OsiriX Lite.app/Contents/MacOS/OsiriX Lite", macos_program(), "viewer"),
        ("OsiriX Lite.app/Contents/Info.plist", "<?xml version='1.0'?><plist><dict/></plist>", "viewer"),
        ("OsiriX Lite.app/Contents/Frameworks/libdcm.dylib", macos_program(), "viewer"),
        ("linux/viewer", linux_program(), "viewer"),
        ("linux/lib/libviewer.so", linux_library(), "viewer"),
        ("linux/share/splash.png", b"", "viewer"),
    ]
    for path, data, role in files:
        write(root / path, data)
        roles[path] = role
    return roles


def many_small_dicom_files(root: Path, count: int, per_series: int = 100) -> Path:
    """`count` small CT images without DICOMDIR: one pydicom-written file, its UIDs varied.

    Every UID is written at one fixed width so each copy is a valid file with the same layout.
    """
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 8
    ds.PixelData = bytes(8 * 8 * 2)
    # The last component is '1' and nine digits: fixed width, and no leading zero (PS3.5 9.1).
    instance, series = "1.2.826.0.1.3680043.10.1.9.1.1000000000", "1.2.826.0.1.3680043.10.1.9.2.1000000000"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = instance
    ds.SeriesInstanceUID = series
    template = root / "template.dcm"
    root.mkdir(parents=True, exist_ok=True)
    ds.save_as(template, enforce_file_format=True)
    data = template.read_bytes()
    template.unlink()
    for i in range(count):  # names as a DICOMDIR may reference them: 8 characters at most
        folder = root / "IMAGES" / f"S{i // per_series:04d}"
        if i % per_series == 0:
            folder.mkdir(parents=True)
        copy = data.replace(instance.encode(), f"{instance[:-9]}{i:09d}".encode())
        copy = copy.replace(series.encode(), f"{series[:-9]}{i // per_series:09d}".encode())
        (folder / f"I{i:07d}").write_bytes(copy)
    return root


if __name__ == "__main__":  # build one disc to look at: python tests/discs.py ihe-pdi OUT
    kind, out = sys.argv[1], Path(sys.argv[2])
    {"gp": general_purpose_cd, "ihe-pdi": ihe_pdi_cd}[kind](out)
