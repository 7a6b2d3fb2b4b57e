"""DICOM's File Meta Information (PS3.10 7.1), read from a file's first bytes without pydicom.

Both the scan (dicomhead) and the packer, which runs where pydicom is not loaded, need the
transfer syntax a file declares; group 0002 is simple enough to walk by hand.
"""

from __future__ import annotations

import struct

PREAMBLE = 128  # bytes before "DICM"
UNDEFINED = 0xFFFFFFFF
TRANSFER_SYNTAX = 0x00020010
# Explicit VR elements of these VRs have a 4-byte length after 2 reserved bytes (PS3.5 7.1.2).
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
VRS = LONG_VRS | {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
}


def is_part10(head: bytes) -> bool:
    return head[PREAMBLE : PREAMBLE + 4] == b"DICM"


def is_vr(raw: bytes) -> bool:
    return len(raw) == 2 and all(0x41 <= b <= 0x5A for b in raw)


def file_meta(head: bytes, offset: int) -> tuple[dict[int, str], int | None]:
    """The meta elements' text values and where the dataset starts (None: cut off in the head).

    Group 0002 is always explicit VR little endian; it is walked element by element rather
    than trusting its group length, which some writers get wrong.
    """
    values: dict[int, str] = {}
    pos = offset
    while pos + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, pos)
        if group != 0x0002:
            return values, pos
        vr = bytes(head[pos + 4 : pos + 6])  # the head may be a bytearray
        if vr in LONG_VRS:
            if pos + 12 > len(head):
                return values, None
            length, start = struct.unpack_from("<I", head, pos + 8)[0], pos + 12
        elif is_vr(vr):
            length, start = struct.unpack_from("<H", head, pos + 6)[0], pos + 8
        else:  # implicit VR meta: against the standard, but seen
            length, start = struct.unpack_from("<I", head, pos + 4)[0], pos + 8
        if length == UNDEFINED or start + length > len(head):
            return values, None
        if element in (0x0002, 0x0010):
            values[(group << 16) | element] = head[start : start + length].decode("latin-1").strip("\0 ")
        pos = start + length
    return values, (pos if pos == len(head) else None)
