"""Release: accepted items move from review/ into released/, and the released set's DICOMDIR
and manifest are made anew.

released/ is laid out for users of a public archive: <subject>/<study>/<series>/<instance>.dcm
under pseudonyms and new UIDs (as deidentify writes it), documents as rendered pages under
<subject>/documents/. Those names are not PS3.10 file IDs (8 characters, capitals), so the
DICOMDIR is a file set of its own in released/DICOM/, written by pydicom's FileSet, whose
files are hard links to the same instances: one copy of the bytes, two ways in.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pydicom
from pydicom.fileset import FileInstance, FileSet

from pcir_upload.repository.review import render
from pcir_upload.repository.review.cleaning import current_path, redacted_page

FILE_SET = "DICOM"
MANIFEST_FIELDS = ["path", "kind", "subject", "study", "series", "instance", "sop_class", "modality",
                   "frames", "bytes", "sha256", "file_set_id"]


class NotCleaned(Exception):
    """An item that is about to be released does not say it was de-identified."""


def release_image(out: Path, cid: str, subject: str, entry: dict[str, Any], boxes: list[dict[str, int]]) -> str:
    """Move the image, as the operator accepted it, to its place in released/."""
    source = current_path(out, cid, entry, boxes)
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    if str(ds.get("PatientIdentityRemoved", "")) != "YES" or str(ds.get("PatientID", "")) != subject:
        raise NotCleaned(f"{source} does not carry deidentify's marks; it is not released")
    relative = Path("released", subject, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), f"{ds.SOPInstanceUID}.dcm")
    target = out / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return relative.as_posix()


def release_document(out: Path, cid: str, subject: str, entry: dict[str, Any], boxes: list[dict[str, int]]) -> list[str]:
    """A document leaves as its rendered pages only (no text layer, metadata or scripts), each
    redaction filled black in the pixels themselves: nothing under it is left to uncover."""
    source = out / entry["to"]
    name = hashlib.sha256(f"{cid}/{entry['path']}".encode()).hexdigest()[:16]
    folder = Path("released", subject, "documents", name)
    (out / folder).mkdir(parents=True, exist_ok=True)
    written = []
    for number in range(render.page_count(source)):
        relative = folder / f"page-{number + 1:03d}.png"
        partial = out / relative.with_name(relative.name + ".partial")
        partial.write_bytes(redacted_page(out, entry, number, boxes))
        os.replace(partial, out / relative)
        written.append(relative.as_posix())
    return written


def _instances(released: Path) -> list[Path]:
    return sorted(p for p in released.glob("*/*/*/*.dcm") if p.parts[-4] != FILE_SET)


# A DICOMDIR record needs values that de-identification empties (Study Date, Time and ID are
# Type 1 in a STUDY record): the records get the dummies deidentify writes for a D action.
RECORD_DUMMIES = {"StudyDate": "19000101", "StudyTime": "000000", "StudyID": "ANONYMIZED", "SeriesNumber": "0",
                  "InstanceNumber": "0", "ContentDate": "19000101", "ContentTime": "000000"}


def _add(file_set: FileSet, path: Path) -> FileInstance:
    try:
        return file_set.add(path)
    except ValueError:
        ds = pydicom.dcmread(path, defer_size=256 * 1024)
        for keyword, dummy in RECORD_DUMMIES.items():
            if keyword in ds and not str(ds[keyword].value or "").strip():
                setattr(ds, keyword, dummy)
            elif keyword not in ds and keyword in ("StudyDate", "StudyTime", "StudyID"):
                setattr(ds, keyword, dummy)
        return file_set.add(ds)


def write_file_set(released: Path) -> FileSet:
    """released/DICOM/DICOMDIR for every released instance, made new and swapped in."""
    new, old = released / f".{FILE_SET}.new", released / f".{FILE_SET}.old"
    shutil.rmtree(new, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    file_set = FileSet()
    file_set.ID = "PCIR_RELEASE"
    by_uid: dict[str, Path] = {}
    for path in _instances(released):
        by_uid[str(_add(file_set, path).SOPInstanceUID)] = path
    file_set.write(new)
    # FileSet copied each instance; a hard link to the released file replaces the copy.
    for instance in file_set:
        copy = new / instance.FileID
        source = by_uid[str(instance.SOPInstanceUID)]
        try:
            os.link(source, copy.with_name(copy.name + ".link"))
            os.replace(copy.with_name(copy.name + ".link"), copy)
        except OSError:
            pass  # another file system: the copy stays
    if (released / FILE_SET).exists():
        os.replace(released / FILE_SET, old)
    os.replace(new, released / FILE_SET)
    shutil.rmtree(old, ignore_errors=True)
    return FileSet(pydicom.dcmread(released / FILE_SET / "DICOMDIR"))


def write_manifest(released: Path, file_set: FileSet) -> list[dict[str, Any]]:
    """released/manifest.json and manifest.csv: every instance and page, with its checksum."""
    ids = {instance.SOPInstanceUID: "/".join([FILE_SET, *Path(instance.FileID).parts]) for instance in file_set}
    rows: list[dict[str, Any]] = []
    for path in _instances(released):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        rows.append({"path": path.relative_to(released).as_posix(), "kind": "dicom", "subject": path.parts[-4],
                     "study": str(ds.StudyInstanceUID), "series": str(ds.SeriesInstanceUID),
                     "instance": str(ds.SOPInstanceUID), "sop_class": ds.SOPClassUID.name,
                     "modality": str(ds.get("Modality", "")), "frames": int(ds.get("NumberOfFrames", 1) or 1),
                     "bytes": path.stat().st_size, "sha256": _sha256(path), "file_set_id": ids.get(str(ds.SOPInstanceUID), "")})
    for path in sorted(released.glob("*/documents/*/page-*.png")):
        rows.append({"path": path.relative_to(released).as_posix(), "kind": "document page", "subject": path.parts[-4],
                     "study": "", "series": "", "instance": "", "sop_class": "", "modality": "", "frames": 1,
                     "bytes": path.stat().st_size, "sha256": _sha256(path), "file_set_id": ""})
    _replace(released / "manifest.json", json.dumps({"items": rows}, indent=1) + "\n")
    text = io.StringIO()
    writer = csv.DictWriter(text, MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _replace(released / "manifest.csv", text.getvalue())
    return rows


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def refresh(out: Path) -> int:
    """The released set's DICOMDIR and manifests, for what released/ now holds."""
    released = out / "released"
    released.mkdir(parents=True, exist_ok=True)
    file_set = write_file_set(released)
    return len(write_manifest(released, file_set))
