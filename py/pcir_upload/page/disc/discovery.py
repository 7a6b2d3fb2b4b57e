"""What is on the patient's disc, to show before anything is sent, read as a CD drive likes it.

The scan reads the disc's DICOMDIR files whole and, of every other file, only its first bytes
(its *head*, in batches): enough to tell DICOM images, the viewer program and the disc's
text apart and to describe images no index lists, never their pixel data. Files a usable
DICOMDIR references are not read at all. On a drive that reads a few MB/s and seeks slowly,
that is the difference between seconds and the better part of an hour.

The summary is informational only: every file in the listing is carried whatever the scan
says, so a damaged index, an unreadable file or a disc of JPEGs never stops an upload; it
becomes a plain-language problem or note instead. Runs in CPython and in Pyodide (a browser
Web Worker), so it does no file I/O: it reads through the `DiscReader` it is handed.

`pydicom.fileset.FileSet` is deliberately not used: it needs real paths, matches names
case-sensitively and silently drops missing files, which is exactly what discs get wrong.
"""

from __future__ import annotations

import io
import itertools
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pydicom

from pcir_upload.page.disc.dicomhead import Instance, read_head
from pcir_upload.page.disc.disc import DiscFile, DiscReader, DiscReadError
from pcir_upload.page.disc.discroles import (
    ROLES,
    Look,
    assign_roles,
    classify_document,
    decode_text,
    is_executable,
    is_text,
    name_key,
)

__all__ = [
    "DiscSummary",
    "Patient",
    "Series",
    "Study",
    "classify_document",
    "describe_disc",
    "find_dicomdirs",
    "scan_disc",
]

# A real DICOMDIR of a full CD is a few MB; anything far larger is not one worth holding.
MAX_DICOMDIR_BYTES = 64 * 1024 * 1024
# Head lengths tried in turn: nearly every header fits the first; the rest are read again,
# longer, only for the files whose header did not fit.
HEAD_LENGTHS = (8 * 1024, 256 * 1024, 4 * 1024 * 1024)
MAX_BATCH_FILES = 256  # paths per read_heads call
MAX_BATCH_BYTES = 64 * 1024 * 1024  # bytes per read_heads call, so long heads come fewer at a time
MAX_PAGE_BYTES = 1024 * 1024  # AUTORUN.INF and INDEX.HTM are read whole up to this size
_PAGES = ("autorun.inf", "index.htm", "index.html")

_FILE_ID_SEPARATOR = re.compile(r"[\\/]")

_DAMAGED = "The disc index ({path}) is damaged: {reason}; all files will still be sent."
_UNOPENED = "The disc index ({path}) could not be opened; all files will still be sent."
_LINKS = "its internal links are broken, so images may be grouped under the wrong patient or study"
_MISSING = (
    "{count} file(s) listed in the disc index are not on the disc, so they cannot be sent; "
    "the disc may be incomplete or damaged."
)
_NOTE_EMPTY = "This folder holds no files. Please check that you chose the disc itself, or the folder its files were copied to."
_NOTE_ALL_EMPTY = "Every file in this folder is empty (0 bytes). They will be sent as they are; please check that you chose the disc itself."
_NOTE_NOT_DICOM = (
    "This disc does not hold images in the DICOM format. It will be sent as it is; "
    "the repository will do its best with it."
)
_NOTE_NO_INDEX = "This disc has no index (DICOMDIR), so the images were found by reading the files themselves."
_NOTE_BAD_INDEX = "The disc index (DICOMDIR) could not be used, so the images were found by reading the files themselves."
_NOTE_UNLISTED = "{count} DICOM file(s) that the disc index does not list were found by reading the files themselves."
_NOTE_VIEWER = (
    "The disc's viewer program ({count} files, {size}) will not be sent unless you choose to send "
    "everything; the repository does not need it."
)
_NOTE_OTHER = "{count} other file(s) ({size}) will be sent as they are."
_NOTE_UNDESCRIBED = (
    "{count} DICOM file(s) have headers too damaged to say whose images they are; "
    "they will be sent as they are."
)
_NOTE_UNREADABLE = (
    "{count} file(s) could not be read just now; the disc may be scratched or dirty. They will be "
    "tried again when sending, and any that still fail will be recorded."
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
    """What the patient is shown before upload, and what the manifest keeps of it.

    `kind`: "dicom" (a usable DICOMDIR), "dicom-without-index" (DICOM found by content only),
    "not-dicom" or "empty". `roles`: every path's role (see `discroles.ROLES`); only "viewer"
    files are left out unless the patient asks for everything. `unreadable`: files that could
    not be read during the scan (still carried; the packager tries again).
    """

    files: int
    bytes: int
    dicomdirs: list[str]
    patients: list[Patient]
    referenced: int
    unreferenced: int
    missing: list[str]
    problems: list[str]
    kind: str = "not-dicom"
    roles: dict[str, str] = field(default_factory=dict)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    by_role: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def excluded_by_default(self) -> list[str]:
        return [path for path, role in self.roles.items() if role == "viewer"]

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
            "kind": self.kind,
            "roles": dict(self.roles),
            "excluded_by_default": self.excluded_by_default,
            "unreadable": [dict(u) for u in self.unreadable],
            "notes": list(self.notes),
            "by_role": {role: dict(totals) for role, totals in self.by_role.items()},
        }


def find_dicomdirs(listing: Sequence[DiscFile]) -> list[DiscFile]:
    """Files named DICOMDIR (case-insensitive, also 'DICOMDIR.' and 'DICOMDIR;1' as some CD mounts show), shallowest first."""
    found = [f for f in listing if name_key(f.path.rsplit("/", 1)[-1]) == "dicomdir"]
    return sorted(found, key=lambda f: (f.path.count("/"), f.path))


def describe_disc(listing: Sequence[DiscFile], dicomdirs: Mapping[str, bytes]) -> DiscSummary:
    """Summary of a disc from its listing and its DICOMDIRs' bytes (keyed by path) alone.

    Nothing but the indexes is looked at, so files they do not reference count as "other"
    and no viewer is recognised; `scan_disc` reads the files' heads for that.
    """
    indexes = _Indexes(listing, dicomdirs)
    return _summary(listing, indexes, _Contents(), {})


async def scan_disc(
    listing: Sequence[DiscFile],
    reader: DiscReader,
    on_progress: Callable[[int, int], None] | None = None,
) -> DiscSummary:
    """Read the DICOMDIRs whole and the other files' heads, and describe the disc.

    `on_progress(files looked at, files in all)` is called at the start, after every batch
    of heads, and at the end.
    """
    progress = _Progress(len(listing), on_progress)
    unreadable: dict[str, str] = {}
    dicomdirs: dict[str, bytes] = {}
    found = find_dicomdirs(listing)
    for dicomdir in found:
        if dicomdir.size <= MAX_DICOMDIR_BYTES:
            try:
                dicomdirs[dicomdir.path] = await reader.read(dicomdir.path, 0, dicomdir.size)
            except DiscReadError as exc:  # _Indexes says that this index could not be opened
                unreadable[dicomdir.path] = str(exc)
    indexes = _Indexes(listing, dicomdirs)
    skipped = indexes.referenced | {f.path for f in found}
    to_read = [f for f in listing if f.path not in skipped and f.size > 0]
    progress.advance(len(listing) - len(to_read))
    contents = await _read_contents(to_read, reader, progress, unreadable)
    summary = _summary(listing, indexes, contents, unreadable)
    progress.finish()
    return summary


class _Progress:
    """Files looked at so far, reported as (done, total); never goes backwards."""

    def __init__(self, total: int, callback: Callable[[int, int], None] | None):
        self.done, self.total, self._callback = 0, total, callback
        self._report()

    def advance(self, files: int) -> None:
        self.done = min(self.total, self.done + files)
        self._report()

    def finish(self) -> None:
        self.done = self.total
        self._report()

    def _report(self) -> None:
        if self._callback is not None:
            self._callback(self.done, self.total)


@dataclass
class _Contents:
    """What the heads showed: per path a Look, DICOM instances, and the AUTORUN/INDEX pages' text."""

    looks: dict[str, Look] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


async def _read_contents(
    files: Sequence[DiscFile], reader: DiscReader, progress: _Progress, unreadable: dict[str, str]
) -> _Contents:
    """Look at each file's head; files whose header runs past it are read again, longer."""
    contents = _Contents()
    pending = list(files)
    for attempt, length in enumerate(HEAD_LENGTHS):
        last = attempt == len(HEAD_LENGTHS) - 1
        longer: list[DiscFile] = []
        for batch in _batches(pending, length):
            heads = await read_heads(reader, [f.path for f in batch], length)
            decided = 0
            for f, head in zip(batch, heads):
                if isinstance(head, DiscReadError):
                    unreadable[f.path] = str(head)
                elif not _look(f, head, contents, final=last):
                    longer.append(f)
                    continue
                decided += 1
            progress.advance(decided)
        pending = longer
    return contents


def _look(f: DiscFile, head: bytes, contents: _Contents, final: bool) -> bool:
    """Record what `head` shows of `f`; False (unless `final`) when a longer head could tell more."""
    name = name_key(f.path.rsplit("/", 1)[-1])
    cut = len(head) < f.size
    page = name in _PAGES and f.size <= MAX_PAGE_BYTES
    found = read_head(head, f.size)
    if cut and not final and (page or not found.complete):
        return False
    if page:
        contents.texts[f.path] = decode_text(head)
    contents.looks[f.path] = Look(
        dicom=found.dicom,
        index=found.index,
        executable=not found.dicom and is_executable(f.path, head),
        text=not found.dicom and is_text(head[:4096]),
        document=None if found.dicom else classify_document(f.path, head),
    )
    if found.dicom and found.instance is not None:
        contents.instances[f.path] = found.instance
    return True


def _batches(files: Sequence[DiscFile], length: int) -> Iterable[list[DiscFile]]:
    size = max(1, min(MAX_BATCH_FILES, MAX_BATCH_BYTES // length))
    for start in range(0, len(files), size):
        yield list(files[start : start + size])


async def read_heads(reader: DiscReader, paths: Sequence[str], length: int) -> list[bytes | DiscReadError]:
    """The reader's batched `read_heads`, or one `read` per file from a reader that has none.

    A batch that fails as a whole is read again file by file, so one bad file costs only itself.
    """
    heads: list[bytes | DiscReadError] = []
    batched = getattr(reader, "read_heads", None)
    if batched is not None:
        try:
            heads = list(await batched(paths, length))
        except DiscReadError:
            pass
        if len(heads) == len(paths):
            return heads
    heads = []
    for path in paths:
        try:
            heads.append(await reader.read(path, 0, length))
        except DiscReadError as exc:
            heads.append(exc)
    return heads


class _Indexes:
    """The disc's DICOMDIRs read into a collector; which of them are usable, and their problems."""

    def __init__(self, listing: Sequence[DiscFile], dicomdirs: Mapping[str, bytes]):
        self.collector = _Collector(listing)
        self.problems: list[str] = []
        self.usable: list[str] = []
        self.found = find_dicomdirs(listing)
        for dicomdir in self.found:
            folder = dicomdir.path.rsplit("/", 1)[0] if "/" in dicomdir.path else ""
            data = dicomdirs.get(dicomdir.path)
            if data is None:
                self.problems.append(_UNOPENED.format(path=dicomdir.path))
                continue
            try:
                root, records = _read_records(data)
            except _Unreadable as exc:
                self.problems.append(_DAMAGED.format(path=dicomdir.path, reason=exc.reason))
                continue
            before = len(self.collector.referenced)
            order = _tree(records, root)
            if order is None:
                self.problems.append(_DAMAGED.format(path=dicomdir.path, reason=_LINKS))
                self.collector.add_linear(folder, records)
            else:
                self.collector.add_tree(folder, order)
            if len(self.collector.referenced) > before:  # it leads to files that are there
                self.usable.append(dicomdir.path)
        self.referenced = set(self.collector.referenced)
        if self.collector.missing:
            self.problems.append(_MISSING.format(count=len(self.collector.missing)))


def _summary(
    listing: Sequence[DiscFile], indexes: _Indexes, contents: _Contents, unreadable: Mapping[str, str]
) -> DiscSummary:
    """The summary: the indexes' patients plus what the heads showed, roles, kind and notes."""
    collector = indexes.collector
    found_dicom = [p for p, look in contents.looks.items() if look.dicom and not look.index]
    undescribed = 0
    for path in found_dicom:
        instance = contents.instances.get(path)
        if instance is not None and _describes(instance):
            collector.add_instance(path, instance)
        else:
            undescribed += 1
    dicom = indexes.referenced | set(found_dicom)
    try:
        roles = assign_roles(listing, [f.path for f in indexes.found], dicom, contents.looks, contents.texts)
    except Exception:  # a bug here must not turn a patient away: then no viewer, everything is sent
        index = {f.path for f in indexes.found}
        roles = {f.path: "index" if f.path in index else "dicom" if f.path in dicom else "other" for f in listing}
    by_role = {role: {"files": 0, "bytes": 0} for role in ROLES}
    for f in listing:
        by_role[roles[f.path]]["files"] += 1
        by_role[roles[f.path]]["bytes"] += f.size
    total = sum(f.size for f in listing)
    kind = _kind(listing, total, indexes, found_dicom)
    referenced = len(indexes.referenced)
    return DiscSummary(
        files=len(listing),
        bytes=total,
        dicomdirs=[f.path for f in indexes.found],
        patients=collector.finish(),
        referenced=referenced,
        unreferenced=len(listing) - referenced,
        missing=collector.missing,
        problems=indexes.problems,
        kind=kind,
        roles=roles,
        unreadable=[{"path": f.path, "error": unreadable[f.path]} for f in listing if f.path in unreadable],
        notes=_notes(listing, kind, indexes, found_dicom, undescribed, by_role, unreadable),
        by_role=by_role,
    )


def _describes(instance: Instance) -> bool:
    """Whether a header says anything to show: some patient, study, series or instance."""
    return any((instance.patient_name, instance.patient_id, instance.study_uid, instance.series_uid,
                instance.sop_instance_uid))


def _kind(listing: Sequence[DiscFile], total: int, indexes: _Indexes, found_dicom: list[str]) -> str:
    if total == 0:
        return "empty"
    if indexes.usable:
        return "dicom"
    return "dicom-without-index" if found_dicom else "not-dicom"


def _notes(
    listing: Sequence[DiscFile],
    kind: str,
    indexes: _Indexes,
    found_dicom: list[str],
    undescribed: int,
    by_role: Mapping[str, Mapping[str, int]],
    unreadable: Mapping[str, str],
) -> list[str]:
    """Plain-language lines for the patient: what kind of disc this is, and what goes where."""
    notes: list[str] = []
    if kind == "empty":
        notes.append(_NOTE_EMPTY if not listing else _NOTE_ALL_EMPTY)
    elif kind == "not-dicom":
        notes.append(_NOTE_NOT_DICOM)
    elif kind == "dicom-without-index":
        notes.append(_NOTE_BAD_INDEX if indexes.found else _NOTE_NO_INDEX)
    elif found_dicom:
        notes.append(_NOTE_UNLISTED.format(count=len(found_dicom)))
    if undescribed:
        notes.append(_NOTE_UNDESCRIBED.format(count=undescribed))
    viewer, other = by_role["viewer"], by_role["other"]
    if viewer["files"]:
        notes.append(_NOTE_VIEWER.format(count=viewer["files"], size=_size(viewer["bytes"])))
    if other["files"] and kind != "not-dicom":
        notes.append(_NOTE_OTHER.format(count=other["files"], size=_size(other["bytes"])))
    if unreadable:
        notes.append(_NOTE_UNREADABLE.format(count=len(unreadable)))
    return notes


def _size(count: int) -> str:
    """Bytes as the page shows them: decimal MB (kB below one MB)."""
    if count < 1_000_000:
        return f"{max(1, round(count / 1000)) if count else 0} kB"
    if count < 1_000_000_000:
        return f"{count / 1e6:.1f} MB"
    return f"{count / 1e9:.2f} GB"


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

    def add_instance(self, path: str, instance: Instance) -> None:
        """A DICOM file found by its content: merged with the indexes' records by name+ID and UIDs.

        Files without a study or series UID are grouped per patient rather than one study each.
        """
        patient = self._patient(instance.patient_name, instance.patient_id)
        study_key = (patient, instance.study_uid)
        study = self._studies.get(study_key)
        if study is None:
            study = self._studies[study_key] = Study("", "", instance.study_uid)
            self._patients[patient].studies.append(study)
        study.date = study.date or instance.study_date
        study.description = study.description or instance.study_description
        series_key = (study_key, instance.series_uid)
        if series_key not in self._series:
            self._series[series_key] = Series(
                instance.modality, instance.series_number, instance.series_description, instance.series_uid
            )
            study.series.append(self._series[series_key])
            self._images[series_key] = set()
        series = self._series[series_key]
        series.modality = series.modality or instance.modality
        self._images[series_key].add(instance.sop_instance_uid or _path_key(path.split("/")))

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
    return tuple(name_key(p) for p in parts)
