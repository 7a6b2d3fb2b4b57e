"""Writing a cleaned object with its pixel data copied from the original file piece by piece.

pydicom writes a deferred value by reading it whole into memory (twice over, measured: a
300 MiB volume peaked at 650 MiB). Pixel data that the header cleaning left alone is the same
bytes in the same encoding, so when it is the dataset's last element and was deferred, the
dataset is written without it and the element is appended from the original file in 1 MiB
pieces: memory stays at one piece whatever the size of the volume.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

PIXEL_DATA = Tag(0x7FE0, 0x0010)
PIECE = 1 << 20


def _streamable(ds: Dataset, transfer_syntax_is_deflated: bool) -> RawDataElement | None:
    raw = ds._dict.get(PIXEL_DATA)
    if (transfer_syntax_is_deflated or not isinstance(raw, RawDataElement) or raw.value is not None
            or raw.length in (0, 0xFFFFFFFF) or max(ds._dict) != PIXEL_DATA):
        return None
    return raw


def save(ds: Dataset, target: Path, source: Path, deflated: bool) -> None:
    """ds.save_as(target), with deferred trailing pixel data copied from `source` in pieces."""
    raw = _streamable(ds, deflated)
    if raw is None:
        ds.save_as(target, enforce_file_format=True)
        return
    del ds[PIXEL_DATA]
    ds.save_as(target, enforce_file_format=True)
    order = "<" if raw.is_little_endian else ">"
    if raw.is_implicit_VR:
        header = struct.pack(order + "HHI", 0x7FE0, 0x0010, raw.length)
    else:
        vr = (raw.VR or "OW").encode("ascii")
        header = struct.pack(order + "HH2sHI", 0x7FE0, 0x0010, vr, 0, raw.length)
    with open(source, "rb") as original, open(target, "ab") as out:
        out.write(header)
        original.seek(raw.value_tell)
        left = raw.length
        while left:
            piece = original.read(min(PIECE, left))
            if not piece:
                raise EOFError(f"{source} ended {left} bytes before its pixel data did")
            out.write(piece)
            left -= len(piece)
