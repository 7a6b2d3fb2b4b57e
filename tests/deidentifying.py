"""Helpers of the de-identification tests: contributions laid out as `pcir-upload unpack`
writes them, identifying values planted in every class of element, and the checks."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

CONTRIBUTOR = "c0ffee" * 5 + "00"


def contribution(unpacked: Path, cid: str, files: dict[str, tuple[bytes | Path, str]],
                 contributor: str = CONTRIBUTOR) -> Path:
    """UNPACKED/<cid>/files/<path> and manifest.json; `files` maps a path to (content, role)."""
    root = unpacked / cid
    records = []
    for path, (content, role) in files.items():
        target = root / "files" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
        with open(target, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        records.append({"path": path, "entry": f"files/{path}", "size": target.stat().st_size,
                        "sha256": digest, "role": role})
    manifest = {"format": "pcir-contribution", "version": 1, "contribution_id": cid,
                "created": "2026-12-01T09:41:07Z", "contributor_id": contributor, "files": records}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def deidentify(unpacked: Path, out: Path, secret: Path) -> subprocess.CompletedProcess[str]:
    """`pcir-upload deidentify` as the operator runs it, in its own process."""
    return subprocess.run([sys.executable, "-m", "pcir_upload.cli", "deidentify", "--in", str(unpacked), "--out", str(out),
                           "--secret", str(secret)], capture_output=True, text=True,
                          env=_env(), check=False)


def _env() -> dict[str, str]:
    import os

    here = Path(__file__).resolve().parent
    paths = [str(here), str(here.parent / "py"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


# Identifying values, each unlike anything a DICOM file or pixel data holds by chance.
PLANTED = {
    "PatientName": "Zorbatron^Quilliam^Ambrose",
    "PatientID": "PID9911447",
    "IssuerOfPatientID": "GLIMMERWOOD-MRN",
    "PatientBirthDate": "19470311",
    "OtherPatientNames": "Quilliamson^Zed",
    "PatientBirthName": "Obvoltrix^Quilliam",
    "PatientMotherBirthName": "Velmadine^Obvoltrix",
    "PatientAddress": "17 Quagmire Lane Wexbury",
    "PatientTelephoneNumbers": "+44 7700 900461",
    "MilitaryRank": "Wingcommander Fleck",
    "Occupation": "Keeper Skerrow",
    "PatientComments": "Prefers to be called Ambrose",
    "AdditionalPatientHistory": "Brother Quintus treated 2011",
    "AccessionNumber": "ACC7731902",
    "StudyID": "STU88123",
    "StudyDate": "20190704",
    "SeriesDate": "20190704",
    "AcquisitionDate": "20190704",
    "ContentDate": "20190704",
    "StudyTime": "113307.25",
    "InstitutionName": "Glimmerwood Infirmary",
    "InstitutionAddress": "1 Infirmary Road Wexbury",
    "InstitutionalDepartmentName": "Quimby Radiology Wing",
    "ReferringPhysicianName": "Hargreave^Tibor",
    "PerformingPhysicianName": "Pellucidar^Ines",
    "NameOfPhysiciansReadingStudy": "Stroganov^Wilhelmina",
    "OperatorsName": "Pendleworth^Odalys",
    "StationName": "STNQX42",
    "DeviceSerialNumber": "SN77Q21Z",
    "StudyDescription": "Zorbatron follow up",
    "ImageComments": "Called Quilliam at home about this",
    "RequestingPhysician": "Abernathy^Colm",
}


def plant(ds: Dataset) -> Dataset:
    """Every class of Table E.1-1 (X, Z, D, U, X/Z, X/D, X/Z/D, C) at the top level, nested
    two sequences deep, in a private block and in a private sequence."""
    for keyword, value in PLANTED.items():
        setattr(ds, keyword, value)
    ds.PatientSex, ds.PatientSize, ds.PatientWeight = "F", 1.62, 58.5
    if "PatientAge" in ds:
        del ds.PatientAge  # computed from the dates: 072Y
    ds.SeriesDescription = "AXIAL T1 POST CONTRAST"  # on the safe list: kept
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BurnedInAnnotation = "NO"
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = "NESTED4471", "OTHERHOSP"
    ds.OtherPatientIDsSequence = Sequence([other])
    request = Dataset()
    request.RequestedProcedureID = "REQ55190"
    request.ScheduledProcedureStepID = "SPS66201"
    inner = Dataset()
    inner.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    inner.ReferencedSOPInstanceUID = "1.2.3.999.424242"
    inner.InstitutionName = "Deepnest Clinic Farrowby"
    request.ReferencedStudySequence = Sequence([inner])
    ds.RequestAttributesSequence = Sequence([request])
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "GLW01", "99LOCAL", "Glimmerwood Infirmary West"
    ds.InstitutionCodeSequence = Sequence([code])
    block = ds.private_block(0x0009, "ACME IMAGING 1.0", create=True)
    block.add_new(0x01, "LO", "PRIVQuilliam")
    private_item = Dataset()
    private_item.PatientName = "Privatus^Quilliam"
    block.add_new(0x02, "SQ", Sequence([private_item]))
    # An overlay with its description, and a retired curve.
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000022, "LO", "OVERLAYQuilliam")
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\xff" * 8)
    ds.add_new(0x50000022, "LO", "CURVEQuilliam")
    return ds


def planted_strings() -> list[str]:
    values = [v for k, v in PLANTED.items()]
    values += ["NESTED4471", "OTHERHOSP", "REQ55190", "SPS66201", "Deepnest Clinic", "Glimmerwood",
               "GLW01", "PRIVQuilliam", "Privatus", "OVERLAYQuilliam", "CURVEQuilliam", "Quilliam",
               "Zorbatron", "1.2.3.999.424242", "ACME IMAGING"]
    return values


def leaks(folder: Path, values: list[str]) -> list[tuple[str, str]]:
    """(file, value) for every planted value found in any file's bytes, in the encodings a
    DICOM writer might use and in either case."""
    found = []
    needles = {}
    for value in values:
        for variant in {value, value.upper(), value.lower(), value.replace("^", " ")}:
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                needles[variant.encode(encoding)] = value
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [(str(path), value) for needle, value in needles.items() if needle in data]
    return found


def dciodvfy_errors(path: Path) -> set[str]:
    """dciodvfy's errors, with UIDs blanked so that an original and its copy compare."""
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    return {re.sub(r"\b\d+(\.\d+)+\b", "<uid>", line.strip()) for line in lines if line.startswith("Error")}


def read(path: Path) -> Dataset:
    return pydicom.dcmread(path, force=True)
