"""Pictures for the operator: DICOM images windowed as a viewer shows them, document pages.

Everything is re-encoded as PNG here, from pixels only: the page never hands the browser a
file from review/ as it is (a PDF's scripts, an image's metadata stay behind).
"""

from __future__ import annotations

import io
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
import pypdfium2
from PIL import Image

STRIP_FRAMES = 5  # frames shown of a multi-frame image, spread from the first to the last
STRIP_HEIGHT = 160
MAX_PAGES = 20  # pages of a document shown and released
PAGE_SCALE = 2.0  # pdfium renders at 72 dpi x this
# PDFium is not thread-safe, and pages are rendered from the server's worker threads.
_PDFIUM = threading.Lock()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _frames(ds: pydicom.Dataset) -> np.ndarray:
    """All frames as (frames, rows, columns[, 3])."""
    pixels = ds.pixel_array  # pydicom 3 gives YBR as RGB
    samples = int(ds.get("SamplesPerPixel", 1))
    several = int(ds.get("NumberOfFrames", 1) or 1) > 1
    if not several:
        pixels = pixels[np.newaxis]
    if samples == 1 and pixels.ndim == 4:
        pixels = pixels[..., 0]
    return pixels


def _display(ds: pydicom.Dataset, frame: np.ndarray) -> np.ndarray:
    """8-bit grey or RGB, as a viewer shows it: the VOI LUT or window when the header has one,
    else the 1st to 99.5th percentile (a few hot pixels must not make the image black)."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        frame = pydicom.pixels.apply_color_lut(frame, ds)
    if frame.ndim == 3:
        if frame.dtype != np.uint8:
            frame = frame / max(1, frame.max()) * 255
        return np.clip(frame, 0, 255).astype(np.uint8)
    values = pydicom.pixels.apply_modality_lut(frame, ds).astype(np.float64)
    if "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds):
        try:
            values = pydicom.pixels.apply_voi_lut(values, ds).astype(np.float64)
            low, high = float(values.min()), float(values.max())
            if "VOILUTSequence" not in ds:  # a window: its own limits
                centre, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
                low, high = centre - width / 2, centre + width / 2
        except (ValueError, TypeError, AttributeError, IndexError):
            low, high = np.percentile(values, (1, 99.5))
    else:
        low, high = np.percentile(values, (1, 99.5))
    grey = np.clip((values - low) / max(high - low, 1e-9), 0, 1) * 255
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return grey.astype(np.uint8)


def _first(value: object) -> float:
    return float(value[0]) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else float(value)


def frame_count(path: Path) -> int:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return int(ds.get("NumberOfFrames", 1) or 1)


def size(path: Path) -> tuple[int, int]:
    """(columns, rows): the coordinates the operator's boxes are given in."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return int(ds.Columns), int(ds.Rows)


@lru_cache(maxsize=64)
def _image(path: Path, mtime: float, strip: bool) -> bytes:
    ds = pydicom.dcmread(path)
    frames = _frames(ds)
    if not strip:
        return _png(Image.fromarray(_display(ds, frames[0])))
    count = len(frames)
    chosen = sorted({round(i * (count - 1) / max(1, STRIP_FRAMES - 1)) for i in range(min(count, STRIP_FRAMES))})
    pictures = []
    for index in chosen:
        picture = Image.fromarray(_display(ds, frames[index]))
        scale = STRIP_HEIGHT / picture.height
        pictures.append(picture.resize((max(1, round(picture.width * scale)), STRIP_HEIGHT)).convert("RGB"))
    strip_image = Image.new("RGB", (sum(p.width for p in pictures) + 4 * (len(pictures) - 1), STRIP_HEIGHT), "white")
    x = 0
    for picture in pictures:
        strip_image.paste(picture, (x, 0))
        x += picture.width + 4
    return _png(strip_image)


def dicom_png(path: Path) -> bytes:
    """The first frame at its own size; the page draws the boxes over it in its coordinates."""
    return _image(path, path.stat().st_mtime, False)


def strip_png(path: Path) -> bytes:
    """A few frames of a multi-frame image side by side, first to last."""
    return _image(path, path.stat().st_mtime, True)


def page_count(path: Path) -> int:
    if path.suffix.lower() != ".pdf":
        return 1
    with _PDFIUM:
        document = pypdfium2.PdfDocument(str(path))
        try:
            return min(len(document), MAX_PAGES)
        finally:
            document.close()


@lru_cache(maxsize=64)
def _page(path: Path, mtime: float, number: int) -> bytes:
    if path.suffix.lower() != ".pdf":
        with Image.open(path) as picture:
            picture.load()
            return _png(picture.convert("RGB"))
    with _PDFIUM:
        document = pypdfium2.PdfDocument(str(path))
        try:
            page = document[number]
            image = page.render(scale=PAGE_SCALE).to_pil()
            page.close()
        finally:
            document.close()
    return _png(image.convert("RGB"))


def page_size(path: Path, number: int) -> tuple[int, int]:
    """(width, height) of a page as rendered: the coordinates the operator's redactions are given in."""
    with Image.open(io.BytesIO(page_png(path, number))) as picture:
        return picture.size


def blacked(png: bytes, boxes: list[tuple[int, int, int, int]]) -> bytes:
    """The picture with each (x, y, w, h) filled black: the pixels under it are gone, not covered."""
    if not boxes:
        return png
    with Image.open(io.BytesIO(png)) as picture:
        pixels = np.array(picture.convert("RGB"))
    for x, y, w, h in boxes:
        pixels[y:y + h, x:x + w] = 0
    return _png(Image.fromarray(pixels))


def page_png(path: Path, number: int) -> bytes:
    """One page of a PDF rendered by PDFium, or the picture itself, as pixels only."""
    if not 0 <= number < page_count(path):
        raise IndexError(number)
    return _page(path, path.stat().st_mtime, number)

