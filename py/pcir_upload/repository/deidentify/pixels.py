"""Clean Pixel Data (PS3.15 Annex E): find text burned into an image's pixels and blank it.

Headers are cleaned element by element elsewhere; this module deals with what no header
element holds: a patient's name, id or dates drawn into the pixels by an ultrasound machine,
a screen capture or a dose screen. An image is examined unless its header clears it
(`examine_reason`); an examined image is decoded, every frame (or, for a long cine, a bounded
sample) is read by tesseract, and each word read is blanked. Whatever was found, or could not
be examined, sends the image to review: OCR misses text, so its "nothing found" is the only
outcome that lets an examined image be released without a person's look.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
import pydicom.pixels
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from pcir_upload.repository.deidentify import ocr

# A box found on a multi-frame image is blanked on every frame: overlays are drawn at one
# place for the whole cine, and OCR that read a word on frame 3 may miss it on frame 4.
ALL_FRAMES = -1
# Frames read per image: every frame up to this many; a longer cine is sampled evenly
# (first and last included), the boxes are blanked on all frames, and it goes to review.
FRAMES_READ = 10
# Above this the decoded image (every frame, every sample) is not held in memory here.
MAX_DECODED_BYTES = 1 << 30

# Storage classes whose images are made from the screen or the camera: text is the norm there,
# and the flag BurnedInAnnotation is set by the very devices that draw it, so it clears none.
_ALWAYS_EXAMINED = {
    "1.2.840.10008.5.1.4.1.1.6": "ultrasound (retired)",
    "1.2.840.10008.5.1.4.1.1.6.1": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.6.2": "enhanced ultrasound volume",
    "1.2.840.10008.5.1.4.1.1.3": "ultrasound multi-frame (retired)",
    "1.2.840.10008.5.1.4.1.1.3.1": "ultrasound multi-frame",
    "1.2.840.10008.5.1.4.1.1.7": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "multi-frame single bit secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "multi-frame grayscale byte secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "multi-frame grayscale word secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "multi-frame true color secondary capture",
    "1.2.840.10008.5.1.4.1.1.77.1.1": "VL endoscopic",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": "video endoscopic",
    "1.2.840.10008.5.1.4.1.1.77.1.2": "VL microscopic",
    "1.2.840.10008.5.1.4.1.1.77.1.2.1": "video microscopic",
    "1.2.840.10008.5.1.4.1.1.77.1.3": "VL slide-coordinates microscopic",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL photographic",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "video photographic",
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "ophthalmic photography 8 bit",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "ophthalmic photography 16 bit",
    "1.2.840.10008.5.1.4.1.1.77.1.5.7": "wide field ophthalmic photography",
    "1.2.840.10008.5.1.4.1.1.77.1.7": "dermoscopic photography",
}
_ALWAYS_EXAMINED_MODALITIES = {
    "US": "ultrasound", "IVUS": "intravascular ultrasound", "SC": "secondary capture",
    "OT": "other", "XC": "external camera", "ES": "endoscopy", "GM": "general microscopy",
    "OP": "ophthalmic photography", "DOC": "document", "VL": "visible light",
}
# Reconstructed cross-sectional images: the scanner computes them from raw data, so an
# ORIGINAL one carries no drawn text; their screen saves and dose screens are DERIVED.
_CROSS_SECTIONAL = {
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.2.1": "enhanced CT",
    "1.2.840.10008.5.1.4.1.1.2.2": "legacy converted enhanced CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.4.1": "enhanced MR",
    "1.2.840.10008.5.1.4.1.1.4.3": "enhanced MR color",
    "1.2.840.10008.5.1.4.1.1.4.4": "legacy converted enhanced MR",
    "1.2.840.10008.5.1.4.1.1.128": "PET",
    "1.2.840.10008.5.1.4.1.1.130": "enhanced PET",
    "1.2.840.10008.5.1.4.1.1.128.1": "legacy converted enhanced PET",
    "1.2.840.10008.5.1.4.1.1.20": "NM",
    "1.2.840.10008.5.1.4.1.1.481.1": "RT image",
}
# Words in ImageType or a description that mark a picture of a screen or of a report. Not
# "protocol" alone: ProtocolName names the protocol of every ordinary slice, and OCR of a
# whole CT series is minutes spent on nothing.
_SCREEN_WORDS = re.compile(r"\b(SCREEN ?SAVE|SCREEN|SCREENSHOT|DOSE|DOSE_INFO|REPORT|SUMMARY|CAPTURE|PATIENT PROTOCOL)\b")
_LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
}


@dataclass(frozen=True)
class TextBox:
    """Text found in (or, drawn by an operator, to be blanked from) one frame's pixels.

    `frame` is ALL_FRAMES (-1) for a box that applies to every frame of the image.
    """

    frame: int
    left: int
    top: int
    width: int
    height: int
    text: str  # what OCR read there
    reason: str  # "identity" | "name" | "date" | "text"


@dataclass(frozen=True)
class PixelResult:
    """What Clean Pixel Data did to one image, and whether a person must look at it."""

    boxes: tuple[TextBox, ...]  # text found, and blanked in the dataset
    review: str | None  # None: may be released; else the plain reason a person must look


class Undecodable(Exception):
    """The pixel data cannot be decoded (or rewritten) here; the message says why."""


def examine_reason(ds: pydicom.Dataset) -> str | None:
    """Why this image may carry burned-in text; None when its header clears it.

    Cleared are only images with nothing to read (no pixel data), images flagged
    BurnedInAnnotation NO outside the screen-and-camera classes, and ORIGINAL reconstructed
    cross-sectional images (CT, MR, PET, NM, RT image); everything else is examined.
    """
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            return "float pixel data (not cleared by any header)"
        return None
    burned = str(ds.get("BurnedInAnnotation", "")).strip().upper()
    if burned == "YES":
        return "BurnedInAnnotation is YES"
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class in _ALWAYS_EXAMINED:
        return f"{_ALWAYS_EXAMINED[sop_class]} images often carry burned-in text"
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality in _ALWAYS_EXAMINED_MODALITIES:
        return f"modality {modality} ({_ALWAYS_EXAMINED_MODALITIES[modality]}) often carries burned-in text"
    image_type = [str(value).strip().upper() for value in _values(ds.get("ImageType"))]
    if _SCREEN_WORDS.search(" ".join(image_type)):
        return f"ImageType {chr(92).join(image_type)} marks a screen save or report"
    described = " ".join(
        str(ds.get(keyword, "")).upper()
        for keyword in ("SeriesDescription", "ImageComments", "DerivationDescription")
    )
    if match := _SCREEN_WORDS.search(described):
        return f"its description names a {match.group(1).lower()} (a screen save or dose report)"
    if image_type[:2] == ["DERIVED", "SECONDARY"] and burned != "NO":
        return "ImageType DERIVED\\SECONDARY without BurnedInAnnotation NO"
    if burned == "NO":
        return None
    if sop_class in _CROSS_SECTIONAL and image_type[:1] == ["ORIGINAL"]:
        return None
    kind = UID(sop_class).name if sop_class else "no SOP class"
    return f"the header does not clear it ({kind}, modality {modality or 'none'}, ImageType {chr(92).join(image_type) or 'none'})"


def clean_pixels(ds: pydicom.Dataset, identity: Sequence[str]) -> PixelResult:
    """Decode the pixel data, OCR every frame (a bounded sample of a long cine), blank found text.

    `identity` holds the contribution's own identifying strings from the original headers
    (name components, ids, dates); words that match one of them are reported as "identity".
    The dataset is changed in place only when something was blanked; then its pixel data is
    native Explicit VR Little Endian.
    """
    try:
        image = _decode(ds)
    except Undecodable as error:
        return PixelResult((), f"the pixel data cannot be examined: {error}")
    frames = image.pixels.shape[0]
    read = _frames_to_read(frames)
    # Identical frames (a paused cine, a static screen) are read once.
    distinct: dict[bytes, np.ndarray] = {}
    try:
        for index in read:
            grey = _grey8(ds, image, index)
            distinct.setdefault(hashlib.blake2b(grey.tobytes(), digest_size=16).digest(), grey)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
        # A palette without its tables, a window of text: the header contradicts the pixels.
        return PixelResult((), f"the pixel data cannot be examined: {type(error).__name__}: {error}")
    try:
        pages = ocr.read_words(list(distinct.values()), scales=_scales(*image.pixels.shape[1:3]))
    except ocr.OcrError as error:
        return PixelResult((), f"the pixels could not be read for text: {error}")
    frame = ALL_FRAMES if frames > 1 else 0
    boxes = _merge(
        [
            _along_line(grey, TextBox(frame, word.left, word.top, word.width, word.height, word.text, reason))
            for grey, words in zip(distinct.values(), pages)
            for word, reason in ocr.classify(words, identity)
        ]
    )
    notes = []
    if frames > len(read):
        notes.append(
            f"a cine of {frames} frames: {len(read)} were read for text, so the others may carry text not seen"
        )
    if boxes:
        try:
            _blank_image(image, boxes)
            _write_back(ds, image)
        except Undecodable as error:
            return PixelResult(boxes, f"text was found but cannot be blanked: {error}")
        listed = "; ".join(
            f"{box.reason} {box.text!r} at {box.left},{box.top} {box.width}x{box.height}"
            + ("" if box.frame in (0, ALL_FRAMES) else f" frame {box.frame}")
            for box in boxes
        )
        notes.insert(0, f"text found in the pixels: {listed}")
    return PixelResult(boxes, "; ".join(notes) or None)


def blank(ds: pydicom.Dataset, boxes: Sequence[TextBox]) -> None:
    """Blank the given boxes (each with a margin) in the dataset's pixel data, in place.

    Used by clean_pixels and by the review page when an operator draws a box; raises
    Undecodable when the pixel data cannot be decoded or written back.
    """
    if not boxes:
        return
    image = _decode(ds)
    _blank_image(image, boxes)
    _write_back(ds, image)


def blanked_region(box: TextBox, rows: int, columns: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), exclusive ends: the pixels blank() fills for a box.

    The margin covers the antialiased fringe of the glyphs and the pixel or two by which
    tesseract's box falls short of them.
    """
    margin = 2 + box.height // 4
    top = max(0, box.top - margin)
    left = max(0, box.left - margin)
    bottom = min(rows, box.top + box.height + margin)
    right = min(columns, box.left + box.width + margin)
    return top, bottom, left, right


@dataclass
class _Image:
    """Decoded pixel data as (frames, rows, columns, samples), and how to write it back."""

    source: pydicom.Dataset  # for its palette
    pixels: np.ndarray
    photometric: str  # after decoding: YBR is RGB by then
    bits_stored: int
    multi_frame: bool  # NumberOfFrames present: kept present when written back
    lossy: str | None  # the lossy method the source's syntax implies, if any
    rewritable: bool


def _decode(ds: pydicom.Dataset) -> _Image:
    """The whole pixel data decoded by pydicom's handlers, or Undecodable saying why not."""
    if "PixelData" not in ds:
        raise Undecodable("there is no (integer) Pixel Data")
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)) if meta else ExplicitVRLittleEndian)
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        allocated = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as error:
        raise Undecodable(f"the image pixel module is incomplete ({error})") from error
    size = rows * columns * samples * frames * max(1, allocated // 8)
    if size > MAX_DECODED_BYTES:
        raise Undecodable(f"{size / 1e6:.0f} MB decoded is more than this repository decodes at once")
    try:
        decoder = pydicom.pixels.get_decoder(syntax)
    except NotImplementedError as error:
        raise Undecodable(f"no decoder for the transfer syntax {syntax.name} ({syntax})") from error
    if not decoder.is_available:
        raise Undecodable(f"the decoders for {syntax.name} are not installed")
    try:
        pixels, info = decoder.as_array(ds, as_rgb=True)
    except Exception as error:  # noqa: BLE001 - any decoder failure means: not examined
        raise Undecodable(f"decoding {syntax.name} failed: {type(error).__name__}: {error}") from error
    photometric = str(info.get("photometric_interpretation", ds.get("PhotometricInterpretation", "")))
    samples = int(info.get("samples_per_pixel", samples))
    try:
        pixels = pixels.reshape(frames, rows, columns, samples)
    except ValueError as error:
        raise Undecodable(f"the decoded pixels do not fit the header's frames and size: {error}") from error
    lossy = _LOSSY_SYNTAXES.get(str(syntax))
    if str(ds.get("LossyImageCompression", "")) == "01" and lossy is None:
        lossy = "as flagged"
    return _Image(
        source=ds,
        pixels=pixels,
        photometric=photometric,
        bits_stored=int(ds.get("BitsStored", allocated)),
        multi_frame="NumberOfFrames" in ds,
        lossy=lossy,
        rewritable=allocated in (8, 16) and pixels.dtype.itemsize in (1, 2),
    )


def _frames_to_read(frames: int) -> list[int]:
    """Every frame, or FRAMES_READ of them spread evenly with the first and the last."""
    if frames <= FRAMES_READ:
        return list(range(frames))
    return sorted({round(i * (frames - 1) / (FRAMES_READ - 1)) for i in range(FRAMES_READ)})


def _scales(rows: int, columns: int) -> tuple[int, ...]:
    """The enlargements tesseract reads a frame at: small text needs 2–3x, large text 1x.

    Reading at 1x as well costs a ninth (a quarter) of reading at 3x (2x).
    """
    pixels = rows * columns
    if pixels <= 120_000:
        return (3, 1)
    if pixels <= 1_300_000:
        return (2, 1)
    return (1,)


def _grey8(ds: pydicom.Dataset, image: _Image, index: int) -> np.ndarray:
    """One frame as 8-bit grey, as a viewer would show it, for OCR."""
    frame = image.pixels[index]
    if image.photometric == "PALETTE COLOR":
        frame = pydicom.pixels.apply_color_lut(frame[..., 0], ds)
        if frame.dtype != np.uint8:
            frame = frame / 257.0
    if frame.shape[-1] == 3:
        grey = frame[..., 0] * 0.299 + frame[..., 1] * 0.587 + frame[..., 2] * 0.114
        if image.pixels.dtype.itemsize > 1 and image.photometric != "PALETTE COLOR":
            grey = _stretch(grey)
        return np.clip(grey, 0, 255).astype(np.uint8)
    values = frame[..., 0].astype(np.float64)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    values = values * slope + intercept
    centre, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if centre is not None and width is not None and width > 1:
        grey = np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0, 1) * 255
    elif ds.get("VOILUTSequence"):
        # The LUT's output range is its own; where the frame falls in it is what shows.
        grey = _stretch(pydicom.pixels.apply_voi_lut(frame[..., 0], ds, index=0, prefer_lut=True).astype(np.float64))
    else:
        grey = _stretch(values)
    if image.photometric == "MONOCHROME1":
        grey = 255 - grey
    return grey.astype(np.uint8)


def _along_line(grey: np.ndarray, box: TextBox) -> TextBox:
    """The box widened over the ink that continues its line: the letters OCR did not read.

    Tesseract often reads part of a line ("471902" of "PID4471902", "MUELLER" of
    "MUELLER^ANNA"); the rest is ink on the same rows, separated from the word by gaps no
    wider than a space. Columns of the word's rows that differ from the line's background
    count as ink; the box grows over them until a gap as wide as the text is high. Ink without
    a gap for twice the text's height is texture (speckle), not letters, and is not taken.
    """
    rows, columns = grey.shape
    top, bottom = max(0, box.top), min(rows, box.top + box.height)
    if bottom <= top or box.height < 4:
        return box
    reach = 8 * box.height
    lo, hi = max(0, box.left - reach), min(columns, box.left + box.width + reach)
    band = grey[top:bottom, lo:hi].astype(np.int16)
    background = int(np.median(band))
    ink = (np.abs(band - background) > 48).any(axis=0)
    gap_allowed = max(3, int(box.height * 0.9))

    def grow(start: int, step: int) -> int:
        edge, gap, run = start, 0, 0
        before_run = start
        position = start + step
        while 0 <= position - lo < len(ink) and gap <= gap_allowed:
            if ink[position - lo]:
                if run == 0:
                    before_run = edge
                run += 1
                gap = 0
                edge = position
                if run > 2 * box.height:
                    return before_run  # ink without a gap: texture (speckle), not letters
            else:
                run = 0
                gap += 1
            position += step
        return edge

    left = grow(box.left, -1)
    right = grow(box.left + box.width - 1, 1) + 1
    return TextBox(box.frame, left, box.top, right - left, box.height, box.text, box.reason)


def _stretch(values: np.ndarray) -> np.ndarray:
    """Min–max to 0–255: without a window, the full range is all that is known."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float64)
    return (values - low) * (255.0 / (high - low))


def _first(value: object) -> float | None:
    values = _values(value)
    try:
        return float(values[0]) if values else None
    except (TypeError, ValueError):
        return None


def _values(value: object) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return list(value)
    return [value]


def _merge(boxes: list[TextBox]) -> tuple[TextBox, ...]:
    """One box per place: the same word read on several frames or scales, or words a line's
    growth joined, become their union, with the texts read there."""
    merged: list[TextBox] = []
    for box in boxes:
        for position, other in enumerate(merged):
            if other.frame == box.frame and _overlap(other, box) > 0.5:
                left, top = min(other.left, box.left), min(other.top, box.top)
                right = max(other.left + other.width, box.left + box.width)
                bottom = max(other.top + other.height, box.top + box.height)
                reason = min(other.reason, box.reason, key=_REASON_ORDER.index)
                first, second = (other, box) if other.left <= box.left else (box, other)
                text = first.text if second.text in first.text else f"{first.text} {second.text}"
                merged[position] = TextBox(other.frame, left, top, right - left, bottom - top, text, reason)
                break
        else:
            merged.append(box)
    return tuple(sorted(merged, key=lambda b: (b.frame, b.top, b.left)))


_REASON_ORDER = ["identity", "name", "date", "text"]


def _overlap(a: TextBox, b: TextBox) -> float:
    """Intersection over the smaller box's area."""
    width = min(a.left + a.width, b.left + b.width) - max(a.left, b.left)
    height = min(a.top + a.height, b.top + b.height) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / min(a.width * a.height, b.width * b.height)


def _blank_image(image: _Image, boxes: Sequence[TextBox]) -> None:
    """Fill each box with the image's black, in every sample, on its frame or on all."""
    if not image.rewritable:
        raise Undecodable("pixel data of this bit depth is not written back here")
    frames, rows, columns, _ = image.pixels.shape
    black = _black(image)
    for box in boxes:
        top, bottom, left, right = blanked_region(box, rows, columns)
        if box.frame == ALL_FRAMES:
            image.pixels[:, top:bottom, left:right, :] = black
        elif 0 <= box.frame < frames:
            image.pixels[box.frame, top:bottom, left:right, :] = black
        else:
            raise ValueError(f"frame {box.frame} is not in an image of {frames} frames")


def _black(image: _Image) -> np.ndarray | int:
    """The stored value that shows as black: the minimum, the maximum for MONOCHROME1."""
    pixels = image.pixels
    if image.photometric == "MONOCHROME1":
        return pixels.max()
    if image.photometric == "PALETTE COLOR":
        return _darkest_index(image)
    if pixels.shape[-1] == 3:
        return np.zeros(3, dtype=pixels.dtype)
    return pixels.min()


def _darkest_index(image: _Image) -> int:
    """The index, among those the image uses, whose palette colour is darkest."""
    ds = image.source
    present = np.unique(image.pixels)
    colours = pydicom.pixels.apply_color_lut(present, ds).astype(np.float64)
    luminance = colours @ np.array([0.299, 0.587, 0.114])
    return int(present[int(np.argmin(luminance))])


def _write_back(ds: pydicom.Dataset, image: _Image) -> None:
    """Native Explicit VR Little Endian pixel data, and an image pixel module that says so."""
    pixels = image.pixels
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.shape[0] == 1 and not image.multi_frame:
        pixels = pixels[0]
    photometric = "RGB" if image.pixels.shape[-1] == 3 else image.photometric
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    syntax = ds.file_meta.get("TransferSyntaxUID")
    # set_pixel_data refuses a big-endian syntax; the new one is set first, and put back if
    # writing fails, so that a failure leaves the dataset as it was.
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    try:
        ds.set_pixel_data(pixels, photometric, image.bits_stored, generate_instance_uid=False)
    except (ValueError, AttributeError, NotImplementedError) as error:
        if syntax is None:
            del ds.file_meta.TransferSyntaxUID
        else:
            ds.file_meta.TransferSyntaxUID = syntax
        raise Undecodable(f"the blanked pixels cannot be written: {error}") from error
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            del ds[keyword]
    if image.lossy is not None:
        # Decoded lossy pixels stay lossy: the flag must keep telling the truth.
        ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in ds and image.lossy != "as flagged":
            ds.LossyImageCompressionMethod = image.lossy
