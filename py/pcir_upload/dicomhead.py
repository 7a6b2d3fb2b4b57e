"""Whether a file is DICOM, and whose images it holds, from its first bytes only.

A disc without a usable DICOMDIR is described from its files' headers. On a CD drive reading
a few KB per file is cheap and reading whole images is not, so everything here works on a
file's *head*: it says when the head was too short to tell, and the caller reads a longer one.
Parsing stops at the first element after SeriesNumber (0020,0011), which every summary field
precedes, so pixel data and the large groups after it are never parsed, nor need to be read.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass

import pydicom
from pydicom.filereader import read_dataset

from .dicommeta import PREAMBLE, TRANSFER_SYNTAX, UNDEFINED, file_meta, is_part10, is_vr

__all__ = ["MEDIA_STORAGE_DIRECTORY", "Head", "Instance", "read_head"]

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR

_LAST_NEEDED = 0x00200011  # SeriesNumber
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
# Transfer syntaxes whose whole dataset (not only the pixel data) is deflated: PS3.5 A.5.
_DEFLATED = {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205"}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")
# A dataset found without a preamble must show at least this many well-formed elements.
_MIN_BARE_ELEMENTS = 3


@dataclass(frozen=True)
class Instance:
    """The summary's fields of one DICOM file, as its header spells them ('' when absent)."""

    patient_name: str = ""
    patient_id: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_description: str = ""
    series_uid: str = ""
    modality: str = ""
    series_number: str = ""
    series_description: str = ""
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    transfer_syntax: str = ""


@dataclass(frozen=True)
class Head:
    """What a file's head shows.

    `complete` is False when a longer head could change the answer (the head ended before the
    summary's fields); `instance` is None for non-DICOM files, DICOMDIRs, and DICOM files
    whose dataset could not be parsed at all.
    """

    dicom: bool
    complete: bool
    index: bool = False
    instance: Instance | None = None


NOT_DICOM = Head(dicom=False, complete=True)


def read_head(head: bytes, size: int) -> Head:
    """Read the head (the first bytes) of a file of `size` bytes; never raises on any input."""
    whole = len(head) >= size
    try:
        if is_part10(head):
            return _part10(head, PREAMBLE + 4, whole, size, bare=False)
        start = _bare_start(head)
        if start == "meta":
            return _part10(head, 0, whole, size, bare=True)
        if start is not None:
            return _dataset(head, whole, size, implicit=True, little=start == "le", transfer_syntax="", bare=True)
    except Exception:  # untrusted bytes: whatever pydicom trips over, the file is still carried
        if is_part10(head):
            return Head(dicom=True, complete=True)
    return NOT_DICOM


def _bare_start(head: bytes) -> str | None:
    """How a file without preamble might start as DICOM: 'meta', 'le', 'be', or None.

    Such files (old ACR-NEMA style writers, datasets saved without meta) start with a group
    0002 or 0008 element; big endian ones can only be explicit VR.
    """
    if len(head) < 8:
        return None
    group, element = struct.unpack_from("<HH", head)
    if group == 0x0002 and element <= 0x0001 and is_vr(head[4:6]):
        return "meta"
    if group == 0x0008:
        return "le"
    if struct.unpack_from(">H", head)[0] == 0x0008 and is_vr(head[4:6]):
        return "be"
    return None


def _part10(head: bytes, offset: int, whole: bool, size: int, bare: bool) -> Head:
    """A file with File Meta Information (group 0002) at `offset`."""
    meta, end = file_meta(head, offset)
    if end is None:  # the head ends inside the meta information
        return Head(dicom=not bare, complete=whole)
    sop_class = meta.get(0x00020002, "")
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        return Head(dicom=True, complete=True, index=True)
    transfer_syntax = meta.get(TRANSFER_SYNTAX, "")
    data, data_whole = head[end:], whole
    if transfer_syntax in _DEFLATED:
        data, data_whole = _inflate(data, whole)
    result = _dataset(
        data, data_whole, size if data_whole or transfer_syntax not in _DEFLATED else None,
        implicit=transfer_syntax in ("", _IMPLICIT_LE),
        little=transfer_syntax != _EXPLICIT_BE,
        transfer_syntax=transfer_syntax,
        bare=bare,
    )
    if not bare and not result.dicom:  # DICM says DICOM even if its dataset is garbage
        return Head(dicom=True, complete=result.complete)
    return result


def _inflate(data: bytes, whole: bool) -> tuple[bytes, bool]:
    """As much of a deflated dataset as the head holds (a cut stream inflates up to the cut)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        return inflater.decompress(data), whole
    except zlib.error:
        return b"", True  # corrupt: a longer head will not help


def _dataset(
    data: bytes, whole: bool, size: int | None, *, implicit: bool, little: bool, transfer_syntax: str, bare: bool
) -> Head:
    """Parse the dataset up to SeriesNumber; a `bare` one (no DICM) must also look like DICOM."""
    watch = _Watch(size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # forced reads of odd files warn about everything
        ds = read_dataset(io.BytesIO(data), implicit, little, stop_when=watch)
        instance = _instance(ds, transfer_syntax)
    complete = whole or watch.stopped or watch.broken
    if bare:
        well_formed = watch.count >= _MIN_BARE_ELEMENTS and not watch.broken
        uids = (instance.sop_class_uid, instance.sop_instance_uid, instance.study_uid, instance.series_uid)
        if not (well_formed and any(_UID.match(u) and len(u) <= 64 for u in uids)):
            # Not (yet) convincing: a longer head may show more elements.
            return Head(dicom=False, complete=complete or watch.broken)
    return Head(dicom=True, complete=complete, instance=instance)


class _Watch:
    """pydicom's stop_when: stops after the summary's fields, and on elements no valid file has."""

    def __init__(self, size: int | None):
        self._size = size
        self._last = -1
        self.count = 0
        self.stopped = False  # reached an element after SeriesNumber: the head was long enough
        self.broken = False  # tags out of order or a length past the end of the file

    def __call__(self, tag: int, vr: str | None, length: int) -> bool:
        tag = int(tag)  # pydicom's BaseTag compares in Python; a plain int in C, once per element
        if tag < self._last or (self._size is not None and length != UNDEFINED and length > self._size):
            self.broken = True
            return True
        if tag > _LAST_NEEDED:
            self.stopped = True
            return True
        if tag != self._last:
            self.count += 1
        self._last = tag
        return False


# Instance field -> tag; looked up by tag, which skips pydicom's keyword lookup per access.
_FIELDS = {
    "patient_name": 0x00100010,
    "patient_id": 0x00100020,
    "study_uid": 0x0020000D,
    "study_date": 0x00080020,
    "study_description": 0x00081030,
    "series_uid": 0x0020000E,
    "modality": 0x00080060,
    "series_number": 0x00200011,
    "series_description": 0x0008103E,
    "sop_instance_uid": 0x00080018,
    "sop_class_uid": 0x00080016,
}


def _instance(ds: pydicom.Dataset, transfer_syntax: str) -> Instance:
    """The summary's fields; a value that does not decode is left empty rather than failing the file."""
    values = {}
    for field, tag in _FIELDS.items():
        try:
            values[field] = _text(ds[tag].value) if tag in ds else ""
        except Exception:
            values[field] = ""
    return Instance(transfer_syntax=transfer_syntax, **values)


def _text(value: object) -> str:
    """A value as the header spells it; multiple values joined with '\\' as on the wire."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\0 ")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v).strip() for v in value)  # type: ignore[union-attr]
    return str(value).strip("\0 ")
