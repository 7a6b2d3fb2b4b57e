"""What waits in review/: every contribution's report, indexed once when the page starts.

The list view must stay quick with a thousand contributions waiting, so reports are read
once here and summarised in memory; a contribution's own page reads its one report again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcir_upload.repository.review.decisions import ACCEPT, REJECT, ContributionState

DOCUMENT_SUFFIXES = {".pdf": "pdf", ".png": "image", ".jpg": "image", ".jpeg": "image", ".tif": "image",
                     ".tiff": "image", ".bmp": "image", ".gif": "image", ".webp": "image"}

IMAGE = "image"  # a cleaned DICOM copy that deidentify sent to review: may be accepted
DOCUMENT = "document"  # a PDF or picture: may be accepted as rendered pages, never as the file
ORIGINAL = "original"  # an original as it came from the disc: it can only be rejected


def kind(cid: str, entry: dict[str, Any]) -> str:
    """Which decisions a file in review allows. Only cleaned copies and rendered documents
    can leave review/: an original is never released uncleaned."""
    if entry["to"].startswith(f"review/{cid}/dicom/"):
        return IMAGE
    if entry.get("role") == "document" and Path(entry["path"]).suffix.lower() in DOCUMENT_SUFFIXES:
        return DOCUMENT
    return ORIGINAL


@dataclass
class Summary:
    """One contribution as the list shows it."""

    cid: str
    subject: str
    released: int  # by deidentify, without review
    in_review: list[str]  # paths of the files waiting for a decision (in report order)
    identity_problem: str | None
    first_reason: str

    def waiting(self, state: ContributionState) -> int:
        if state.rejected:
            return 0
        return sum(1 for p in self.in_review
                   if state.files.get(p) is None or state.files[p].decision not in (ACCEPT, REJECT))

    def to_release(self, state: ContributionState) -> int:
        return sum(1 for p in self.in_review
                   if (f := state.files.get(p)) and f.decision == ACCEPT and not f.released_to)


def load_report(out: Path, cid: str) -> dict[str, Any]:
    return json.loads((out / "review" / cid / "report.json").read_text(encoding="utf-8"))


def summarise(report: dict[str, Any]) -> Summary:
    review = [f for f in report["files"] if f["outcome"] == "review"]
    return Summary(
        cid=str(report["contribution_id"]),
        subject=str(report.get("subject", "")),
        released=sum(1 for f in report["files"] if f["outcome"] == "released"),
        in_review=[f["path"] for f in review],
        identity_problem=report.get("identity_problem"),
        first_reason=review[0]["reason"] if review else "",
    )


class Index:
    """Every contribution with a report in OUT/review/, by id."""

    def __init__(self, out: Path):
        self.out = out
        self.contributions: dict[str, Summary] = {}
        folder = out / "review"
        for report in sorted(folder.glob("*/report.json")) if folder.is_dir() else ():
            try:
                summary = summarise(json.loads(report.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError):
                continue  # a damaged report is deidentify's to redo; the page lists the rest
            if summary.cid == report.parent.name:
                self.contributions[summary.cid] = summary

    def get(self, cid: str) -> Summary | None:
        return self.contributions.get(cid)
