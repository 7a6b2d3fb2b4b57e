"""`pcir-upload deidentify`: every unpacked contribution into released/ (may be published)
and review/ (a person looks first), with a report of what was done to each file.

Each attempt at a contribution works in a scratch folder of its own
(`OUT/.scratch/<id>/<attempt>`) and moves its files into place, each whole, only when all of
them are made; its done marker is written last, atomically. A second run skips what is done,
and an attempt stopped half-way (a killed worker) is simply made again: outputs are
deterministic, so the rerun puts the same bytes at the same paths. Attempts of one
contribution may run at once (queued jobs, repository/jobs.py): nothing one does undoes
another's. A contribution that fails is reported by its id and the others go on. Files are
processed one at a time; pixel data stays on disk (dcmread's defer_size) unless the pixel
check reads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import secrets
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import AllTransferSyntaxes, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pcir_upload.repository.deidentify.actions import Changes, Context, clean
from pcir_upload.repository.deidentify.age import add_age
from pcir_upload.repository.deidentify.method import mark, new_file_meta
from pcir_upload.repository.deidentify.profile import edition
from pcir_upload.repository.deidentify.subject import Identity, pseudonym
from pcir_upload.repository.deidentify.write import save

DEFER_SIZE = 256 * 1024  # values larger than this stay in the file until written
MAX_FILE_BYTES = 2 * 1024**3  # larger objects go to review: a 2 GiB multi-frame is not cleaned here
DONE = ".done"
SCRATCH = ".scratch"

REVIEW_BY_ROLE = {
    "index": "the disc's DICOMDIR names the patient; it is never released (the release step makes one from the cleaned files)",
    "viewer": "a viewer program from the disc: not research data",
    "disc-text": "the disc's own text (README, web pages, AUTORUN): may name the patient or the hospital",
    "document": "a document the patient added: only a person can judge what it reveals",
    "other": "not DICOM: only a person can judge what it reveals",
}
ENCAPSULATED = "the object encapsulates a document (PDF, CDA, 3D model): its content cannot be cleaned automatically"


def _pixels() -> ModuleType:
    """pixels.py (burned-in text) is written alongside this; imported when first needed."""
    return importlib.import_module("pcir_upload.repository.deidentify.pixels")


@dataclass
class Outcome:
    """One input file: where it went and why."""

    path: str
    role: str
    outcome: str  # "released" or "review"
    to: str = ""
    reason: str = ""
    changes: dict[str, Any] = field(default_factory=dict)
    pixels: dict[str, Any] = field(default_factory=dict)


class Unreleasable(Exception):
    """The file must go to review, for the reason given."""


def _transfer_syntax(ds: Dataset) -> str:
    meta_ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if meta_ts:
        return str(meta_ts)
    implicit, little = ds.original_encoding  # a file without meta: as it was read
    return ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _read(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path, defer_size=DEFER_SIZE, force=True)
    except Exception as exc:  # pydicom raises many kinds on damaged input
        raise Unreleasable(f"pydicom cannot read it: {type(exc).__name__}: {exc}") from exc


def _check(ds: Dataset, ts: str, size: int) -> None:
    # pydicom reads a value cut short by the end of the file without a word: compare each
    # top-level value's declared end with the file's size (a deflated dataset's positions
    # are in the inflated stream, whose truncation zlib reports itself).
    for raw in ds._dict.values() if ts != DeflatedExplicitVRLittleEndian else ():
        tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", 0xFFFFFFFF)
        if tell is not None and length != 0xFFFFFFFF and tell + length > size:
            raise Unreleasable(f"truncated: {raw.tag} ends at byte {tell + length}, the file at {size}")
    if ts not in AllTransferSyntaxes:
        raise Unreleasable(f"unknown transfer syntax {ts}: it cannot be checked, so it is not released")
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not str(ds.get(keyword, "") or "").strip():
            raise Unreleasable(f"not a usable DICOM object: it has no {keyword}")
    if "EncapsulatedDocument" in ds:
        raise Unreleasable(ENCAPSULATED)


@dataclass
class Contribution:
    """One contribution's de-identification, in its scratch folder."""

    folder: Path
    out: Path
    secret: bytes
    manifest: dict[str, Any]
    scratch: Path
    outcomes: list[Outcome] = field(default_factory=list)
    identity: Identity = field(default_factory=Identity)

    @property
    def cid(self) -> str:
        return str(self.manifest["contribution_id"])

    def to_review(self, source: Path, record: dict[str, Any], reason: str) -> None:
        target = self.scratch / "review" / "files" / record["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_file():
            shutil.copyfile(source, target)
        self.outcomes.append(Outcome(record["path"], record.get("role", ""), "review",
                                     f"review/{self.cid}/files/{record['path']}", reason))

    def read_identity(self, dicom: list[dict[str, Any]]) -> tuple[str, str | None]:
        """First pass over the headers: who the files say the patient is."""
        for record in dicom:
            try:
                ds = pydicom.dcmread(self.folder / "files" / record["path"], stop_before_pixels=True, force=True)
            except Exception:
                continue  # the second pass sends it to review with the reason
            self.identity.add(ds)
        person, problem = self.identity.subject()
        return pseudonym(self.secret, person, str(self.manifest.get("contributor_id", ""))), problem

    def release(self, source: Path, record: dict[str, Any], subject: str) -> None:
        size = source.stat().st_size
        if size > MAX_FILE_BYTES:
            raise Unreleasable(f"{size:,} bytes, over {MAX_FILE_BYTES:,}: too large to clean here")
        ds = _read(source)
        ts = _transfer_syntax(ds)
        _check(ds, ts, size)
        pixels = _pixels()
        try:
            examine = pixels.examine_reason(ds)
        except Exception as exc:  # a header pixels.py cannot judge: a person can
            raise Unreleasable(f"the pixel check could not judge its header: {type(exc).__name__}: {exc}") from exc
        changes = Changes()
        try:
            age = add_age(ds)
            if age:
                changes.added["PatientAge"] = age
            clean(ds, Context(self.secret, subject, frozenset(self.identity.strings)), changes)
        except Exception as exc:
            raise Unreleasable(f"its header could not be cleaned: {type(exc).__name__}: {exc}") from exc
        ds.PatientID = subject
        mark(ds)
        review = None
        found: list[dict[str, Any]] = []
        if examine is not None:
            ds.file_meta.TransferSyntaxUID = ts
            try:
                result = pixels.clean_pixels(ds, sorted(self.identity.strings))
            except Exception as exc:
                raise Unreleasable(f"the pixel check failed: {type(exc).__name__}: {exc}") from exc
            found = [dataclasses.asdict(box) for box in result.boxes]
            review = result.review
            ts = str(ds.file_meta.get("TransferSyntaxUID") or ts)
        new_file_meta(ds, ts)
        names = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), f"{ds.SOPInstanceUID}.dcm")
        if review is None:
            relative = Path("released", subject, *names)
            target = self.scratch / relative
        else:
            relative = Path("review", self.cid, "dicom", *names)
            target = self.scratch / "review" / "dicom" / Path(*names)  # review/ becomes review/<id>
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            save(ds, target, source, ts == DeflatedExplicitVRLittleEndian)
            pydicom.dcmread(target, stop_before_pixels=True)  # what is written must read back
        except Exception as exc:
            target.unlink(missing_ok=True)
            raise Unreleasable(f"the cleaned object could not be written: {type(exc).__name__}: {exc}") from exc
        pixel_report = {"examined_because": examine, "boxes": found} if examine else {}
        self.outcomes.append(Outcome(record["path"], record.get("role", ""), "released" if review is None else "review",
                                     relative.as_posix(), review or "", changes.as_json(), pixel_report))

    def run(self) -> None:
        records = list(self.manifest.get("files", []))
        dicom = [r for r in records if r.get("role") == "dicom" and "error" not in r]
        subject, problem = self.read_identity(dicom)
        for record in records:
            source = self.folder / "files" / record["path"]
            if "error" in record:
                self.to_review(source, record, f"not read in full from the disc: {record['error']}")
            elif record.get("role") != "dicom":
                self.to_review(source, record, REVIEW_BY_ROLE.get(record.get("role", ""), REVIEW_BY_ROLE["other"]))
            elif problem:
                self.to_review(source, record, f"{problem}: a person must decide who this is")
            else:
                try:
                    self.release(source, record, subject)
                except Unreleasable as exc:
                    self.to_review(source, record, str(exc))
        self.write_report(subject, problem)

    def write_report(self, subject: str, problem: str | None) -> None:
        folder = self.scratch / "review"
        folder.mkdir(parents=True, exist_ok=True)
        report = {
            "contribution_id": self.cid,
            "subject": subject,
            "identity_problem": problem,
            "profile": f"DICOM PS3.15 Table E.1-1, edition {edition()}",
            "released": sum(o.outcome == "released" for o in self.outcomes),
            "review": sum(o.outcome == "review" for o in self.outcomes),
            "files": [vars(o) for o in self.outcomes],
        }
        (folder / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (folder / "summary.txt").write_text(summary(report), encoding="utf-8")

    def move_into_place(self) -> None:
        """Released files join the shared subject/study/series tree one rename each; then
        the review folder, with the report, by one rename: once it is in place, so is every
        file of the contribution. A review folder already in place is the whole result of
        another attempt (one killed before its done marker, or one running at once): the
        outputs being deterministic it is this one's too, and it is kept, as replacing it
        would leave a moment with no report."""
        released = self.scratch / "released"
        if released.is_dir():
            for path in sorted(p for p in released.rglob("*") if p.is_file()):
                target = self.out / path.relative_to(self.scratch)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        review = self.out / "review" / self.cid
        review.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(self.scratch / "review", review)  # refuses a non-empty target
        except OSError:
            if not (review / "report.json").is_file():
                raise


def summary(report: dict[str, Any]) -> str:
    """The report in plain words, a paragraph per file."""
    lines = [f"Contribution {report['contribution_id']}: {report['released']} file(s) released, "
             f"{report['review']} for review. Subject {report['subject']}. {report['profile']}."]
    if report["identity_problem"]:
        lines.append(f"Everything went to review: {report['identity_problem']}.")
    for entry in report["files"]:
        lines.append("")
        lines.append(f"{entry['path']} ({entry['role'] or 'no role'}): {entry['outcome']} -> {entry['to']}")
        if entry["reason"]:
            lines.append(f"  why: {entry['reason']}")
        for what, counts in entry["changes"].items():
            if counts:
                items = ", ".join(f"{k}={v}" if what != "added" else f"{k} {v}" for k, v in counts.items())
                lines.append(f"  {what.replace('_', ' ')}: {items}")
        if entry["pixels"]:
            lines.append(f"  pixels examined because {entry['pixels']['examined_because']}; "
                         f"{len(entry['pixels']['boxes'])} text box(es) blanked")
    return "\n".join(lines) + "\n"


def deidentify_contribution(folder: Path, out: Path, secret: bytes) -> str:
    """De-identify one unpacked contribution; returns what happened, in a line."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    cid = str(manifest.get("contribution_id", ""))
    if cid != folder.name:
        raise ValueError(f"its manifest names contribution {cid!r}")
    done, attempts = out / DONE / cid, out / SCRATCH / cid
    if done.exists():
        shutil.rmtree(attempts, ignore_errors=True)  # what killed attempts left
        return "already done"
    scratch = attempts / secrets.token_hex(6)
    scratch.mkdir(parents=True)
    try:
        contribution = Contribution(folder, out, secret, manifest, scratch)
        contribution.run()
        contribution.move_into_place()
        # From the report in place, which may be another attempt's: the marker agrees with it.
        report = json.loads((out / "review" / cid / "report.json").read_text(encoding="utf-8"))
        counts = {"released": report["released"], "review": report["review"]}
        (scratch / DONE).write_text(json.dumps(counts) + "\n")
        done.parent.mkdir(parents=True, exist_ok=True)
        os.replace(scratch / DONE, done)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        with contextlib.suppress(OSError):
            attempts.rmdir()  # if no other attempt is in it
    # Done: no other attempt's scratch folder is worth keeping (one still running finds its
    # folder gone, fails, and its retry finds the contribution done).
    shutil.rmtree(attempts, ignore_errors=True)
    return f"{counts['released']} released, {counts['review']} for review"


def deidentify_all(unpacked: Path, out: Path, secret: bytes, log: Callable[[str], None] = print) -> bool:
    """Every contribution under `unpacked`; False if any failed (each failure is logged)."""
    ok = True
    for folder in sorted(p for p in unpacked.iterdir() if p.is_dir() and (p / "manifest.json").is_file()):
        try:
            log(f"{folder.name}: {deidentify_contribution(folder, out, secret)}")
        except Exception as exc:
            ok = False
            log(f"{folder.name}: FAILED: {type(exc).__name__}: {exc}")
            log("".join(traceback.format_exception(exc)).rstrip())
    return ok
