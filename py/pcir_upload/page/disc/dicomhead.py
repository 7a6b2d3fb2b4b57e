"""Whether a file is DICOM, and whose images it holds, from its first bytes only.

A disc without a usable DICOMDIR is described from its files' headers. On a CD drive reading
a few KB per file is cheap and reading whole images is not, so everything here works on a
file's *head*: it says when the head was too short to tell, and the caller reads a longer one.
Parsing stops at the first element after SeriesNumber (0020,0011), which every summary field
precedes, so pixel data and the large groups after it are never parsed, nor need to be read.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from dataclasses import dataclass

from pydicom.charset import TEXT_VR_DELIMS, convert_encodings, decode_bytes
from pydicom.valuerep import PersonName

from pcir_upload.page.disc.dicommeta import LONG_VRS, PREAMBLE, TRANSFER_SYNTAX, UNDEFINED, VRS, file_meta, is_part10, is_vr

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
    walk = _walk(data, implicit, little, size)
    instance = _instance(walk, transfer_syntax)
    complete = whole or walk.stopped or walk.broken
    if bare:
        well_formed = walk.count >= _MIN_BARE_ELEMENTS and not walk.broken
        uids = (instance.sop_class_uid, instance.sop_instance_uid, instance.study_uid, instance.series_uid)
        if not (well_formed and any(_UID.match(u) and len(u) <= 64 for u in uids)):
            # Not (yet) convincing: a longer head may show more elements.
            return Head(dicom=False, complete=complete or walk.broken)
    return Head(dicom=True, complete=complete, instance=instance)


@dataclass
class _Walked:
    """What walking a dataset's top-level elements found."""

    values: dict[int, bytes]  # the wanted elements' raw values
    count: int = 0  # elements seen
    stopped: bool = False  # reached an element after SeriesNumber: the head was long enough
    broken: bool = False  # tags out of order, a length past the end of the file, or garbage


class _Cut(Exception):
    """The head ends inside an element."""


def _walk(data: bytes, implicit: bool, little: bool, size: int | None) -> _Walked:
    """The dataset's top-level elements up to SeriesNumber, walked by hand: every element but
    the dozen the summary needs is skipped by its length, sequences by their delimiters.
    (pydicom's reader builds each element it passes; on a 20,000-file disc that was most of
    the scan.) Like pydicom, it reads the first element's VR to tell explicit from implicit,
    whatever the transfer syntax claims."""
    walked = _Walked({})
    if len(data) >= 6:
        implicit = bytes(data[4:6]) not in VRS
    codec = _Codec(little, implicit)
    pos, last = 0, -1
    try:
        while pos + 8 <= len(data):
            tag, length, start = codec.element(data, pos)
            if tag < last:
                walked.broken = True
                break
            if tag > _LAST_NEEDED:
                walked.stopped = True
                break
            if size is not None and length != UNDEFINED and length > size:
                walked.broken = True
                break
            if tag != last:
                walked.count += 1
            last = tag
            if length == UNDEFINED:
                pos = _past_sequence(data, start, codec)
                continue
            if start + length > len(data):
                raise _Cut
            if tag in _WANTED:
                walked.values[tag] = bytes(data[start : start + length])
            pos = start + length
    except _Cut:
        pass
    except _Garbage:
        walked.broken = True
    return walked


class _Garbage(Exception):
    """Bytes no valid file has there."""


class _Codec:
    """Element headers in one transfer syntax's byte order and VR rule (PS3.5 7.1)."""

    def __init__(self, little: bool, implicit: bool):
        order = "<" if little else ">"
        self.implicit = implicit
        self._implicit = struct.Struct(order + "HHI")
        self._explicit = struct.Struct(order + "HH2sH")
        self._long = struct.Struct(order + "I")

    def element(self, data: bytes, pos: int) -> tuple[int, int, int]:
        """(tag, value length, where the value starts) of the element at `pos`."""
        if self.implicit:
            group, element, length = self._implicit.unpack_from(data, pos)
            return (group << 16) | element, length, pos + 8
        group, element, vr, length = self._explicit.unpack_from(data, pos)
        if vr in LONG_VRS:
            if pos + 12 > len(data):
                raise _Cut
            return (group << 16) | element, self._long.unpack_from(data, pos + 8)[0], pos + 12
        if vr not in VRS and group != 0xFFFE:
            raise _Garbage
        return (group << 16) | element, length, pos + 8

    def delimiter(self, data: bytes, pos: int) -> tuple[int, int]:
        """(tag, length) of an item or delimitation item: these have no VR in any syntax."""
        group, element, length = self._implicit.unpack_from(data, pos)
        return (group << 16) | element, length


_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def _past_sequence(data: bytes, pos: int, codec: _Codec) -> int:
    """Where an undefined-length sequence whose items start at `pos` ends."""
    while pos + 8 <= len(data):
        tag, length = codec.delimiter(data, pos)
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _Garbage
        pos = _past_item(data, pos, codec) if length == UNDEFINED else pos + length
    raise _Cut


def _past_item(data: bytes, pos: int, codec: _Codec) -> int:
    """Where an undefined-length item whose elements start at `pos` ends."""
    while pos + 8 <= len(data):
        if codec.delimiter(data, pos)[0] == _ITEM_END:
            return pos + 8
        _, length, start = codec.element(data, pos)
        pos = _past_sequence(data, start, codec) if length == UNDEFINED else start + length
    raise _Cut


# Instance field -> tag.
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
_CHARACTER_SET = 0x00080005
_PATIENT_NAME = 0x00100010
# Text the character set applies to (SH, LO): the descriptions and the patient's id.
_CHARSET_TAGS = {0x00100020, 0x00081030, 0x0008103E}


_WANTED = set(_FIELDS.values()) | {_CHARACTER_SET}


def _instance(walked: _Walked, transfer_syntax: str) -> Instance:
    """The summary's fields as the header spells them, decoded in its character set; a value
    that does not decode is left empty rather than failing the file."""
    values = walked.values
    encodings = ["iso8859"]
    if _CHARACTER_SET in values:
        try:
            terms = [t.strip() for t in values[_CHARACTER_SET].decode("latin-1").split("\\")]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an unknown term warns, and is left out
                encodings = convert_encodings(terms)
        except Exception:
            pass
    fields = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd values warn about everything
        for field, tag in _FIELDS.items():
            raw = values.get(tag)
            try:
                fields[field] = "" if raw is None else _text(raw, tag, encodings)
            except Exception:
                fields[field] = ""
    return Instance(transfer_syntax=transfer_syntax, **fields)


def _text(raw: bytes, tag: int, encodings: list[str]) -> str:
    """A value as the header spells it; multiple values joined with '\\' as on the wire."""
    if tag == _PATIENT_NAME:
        text = str(PersonName(raw.rstrip(b"\0 "), encodings))
    elif tag in _CHARSET_TAGS:
        text = decode_bytes(raw, encodings, TEXT_VR_DELIMS)
    else:
        text = raw.decode("latin-1")
    return "\\".join(part.strip("\0 ") for part in text.split("\\")).strip("\0 ")
