"""Whose documents: the text OCR reads on a document's pages against the patient the
contribution's images name ("same patient", "different", "could not tell").

The images in review/ are cleaned, so the identity to compare with comes from the originals
(`--in UNPACKED`, as unpack wrote them): names, birth date and patient ids of every DICOM
header. Only the person counts here, not the hospital or the dates of examinations: a letter
from the same hospital is not the same patient.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from pcir_upload.repository.deidentify import ocr
from pcir_upload.repository.deidentify.subject import Identity, date_spellings

SAME, DIFFERENT, UNKNOWN = "same patient", "different", "could not tell"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    evidence: str


def person_strings(unpacked: Path, cid: str) -> set[str]:
    """The patient's own name parts, birth date spellings and ids, from the original headers."""
    folder = unpacked / cid
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    identity = Identity()
    for record in manifest.get("files", []):
        if record.get("role") != "dicom" or "error" in record:
            continue
        try:
            identity.add(pydicom.dcmread(folder / "files" / record["path"], stop_before_pixels=True, force=True))
        except Exception:  # noqa: BLE001 - an unreadable original names nobody
            continue
    strings: set[str] = set()
    for person in identity.people:
        strings.update(part for part in person.name.replace("^", " ").split() if len(part) > 1)
        strings.update(date_spellings(person.birth_date))
        strings.update(pid for _, pid in person.ids if len(pid) > 3)
    return strings


def compare(pages: list[bytes], person: set[str]) -> Verdict:
    """Read the pages (PNG) and say whether they name the images' patient, someone else, or
    nobody that can be told."""
    if not person:
        return Verdict(UNKNOWN, "the original headers name no patient")
    greys = [np.asarray(Image.open(io.BytesIO(png)).convert("L")) for png in pages]
    try:
        words = [word for page in ocr.read_words(greys, scales=(1,)) for word in page]
    except ocr.OcrError as error:
        return Verdict(UNKNOWN, f"the pages could not be read: {error}")
    found = ocr.classify(words, person)
    matched = sorted({w.text for w, reason in found if reason == "identity"})
    if matched:
        return Verdict(SAME, "the pages show " + ", ".join(matched[:6]))
    named = [w.text for w, reason in found if reason == "name"]
    if named:
        return Verdict(DIFFERENT, "the pages name someone the images do not: " + " ".join(named[:8]))
    return Verdict(UNKNOWN, f"{len(words)} word(s) read, none that names a patient")
