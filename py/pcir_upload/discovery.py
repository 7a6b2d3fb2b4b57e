"""What is on the patient's disc, read from its DICOMDIR index, to show before anything is sent.

The summary is informational only: every file in the listing is carried whatever the index
says, so a damaged or missing index never stops an upload; it becomes a plain-language
problem instead. Runs in CPython and in Pyodide (a browser Web Worker), so it does no file
I/O: the caller hands over the listing and the bytes of the DICOMDIR files, nothing else.

`pydicom.fileset.FileSet` is deliberately not used: it needs real paths, matches names
case-sensitively and silently drops missing files, which is exactly what discs get wrong.
"""

from __future__ import annotations

import io
import itertools
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pydicom

from pcir_upload.disc import DiscFile, DiscReader, DiscReadError

__all__ = ["DiscSummary", "Patient", "Series", "Study", "describe_disc", "find_dicomdirs", "scan_disc"]

# A real DICOMDIR of a full CD is a few MB; anything far larger is not one worth holding.
MAX_DICOMDIR_BYTES = 64 * 1024 * 1024

_VERSION_SUFFIX = re.compile(r";\d*$")
_FILE_ID_SEPARATOR = re.compile(r"[\\/]")

_DAMAGED = "The disc index ({path}) is damaged: {reason}; all files will still be sent."
_UNOPENED = "The disc index ({path}) could not be opened; all files will still be sent."
_LINKS = "its internal links are broken, so images may be grouped under the wrong patient or study"
_MISSING = (
    "{count} file(s) listed in the disc index are not on the disc, so they cannot be sent; "
    "the disc may be incomplete or damaged."
)


@dataclass
class Series:
    """One series as the index lists it.

    `images` counts the records with a ReferencedFileID under it (IMAGE, but also SR DOCUMENT,
    PRESENTATION, ENCAP DOC, RAW DATA, ...), once per SOP instance (else per file), so that two
    DICOMDIRs listing the same images do not double the count.
    """

    modality: str
    number: str
    description: str
    uid: str
    images: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Study:
    """One study; its modalities and image count derive from its series."""

    date: str
    description: str
    uid: str
    series: list[Series] = field(default_factory=list)

    @property
    def modalities(self) -> list[str]:
        return sorted({s.modality for s in self.series if s.modality})

    @property
    def images(self) -> int:
        return sum(s.images for s in self.series)

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "description": self.description,
            "uid": self.uid,
            "modalities": self.modalities,
            "series": [s.to_json() for s in self.series],
            "images": self.images,
        }


@dataclass
class Patient:
    """One patient; the name stays as written in the index (e.g. 'Doe^John') for the UI to format."""

    name: str
    id: str
    studies: list[Study] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "studies": [s.to_json() for s in self.studies]}


@dataclass
class DiscSummary:
    """What the patient is shown before upload."""

    files: int
    bytes: int
    dicomdirs: list[str]
    patients: list[Patient]
    referenced: int
    unreferenced: int
    missing: list[str]
    problems: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "dicomdirs": list(self.dicomdirs),
            "patients": [p.to_json() for p in self.patients],
            "referenced": self.referenced,
            "unreferenced": self.unreferenced,
            "missing": list(self.missing),
            "problems": list(self.problems),
        }


def find_dicomdirs(listing: Sequence[DiscFile]) -> list[DiscFile]:
    """Files named DICOMDIR (case-insensitive, also 'DICOMDIR.' and 'DICOMDIR;1' as some CD mounts show), shallowest first."""
    found = [f for f in listing if _name_key(f.path.rsplit("/", 1)[-1]) == "dicomdir"]
    return sorted(found, key=lambda f: (f.path.count("/"), f.path))


def describe_disc(listing: Sequence[DiscFile], dicomdirs: Mapping[str, bytes]) -> DiscSummary:
    """Summary of a disc from its listing and the bytes of its DICOMDIR files (keyed by DiscFile.path)."""
    collector = _Collector(listing)
    problems: list[str] = []
    found = find_dicomdirs(listing)
    for dicomdir in found:
        folder = dicomdir.path.rsplit("/", 1)[0] if "/" in dicomdir.path else ""
        data = dicomdirs.get(dicomdir.path)
        if data is None:
            problems.append(_UNOPENED.format(path=dicomdir.path))
            continue
        try:
            root, records = _read_records(data)
        except _Unreadable as exc:
            problems.append(_DAMAGED.format(path=dicomdir.path, reason=exc.reason))
            continue
        order = _tree(records, root)
        if order is None:
            problems.append(_DAMAGED.format(path=dicomdir.path, reason=_LINKS))
            collector.add_linear(folder, records)
        else:
            collector.add_tree(folder, order)
    if collector.missing:
        problems.append(_MISSING.format(count=len(collector.missing)))
    referenced = len(collector.referenced)
    return DiscSummary(
        files=len(listing),
        bytes=sum(f.size for f in listing),
        dicomdirs=[f.path for f in found],
        patients=collector.finish(),
        referenced=referenced,
        unreferenced=len(listing) - referenced,
        missing=collector.missing,
        problems=problems,
    )


async def scan_disc(listing: Sequence[DiscFile], reader: DiscReader) -> DiscSummary:
    """Read the disc's DICOMDIRs (only those; never the images) and describe the disc."""
    dicomdirs: dict[str, bytes] = {}
    for found in find_dicomdirs(listing):
        if found.size <= MAX_DICOMDIR_BYTES:
            try:
                dicomdirs[found.path] = await reader.read(found.path, 0, found.size)
            except DiscReadError:
                pass  # describe_disc says that this index could not be opened
    return describe_disc(listing, dicomdirs)


@dataclass(frozen=True)
class _Record:
    """The parts of a directory record the summary needs, detached from pydicom."""

    offset: int | None
    kind: str
    next: int
    lower: int
    file_id: tuple[str, ...]
    instance: str = ""
    name: str = ""
    patient_id: str = ""
    date: str = ""
    description: str = ""
    uid: str = ""
    modality: str = ""
    number: str = ""


class _Unreadable(Exception):
    """A DICOMDIR that yields no records; `reason` is shown to the patient."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_records(data: bytes) -> tuple[int, list[_Record]]:
    """Root offset and records of a DICOMDIR, fully decoded here so later steps cannot fail on bad bytes."""
    if not data:
        raise _Unreadable("the file is empty")
    try:
        with warnings.catch_warnings():
            # pydicom warns about every odd value in a forced read; damage is reported as a problem.
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            if "DirectoryRecordSequence" not in ds:
                raise _Unreadable("it is cut short or is not a DICOM disc index")
            root = _offset(ds.get("OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity"))
            return root, [_record(item) for item in ds.DirectoryRecordSequence]
    except _Unreadable:
        raise
    except Exception as exc:  # any parse failure of untrusted bytes is a damaged index, not a crash
        raise _Unreadable("it could not be read") from exc


def _record(item: pydicom.Dataset) -> _Record:
    kind = _text(item.get("DirectoryRecordType")).upper()
    series = kind == "SERIES"  # study and series records share the summary's fields
    return _Record(
        # pydicom 3 sets seq_item_tell to the file position of each item's tag, which is
        # what the DICOMDIR offsets point at.
        offset=getattr(item, "seq_item_tell", None),
        kind=kind,
        next=_offset(item.get("OffsetOfTheNextDirectoryRecord")),
        lower=_offset(item.get("OffsetOfReferencedLowerLevelDirectoryEntity")),
        file_id=_file_id(item.get("ReferencedFileID")),
        instance=_text(item.get("ReferencedSOPInstanceUIDInFile")),
        name=_text(item.get("PatientName")),
        patient_id=_text(item.get("PatientID")),
        date=_text(item.get("StudyDate")),
        description=_text(item.get("SeriesDescription" if series else "StudyDescription")),
        uid=_text(item.get("SeriesInstanceUID" if series else "StudyInstanceUID")),
        modality=_text(item.get("Modality")),
        number=_text(item.get("SeriesNumber")),
    )


def _text(value: object) -> str:
    """A DICOM value as the index spells it; multiple values joined with '\\' as on the wire."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").strip()
    if isinstance(value, Sequence) and not isinstance(value, str):  # MultiValue; not PersonName
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _offset(value: object) -> int:
    """An offset element's value; absent or odd values count as 0, meaning 'none'."""
    return value if isinstance(value, int) and value > 0 else 0


def _file_id(value: Any) -> tuple[str, ...]:
    """ReferencedFileID components: pydicom yields a MultiValue, or a str that may still hold '\\'."""
    if value is None:
        return ()
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    values = [value] if isinstance(value, str) else [str(v) for v in value]
    parts = (p.strip() for v in values for p in _FILE_ID_SEPARATOR.split(v))
    return tuple(p for p in parts if p not in ("", "."))


def _name_key(component: str) -> str:
    """A path component as ISO 9660 means it: any case, no ';1' version, no trailing '.'."""
    return _VERSION_SUFFIX.sub("", component.strip()).rstrip(".").casefold()


def _tree(records: list[_Record], root: int) -> list[tuple[_Record, int]] | None:
    """Records in pre-order by following the offsets, each with its parent's index (-1 at the root).

    None when the links are unusable (bad offset, loop, records left unreached), so that no
    record and no file reference is silently dropped.
    """
    if not records:
        return []
    by_offset = {r.offset: r for r in records if r.offset is not None}
    if not root or len(by_offset) != len(records):
        return None
    order: list[tuple[_Record, int]] = []
    seen: set[int] = set()
    pending = [(root, -1)]
    while pending:
        offset, parent = pending.pop()
        record = by_offset.get(offset)
        if record is None or offset in seen:
            return None
        seen.add(offset)
        order.append((record, parent))
        if record.next:
            pending.append((record.next, parent))
        if record.lower:  # popped first, so children come before the next sibling
            pending.append((record.lower, len(order) - 1))
    return order if len(order) == len(records) else None


# Where a record sits: keys of its patient, study and series (None when there is none above it).
_Context = tuple[Any, Any, Any]
_NOWHERE: _Context = (None, None, None)


class _Collector:
    """Merges the records of all DICOMDIRs: patients by name+ID, studies and series by UID."""

    def __init__(self, listing: Sequence[DiscFile]) -> None:
        self._listing: dict[tuple[str, ...], list[str]] = {}
        for f in listing:
            self._listing.setdefault(_path_key(f.path.split("/")), []).append(f.path)
        self.referenced: set[str] = set()
        self.missing: list[str] = []
        self._missing: set[tuple[str, ...]] = set()
        self._patients: dict[Any, Patient] = {}
        self._studies: dict[Any, Study] = {}
        self._series: dict[Any, Series] = {}
        self._images: dict[Any, set[Any]] = {}
        self._anonymous = itertools.count()  # keys for records without a UID: never merged

    def add_tree(self, folder: str, order: list[tuple[_Record, int]]) -> None:
        contexts: list[_Context] = []
        for record, parent in order:
            contexts.append(self._visit(folder, record, contexts[parent] if parent >= 0 else _NOWHERE))

    def add_linear(self, folder: str, records: list[_Record]) -> None:
        """Fallback when offsets are unusable: records are usually written in pre-order."""
        context = _NOWHERE
        for record in records:
            context = self._visit(folder, record, context)

    def finish(self) -> list[Patient]:
        for key, files in self._images.items():
            self._series[key].images = len(files)
        return list(self._patients.values())

    def _visit(self, folder: str, record: _Record, context: _Context) -> _Context:
        """Account for one record; returns the context of the records below (or after) it."""
        patient, study, series = context
        if record.kind == "PATIENT":
            return (self._patient(record.name, record.patient_id), None, None)
        if record.kind == "STUDY":
            patient = patient or self._patient("", "")
            return (patient, self._study(patient, record), None)
        if record.kind == "SERIES":
            patient = patient or self._patient("", "")
            study = study or self._study(patient, None)
            return (patient, study, self._add_series(study, record))
        if record.file_id:
            key = self._reference(folder, record.file_id)
            if series is not None:
                self._images[series].add(record.instance or key)
        return context

    def _patient(self, name: str, patient_id: str) -> Any:
        key = (name, patient_id)
        if key not in self._patients:
            self._patients[key] = Patient(name, patient_id)
        return key

    def _study(self, patient: Any, record: _Record | None) -> Any:
        """A study of this patient; `None` stands in for series found outside any study."""
        uid = "" if record is None else record.uid
        key = (patient, uid if uid or record is None else next(self._anonymous))
        study = self._studies.get(key)
        if study is None:
            study = self._studies[key] = Study("", "", uid)
            self._patients[patient].studies.append(study)
        if record is not None:
            study.date = study.date or record.date
            study.description = study.description or record.description
        return key

    def _add_series(self, study: Any, record: _Record) -> Any:
        key = (study, record.uid or next(self._anonymous))
        if key not in self._series:
            self._series[key] = Series(record.modality, record.number, record.description, record.uid)
            self._studies[study].series.append(self._series[key])
            self._images[key] = set()
        return key

    def _reference(self, folder: str, file_id: tuple[str, ...]) -> tuple[str, ...]:
        """Match a ReferencedFileID (relative to its DICOMDIR's folder) against the listing."""
        parts = (folder.split("/") if folder else []) + list(file_id)
        key = _path_key(parts)
        paths = self._listing.get(key)
        if paths:
            self.referenced.update(paths)
        elif key not in self._missing:
            self._missing.add(key)
            self.missing.append("/".join(parts))
        return key


def _path_key(parts: Iterable[str]) -> tuple[str, ...]:
    return tuple(_name_key(p) for p in parts)
