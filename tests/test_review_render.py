"""The review page's pictures: windowed as a viewer shows them, multi-frame as a strip, PDF
pages rendered by PDFium."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import burnedin
from pcir_upload.repository.review import render


def grey(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def saved(ds: Dataset, tmp_path: Path, name: str = "image.dcm") -> Path:
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(rows: int = 16, columns: int = 256, top: int = 4095) -> np.ndarray:
    return np.tile(np.linspace(0, top, columns).astype(np.uint16), (rows, 1))


def test_the_window_of_the_header_is_used(tmp_path: Path) -> None:
    ds = burnedin.dataset(ramp(), bits_stored=12, modality="CT")
    ds.WindowCenter, ds.WindowWidth = 2048, 1024
    shown = grey(render.dicom_png(saved(ds, tmp_path)))[0]
    assert shown[:60].max() == 0 and shown[-60:].min() == 255  # below and above the window
    assert 0 < shown[128] < 255


def test_without_a_window_a_few_hot_pixels_do_not_darken_the_image(tmp_path: Path) -> None:
    pixels = ramp(top=1000)
    pixels[0, 0] = 65535 >> 4  # one hot pixel, far above the rest
    shown = grey(render.dicom_png(saved(burnedin.dataset(pixels, bits_stored=12, modality="CT"), tmp_path)))
    assert np.median(shown) > 100


def test_a_voi_lut_and_monochrome1(tmp_path: Path) -> None:
    ds = burnedin.dataset(ramp(columns=256, top=255).astype(np.uint8), modality="CR")
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 8]
    lut.add_new(0x00283006, "US", list(range(255, -1, -1)))  # LUT Data
    ds.VOILUTSequence = Sequence([lut])
    assert grey(render.dicom_png(saved(ds, tmp_path)))[0, 0] == 255  # the LUT turns the ramp round
    plain = burnedin.dataset(ramp(columns=256, top=255).astype(np.uint8), modality="CR")
    plain.PhotometricInterpretation = "MONOCHROME1"
    assert grey(render.dicom_png(saved(plain, tmp_path, "m1.dcm")))[0, 0] == 255  # low values show white


def test_a_multi_frame_image_is_a_strip_of_five_frames(tmp_path: Path) -> None:
    frames = np.stack([np.full((64, 80), 20 * i, dtype=np.uint8) for i in range(12)])
    path = saved(burnedin.dataset(frames), tmp_path)
    strip = Image.open(io.BytesIO(render.strip_png(path)))
    assert strip.size == (5 * 200 + 4 * 4, render.STRIP_HEIGHT)
    assert render.frame_count(path) == 12 and render.size(path) == (80, 64)
    assert grey(render.dicom_png(path)).shape == (64, 80)


def test_colour_stays_colour(tmp_path: Path) -> None:
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    shown = np.asarray(Image.open(io.BytesIO(render.dicom_png(saved(burnedin.dataset(rgb, photometric="RGB"), tmp_path)))))
    assert shown.shape == (32, 32, 3) and (shown[..., 1] == 200).all() and (shown[..., 0] == 0).all()


def test_pdf_pages_are_rendered_and_bounded(tmp_path: Path) -> None:
    pages = [Image.new("RGB", (200, 300), colour) for colour in ("white", "red", "blue")]
    path = tmp_path / "three.pdf"
    pages[0].save(path, format="PDF", save_all=True, append_images=pages[1:], resolution=72)
    assert render.page_count(path) == 3
    second = np.asarray(Image.open(io.BytesIO(render.page_png(path, 1))))
    assert second.shape == (600, 400, 3) and np.abs(second[300, 200].astype(int) - [255, 0, 0]).max() <= 2  # pillow stores JPEG
    with pytest.raises(IndexError):
        render.page_png(path, 3)
