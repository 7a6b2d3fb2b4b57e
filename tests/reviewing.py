"""A contribution for the review tests, made by the real `deidentify`: an ultrasound-like image
with the patient's name and id burned in, a CT slice its header clears, a scanned letter as a
PDF and a photo, as `pcir-upload unpack` writes them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from PIL import Image, ImageDraw, ImageFont
from pydicom.uid import generate_uid

import burnedin
from deidentifying import contribution, deidentify

CID = "20261201T094107Z-review-a1b2c3"
IDENTITY = {"PatientName": "DOE^JOHN", "PatientID": "PID4471902", "IssuerOfPatientID": "GLIMMERWOOD",
            "PatientBirthDate": "19510829", "PatientSex": "M"}
# A mark OCR does not read (no letters) that the operator blanks with a box of their own.
MARK = (250, 200, 30, 20)  # x, y, w, h in the ultrasound's pixels


def ultrasound(study: str) -> bytes:
    frame = burnedin.canvas(240, 320, seed=3)
    burnedin.plant(frame, "DOE^JOHN", at=(8, 6), size=16)
    burnedin.plant(frame, "PID4471902", at=(8, 28), size=16)
    x, y, w, h = MARK
    frame[y:y + h, x:x + w] = 230  # a bright tag, say a marker the machine drew
    ds = burnedin.dataset(frame)
    for keyword, value in IDENTITY.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "20190704", "113307", "S1", 2, 1
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ct(study: str) -> bytes:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    for keyword, value in IDENTITY.items():
        setattr(ds, keyword, value)
    for keyword in ("OtherPatientIDs",):
        if keyword in ds:
            delattr(ds, keyword)
    ds.StudyInstanceUID = study
    ds.ImageType, ds.BurnedInAnnotation = ["ORIGINAL", "PRIMARY", "AXIAL"], "NO"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def letter() -> bytes:
    """A one-page scanned letter as a real PDF (pillow's PDF writer)."""
    page = Image.new("RGB", (620, 877), "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(str(burnedin.FONTS["DejaVu Sans"]), 22)
    for line, text in enumerate(["Glimmerwood Infirmary", "Discharge letter", "Patient: John Doe, born 29.08.1951",
                                 "Ultrasound of the abdomen, 4 July 2019"]):
        draw.text((48, 60 + 40 * line), text, fill="black", font=font)
    buffer = io.BytesIO()
    page.save(buffer, format="PDF", resolution=72)
    return buffer.getvalue()


def photo() -> bytes:
    picture = Image.fromarray(np.full((120, 160, 3), (180, 140, 120), dtype=np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG")
    return buffer.getvalue()


def reviewed_contribution(root: Path, cid: str = CID) -> Path:
    """unpacked/ with the contribution, deidentified into deidentified/; returns the latter."""
    study = generate_uid()
    contribution(root / "unpacked", cid, {
        "DISC/US0001": (ultrasound(study), "dicom"),
        "DISC/CT0001": (ct(study), "dicom"),
        "letter.pdf": (letter(), "document"),
        "photo.jpg": (photo(), "document"),
    })
    out = root / "deidentified"
    result = deidentify(root / "unpacked", out, root / "secret")
    assert result.returncode == 0, result.stdout + result.stderr
    return out
