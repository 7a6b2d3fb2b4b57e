"""Whether compressing a file pays (the trial is deflate, in every Python), told from its first piece alone.

Deflating what is compressed already (JPEG or JPEG 2000 pixel data, PDFs, archives, video)
costs an old laptop most of its time and saves nothing, so such files are stored as they are.
The decision depends on the file's bytes only, never on timing, so that the same disc always
gives the same package (resuming depends on it). In order:

1. A DICOM file (PS3.10) says how its pixel data is encoded: the JPEG family, JPEG-LS,
   JPEG 2000, HTJ2K, MPEG and HEVC (all of PS3.5 `1.2.840.10008.1.2.4.*`) and Deflated
   Explicit VR are compressed; native pixel data and RLE (which deflate still shrinks) are not.
2. Other files by their signature: the formats a disc or a scanned document brings that are
   compressed by construction.
3. Anything else of some size by a trial: a sample from the middle of the first piece,
   deflated at level 1, must shrink by at least a twentieth.
"""

from __future__ import annotations

import zlib

from pcir_upload.page.disc.dicommeta import PREAMBLE, TRANSFER_SYNTAX, file_meta, is_part10

_COMPRESSED_SYNTAX_PREFIX = "1.2.840.10008.1.2.4."
_DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"

# (offset, signature) of formats that are compressed by construction.
_SIGNATURES = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"GIF8"),
    (0, b"%PDF-"),
    (0, b"PK\x03\x04"),  # ZIP, and Office documents
    (0, b"\x1f\x8b"),  # gzip
    (0, b"BZh"),
    (0, b"\xfd7zXZ\x00"),
    (0, b"\x28\xb5\x2f\xfd"),  # zstd
    (0, b"7z\xbc\xaf\x27\x1c"),
    (0, b"Rar!\x1a\x07"),
    (0, b"MSCF"),  # Windows cabinet (viewer installers)
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n"),  # JPEG 2000 (JP2)
    (0, b"\xff\x4f\xff\x51"),  # JPEG 2000 codestream
    (4, b"ftyp"),  # MP4, QuickTime, HEIF, AVIF
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska, WebM
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"OggS"),
    (0, b"ID3"),  # MP3
    (8, b"WEBP"),
    (8, b"AVI "),
)
TRIAL_FROM = 64 * 1024  # smaller files are deflated without a trial: it would cost as much
TRIAL_SIZE = 16 * 1024
MIN_SAVING = 0.05


def worth_deflating(first: bytes) -> bool:
    """Whether to deflate the file whose first piece (up to a few MiB) is `first`."""
    if not first:
        return False
    if is_part10(first):
        syntax = file_meta(first, PREAMBLE + 4)[0].get(TRANSFER_SYNTAX, "")
        return not (syntax.startswith(_COMPRESSED_SYNTAX_PREFIX) or syntax == _DEFLATED_SYNTAX)
    if any(first[at:at + len(sig)] == sig for at, sig in _SIGNATURES):
        return False
    if len(first) < TRIAL_FROM:
        return True
    middle = len(first) // 2
    sample = first[middle - TRIAL_SIZE // 2 : middle + TRIAL_SIZE // 2]
    deflater = zlib.compressobj(1, zlib.DEFLATED, -15)
    deflated = len(deflater.compress(sample)) + len(deflater.flush())
    return deflated <= (1 - MIN_SAVING) * len(sample)
