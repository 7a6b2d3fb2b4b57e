"""The operator's boxes: blanked into a copy of the cleaned image, with pixels.blank.

The copy deidentify cleaned (review/<id>/dicom/…) stays as it was; the operator's version is
review/<id>/reviewed/… and is remade from it each time the boxes change. Boxes OCR found are
already blanked in the cleaned copy, so an operator's box can add to them but never bring
back what was blanked: a smaller box only blanks less in addition.

A document's boxes (redactions) work on its rendered pages the same way: the file in review/
is never changed, and each page is rendered and blacked out anew whenever it is shown or
released, so the page the operator saw is the page that leaves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydicom

from pcir_upload.repository.deidentify.pixels import ALL_FRAMES, TextBox, blank
from pcir_upload.repository.review import render


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


def check_inside(box: dict[str, int], columns: int, rows: int, what: str = "image") -> None:
    """A box must lie wholly on the picture: one that does not was mistyped, not meant."""
    if box["w"] <= 0 or box["h"] <= 0 or box["x"] < 0 or box["y"] < 0 \
            or box["x"] + box["w"] > columns or box["y"] + box["h"] > rows:
        raise ValueError(f"the box {box} is not inside the {what} ({columns} x {rows})")


def reclean(out: Path, cid: str, entry: dict[str, Any], boxes: list[dict[str, int]]) -> Path:
    """Blank the boxes into a fresh copy of the cleaned image; written whole, then renamed."""
    ds = pydicom.dcmread(cleaned_path(out, entry))
    for box in boxes:
        check_inside(box, int(ds.Columns), int(ds.Rows))
    blank(ds, [operator_box(box) for box in boxes])
    target = reviewed_path(out, cid, entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    ds.save_as(partial, enforce_file_format=True)
    os.replace(partial, target)
    return target


def check_redaction(out: Path, entry: dict[str, Any], box: dict[str, int]) -> None:
    """A redaction names a page the document has and lies on it, in the rendered page's pixels."""
    count = render.page_count(cleaned_path(out, entry))
    if not 1 <= box["page"] <= count:
        raise ValueError(f"page {box['page']} is not in the document (pages 1 to {count})")
    check_inside(box, *render.page_size(cleaned_path(out, entry), box["page"] - 1), what="page")


def redacted_page(out: Path, entry: dict[str, Any], number: int, boxes: list[dict[str, int]]) -> bytes:
    """Page `number` (from 0) rendered, with the redactions on it black: what is shown and released."""
    return render.blacked(render.page_png(cleaned_path(out, entry), number),
                          [(b["x"], b["y"], b["w"], b["h"]) for b in boxes if b["page"] == number + 1])
