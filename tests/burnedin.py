"""Images with text burned in, as ultrasound machines and screen captures make them.

Shared by tests/test_pixels.py and bench/ocr.py: a dark, speckled, ultrasound-like frame,
identifying text drawn into it with a real font at a known place, and a DICOM dataset around
the pixels in any photometric interpretation, bit depth and transfer syntax the tests need.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

FONT_FOLDER = Path("/usr/share/fonts/truetype")
FONTS = {
    "DejaVu Sans": FONT_FOLDER / "dejavu/DejaVuSans.ttf",
    "DejaVu Sans Mono": FONT_FOLDER / "dejavu/DejaVuSansMono.ttf",
    "DejaVu Serif": FONT_FOLDER / "dejavu/DejaVuSerif.ttf",
    "Liberation Sans": FONT_FOLDER / "liberation/LiberationSans-Regular.ttf",
    "Liberation Mono": FONT_FOLDER / "liberation/LiberationMono-Regular.ttf",
    "Liberation Serif": FONT_FOLDER / "liberation/LiberationSerif-Regular.ttf",
}
# (text, background) grey levels: what devices draw, from the easy to the faint. "inverted" is
# white on black with the whole frame then inverted: dark text on a light field, as a report
# page or a MONOCHROME1 screen shows it.
CONTRASTS = {
    "white on black": (255, 12),
    "grey on dark grey": (150, 70),
    "inverted": (255, 12),
}


@dataclass(frozen=True)
class Planted:
    """A string drawn into an image, and the pixels its ink covers (exclusive ends)."""

    text: str
    top: int
    bottom: int
    left: int
    right: int


def canvas(rows: int, columns: int, *, seed: int = 0, contrast: str = "white on black") -> np.ndarray:
    """An ultrasound-like 8-bit frame: a dark field with a speckled sector in the middle.

    The speckle has the grain of a few pixels that a transducer's resolution gives it.
    """
    background = CONTRASTS[contrast][1]
    generator = np.random.default_rng(seed)
    image = np.full((rows, columns), background, dtype=np.float64)
    y, x = np.mgrid[0:rows, 0:columns]
    apex_x, apex_y = columns / 2, rows * 0.12
    angle = np.arctan2(x - apex_x, y - apex_y)
    radius = np.hypot(x - apex_x, y - apex_y)
    sector = (np.abs(angle) < 0.6) & (radius > rows * 0.08) & (radius < rows * 0.7)
    speckle = generator.rayleigh(38, size=(rows, columns))
    speckle = np.asarray(Image.fromarray(np.clip(speckle, 0, 255).astype(np.uint8)).filter(ImageFilter.BoxBlur(1)))
    image[sector] = np.clip(speckle[sector] * 1.6 + 10, 0, 255)
    return image.astype(np.uint8)


def plant(
    image: np.ndarray,
    text: str,
    *,
    at: tuple[int, int],
    font: str = "DejaVu Sans",
    size: int = 16,
    contrast: str = "white on black",
) -> Planted:
    """Draw `text` in the contrast's ink with its top-left at `at` (x, y).

    Devices draw annotations on the margin of the frame, which is the contrast's background
    when the canvas was made with the same contrast; see `finish` for "inverted".
    """
    ink = CONTRASTS[contrast][0]
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    typeface = ImageFont.truetype(str(FONTS[font]), size)
    left, top, right, bottom = draw.textbbox(at, text, font=typeface)
    draw.text(at, text, font=typeface, fill=ink)
    image[...] = np.asarray(picture)
    rows, columns = image.shape
    return Planted(text, max(0, top), min(rows, bottom), max(0, left), min(columns, right))


def width(text: str, *, font: str = "DejaVu Sans", size: int = 16) -> int:
    """How wide `text` is drawn, to place it against the right edge."""
    return int(np.ceil(ImageFont.truetype(str(FONTS[font]), size).getlength(text)))


def finish(image: np.ndarray, contrast: str) -> np.ndarray:
    """The frame as the contrast wants it shown: inverted ones are turned dark on light."""
    return 255 - image if contrast == "inverted" else image


def noisy(image: np.ndarray, sigma: float, *, seed: int = 1) -> np.ndarray:
    """Gaussian noise over the whole frame, text included, as a video grabber adds."""
    generator = np.random.default_rng(seed)
    return np.clip(image + generator.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    sop_class: str | None = None,
    modality: str = "US",
    multi_frame: bool | None = None,
) -> Dataset:
    """A DICOM dataset (with file meta) around native pixels shaped as set_pixel_data wants."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    frames = pixels.ndim == (4 if photometric in ("RGB", "YBR_FULL") else 3)
    if multi_frame is None:
        multi_frame = frames
    ds.SOPClassUID = sop_class or (UltrasoundMultiFrameImageStorage if multi_frame else UltrasoundImageStorage)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "DOE^JOHN"
    ds.set_pixel_data(
        pixels, photometric, bits_stored or pixels.dtype.itemsize * 8, generate_instance_uid=False
    )
    if multi_frame and "NumberOfFrames" not in ds:
        ds.NumberOfFrames = 1
    return ds


def jpeg_baseline(rgb: np.ndarray, *, quality: int = 95) -> Dataset:
    """A single-frame JPEG baseline YBR_FULL_422 dataset, as video grabbers store ultrasound."""
    ds = dataset(rgb, photometric="RGB")
    buffer = io.BytesIO()
    # subsampling 1 is 4:2:2, which is what YBR_FULL_422 declares.
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, subsampling=1)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    return ds


def reread(ds: Dataset) -> Dataset:
    """The dataset as a reader gets it back from a file: what the repository sees."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)
