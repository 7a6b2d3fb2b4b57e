"""The operator's boxes: blanked into a copy of the cleaned image, with pixels.blank.

The copy deidentify cleaned (review/<id>/dicom/…) stays as it was; the operator's version is
review/<id>/reviewed/… and is remade from it each time the boxes change. Boxes OCR found are
already blanked in the cleaned copy, so an operator's box can add to them but never bring
back what was blanked: a smaller box only blanks less in addition.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydicom

from pcir_upload.repository.deidentify.pixels import ALL_FRAMES, TextBox, blank


def cleaned_path(out: Path, entry: dict[str, Any]) -> Path:
    return out / entry["to"]


def reviewed_path(out: Path, cid: str, entry: dict[str, Any]) -> Path:
    relative = Path(entry["to"]).relative_to(Path("review", cid, "dicom"))
    return out / "review" / cid / "reviewed" / relative


def current_path(out: Path, cid: str, entry: dict[str, Any], boxes: list[dict[str, int]]) -> Path:
    """The image as it stands: the operator's version once they drew a box."""
    reviewed = reviewed_path(out, cid, entry)
    return reviewed if boxes and reviewed.exists() else cleaned_path(out, entry)


def operator_box(values: dict[str, int]) -> TextBox:
    return TextBox(ALL_FRAMES if values.get("frame", -1) < 0 else values["frame"], values["x"], values["y"],
                   values["w"], values["h"], "", "operator")


def reclean(out: Path, cid: str, entry: dict[str, Any], boxes: list[dict[str, int]]) -> Path:
    """Blank the boxes into a fresh copy of the cleaned image; written whole, then renamed."""
    ds = pydicom.dcmread(cleaned_path(out, entry))
    rows, columns = int(ds.Rows), int(ds.Columns)
    for box in boxes:
        if box["w"] <= 0 or box["h"] <= 0 or box["x"] < 0 or box["y"] < 0 \
                or box["x"] + box["w"] > columns or box["y"] + box["h"] > rows:
            raise ValueError(f"the box {box} is not inside the image ({columns} x {rows})")
    blank(ds, [operator_box(box) for box in boxes])
    target = reviewed_path(out, cid, entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    ds.save_as(partial, enforce_file_format=True)
    os.replace(partial, target)
    return target
