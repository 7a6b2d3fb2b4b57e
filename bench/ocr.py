"""Clean Pixel Data's figures: the OCR's recall on planted text, and its speed on a disc.

Recall: three identifying strings (a name with ^, a
date, an id) are drawn top left, top right and bottom right of ultrasound-like frames (240x320,
or 360x480 for text over 16 px) in each font, size and contrast of tests/burnedin.py, with
noise (Gaussian, σ 8 grey levels) on every other font and size; a string counts as found when the boxes clean_pixels blanked cover
at least 90% of its ink's box. Speed: a disc of
ultrasound-like images (RGB 480x640 single frames, grey 600x800, and a short cine), each with
a header line of identity, is cleaned image by image; images/s and MB/s of the DICOM files.

    PYTHONPATH=py .venv/bin/python bench/ocr.py [--quick] [--append docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime
import io
import itertools
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "py"), str(ROOT / "tests")]

import burnedin  # noqa: E402
from pcir_upload.repository.deidentify import pixels  # noqa: E402

IDENTITY = ["MUELLER^ANNA^MARIA", "PID4471902", "19630214", "20240917"]
STRINGS = ["MUELLER^ANNA", "14.02.1963", "PID4471902", "17-SEP-2024"]
SIZES = (10, 13, 16, 22, 32)


def covered(planted: burnedin.Planted, boxes, rows: int, columns: int) -> float:
    """The share of the planted ink's box that the blanked regions cover."""
    mask = np.zeros((rows, columns), dtype=bool)
    for box in boxes:
        top, bottom, left, right = pixels.blanked_region(box, rows, columns)
        mask[top:bottom, left:right] = True
    area = mask[planted.top : planted.bottom, planted.left : planted.right]
    return float(area.mean()) if area.size else 1.0


def recall(fonts: list[str], sizes: tuple[int, ...], contrasts: list[str]) -> dict[str, list[int]]:
    """[found, planted] per class: font, size and contrast, each over all of the others."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for number, (font, size, contrast) in enumerate(itertools.product(fonts, sizes, contrasts)):
        rows, columns = (240, 320) if size <= 16 else (360, 480)
        frame = burnedin.canvas(rows, columns, seed=number, contrast=contrast)
        places = [
            (6, 6),  # top left
            (columns - 8 - burnedin.width(STRINGS[1], font=font, size=size), 12 + size),  # top right
            (columns - 8 - burnedin.width(STRINGS[2], font=font, size=size), rows - size - 14),  # bottom right
        ]
        planted = [
            burnedin.plant(frame, text, at=at, font=font, size=size, contrast=contrast)
            for text, at in zip(STRINGS, places)
        ]
        frame = burnedin.finish(frame, contrast)
        # Noise on every other font and size, so that each contrast has as many noisy as clean.
        noise = (fonts.index(font) + sizes.index(size)) % 2 == 1
        if noise:
            frame = burnedin.noisy(frame, 8, seed=number)
        ds = burnedin.dataset(frame)
        result = pixels.clean_pixels(ds, IDENTITY)
        for mark in planted:
            hit = covered(mark, result.boxes, rows, columns) >= 0.9
            classes = (f"font {font}", f"size {size} px", f"contrast {contrast}", "noise σ 8" if noise else "no noise", "all")
            for key in classes:
                tally[key][0] += hit
                tally[key][1] += 1
    return tally


def disc(count: int) -> list[bytes]:
    """DICOM files of an ultrasound-like disc, each with identity burned into its header line."""
    files = []
    for number in range(count):
        kind = number % 4
        if kind == 3:
            rows, columns, frames = 480, 640, 8
        elif kind == 2:
            rows, columns, frames = 600, 800, 1
        else:
            rows, columns, frames = 480, 640, 1
        greys = [_annotated(rows, columns, seed=number * 100 + f) for f in range(frames)]
        if kind == 2:
            ds = burnedin.dataset(greys[0])
        else:
            rgbs = [np.repeat(grey[..., None], 3, axis=2) for grey in greys]
            ds = burnedin.dataset(np.stack(rgbs) if frames > 1 else rgbs[0], photometric="RGB")
        files.append(_encode(ds))
    return files


def _annotated(rows: int, columns: int, *, seed: int) -> np.ndarray:
    """A frame with the header line and the settings line of an ultrasound machine."""
    grey = burnedin.canvas(rows, columns, seed=seed)
    burnedin.plant(grey, "MUELLER, ANNA   PID4471902   DOB 14.02.1963", at=(8, 6), size=14)
    burnedin.plant(grey, "17-SEP-2024 10:41:07", at=(columns - 200, 6), size=14)
    burnedin.plant(grey, "L12-5  36Hz  2D 60%", at=(8, rows - 24), size=13)
    return grey


def _encode(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def speed(files: list[bytes]) -> tuple[float, float, int]:
    """(images/s, MB/s, images sent to review) of reading and cleaning each file in turn."""
    started = time.perf_counter()
    review = 0
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        result = pixels.clean_pixels(ds, IDENTITY)
        review += result.review is not None
    elapsed = time.perf_counter() - started
    return len(files) / elapsed, sum(map(len, files)) / elapsed / 1e6, review


def real_files() -> list[tuple[str, bytes]]:
    """The ultrasounds with burned-in text that pydicom-data and deid-data ship."""
    import deid_data
    from pydicom.data import get_testdata_file

    folder = Path(deid_data.__file__).parent / "data" / "ultrasounds"
    paths = [Path(get_testdata_file("gdcm-US-ALOKA-16.dcm"))]
    paths += [folder / name for name in ("GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm", "ultrasound-multiframe.dcm")]
    return [(path.name, path.read_bytes()) for path in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two fonts, three sizes, a smaller disc")
    parser.add_argument("--append", type=Path, help="append the figures to this Markdown file")
    options = parser.parse_args()
    fonts = ["DejaVu Sans", "Liberation Serif"] if options.quick else list(burnedin.FONTS)
    sizes = (10, 16, 32) if options.quick else SIZES
    contrasts = list(burnedin.CONTRASTS)
    started = time.perf_counter()
    tally = recall(fonts, sizes, contrasts)
    recall_seconds = time.perf_counter() - started
    lines = ["| class | found / planted | recall |", "| --- | --- | --- |"]
    for key in sorted(tally, key=lambda k: (k != "all", k)):
        found, planted = tally[key]
        lines.append(f"| {key} | {found} / {planted} | {found / planted:.0%} |")
    count = 8 if options.quick else 24
    files = disc(count)
    rate, megabytes, review = speed(files)
    size = sum(map(len, files)) / 1e6
    lines.append("")
    lines.append(
        f"Disc: {count} ultrasound-like images ({size:.1f} MB: RGB 480x640, grey 600x800, 8-frame RGB cines), "
        f"{rate:.2f} images/s, {megabytes:.2f} MB/s, {review} of {count} to review; "
        f"recall run {recall_seconds:.0f} s."
    )
    lines.append("")
    lines.append("| shipped ultrasound | MB | frames read | s | boxes | review |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for name, data in real_files():
        started = time.perf_counter()
        ds = pydicom.dcmread(io.BytesIO(data))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        result = pixels.clean_pixels(ds, IDENTITY)
        seconds = time.perf_counter() - started
        read = min(frames, pixels.FRAMES_READ)
        lines.append(
            f"| {name} | {len(data) / 1e6:.1f} | {read} of {frames} | {seconds:.1f} | {len(result.boxes)} | "
            f"{'yes' if result.review else 'no'} |"
        )
    report = "\n".join(lines)
    print(report)
    if options.append:
        command = "PYTHONPATH=py .venv/bin/python bench/ocr.py" + (" --quick" if options.quick else "")
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with options.append.open("a") as out:
            out.write(
                f"\n## Clean Pixel Data: OCR recall and speed (bench/ocr.py)\n\n`{command}`, {when}, "
                f"{platform.machine()}, {os.cpu_count()} cores shared with other work, "
                f"tesseract one thread per run.\n\n{report}\n"
            )


if __name__ == "__main__":
    main()
