"""A CT-like disc to benchmark with: 512x512 16-bit CT slices written by pydicom, plus a DICOMDIR.

Why it looks the way it does: the upload deflates everything, so the figures only mean something
if the pixel data compresses like a real CT. Random bytes would not compress at all and zeros
would compress to nothing; real CT is air around a body, tissue classes of near-constant
Hounsfield units, and scanner noise on top, and the noise is what limits compression. So each
slice is a constant padding value outside the scanner's circular field of view, noisy air
inside it, and a body cross-section (fat ring, soft tissue, two lungs, a spine) whose shape
changes slowly from slice to slice, each tissue filled with Gaussian noise of a realistic size
around its HU. zlib level 1 reaches about 2.5:1 on it (2.47 measured), close to the 2.53
measured on CT-like data in shared/notes/pyodide-offline.md.

Standard library and pydicom only (no numpy, which the project does not otherwise need). Rows
are assembled from slices of large pre-drawn noise pools at random offsets: C-speed byte
slicing instead of per-pixel Python, and the pools are far larger than deflate's 32 KiB window,
so the repeats cannot be exploited.
"""

from __future__ import annotations

import array
import json
import math
import random
import shutil
import struct
import sys
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SIZE = 512  # pixels per side
SLICE_BYTES = SIZE * SIZE * 2
SLICES_PER_SERIES = 256
INTERCEPT = -1024  # stored value = HU + 1024, 12 bits stored, as most CT scanners write

# (mean HU, noise sigma HU) of each tissue class.
TISSUES = {
    "pad": (-1024, 0),  # outside the scanner's circular field of view: one constant value
    "air": (-1000, 6),
    "fat": (-100, 15),
    "soft": (40, 15),
    "lung": (-850, 30),
    "bone": (700, 60),
}
POOL_SAMPLES = 1 << 20  # per tissue: 2 MiB of noise, ~64x deflate's window


def _pools(rng: random.Random) -> dict[str, bytes]:
    """Per tissue, POOL_SAMPLES little-endian uint16 stored values of mean + Gaussian noise."""
    pools = {}
    for name, (mean, sigma) in TISSUES.items():
        values = array.array("H", (
            min(4095, max(0, round(rng.gauss(mean, sigma)) - INTERCEPT)) for _ in range(POOL_SAMPLES)
        ))
        if sys.byteorder != "little":
            values.byteswap()
        pools[name] = values.tobytes()
    return pools


def _chord(cx: float, cy: float, rx: float, ry: float, y: float) -> tuple[float, float] | None:
    """Where row y crosses the ellipse (cx, cy, rx, ry): (x0, x1), or None."""
    d = (y - cy) / ry
    if abs(d) >= 1:
        return None
    half = rx * math.sqrt(1 - d * d)
    return cx - half, cx + half


def _row_segments(y: int, shapes: list[tuple[str, tuple[float, float, float, float]]]) -> list[str]:
    """The tissue of each pixel of row y: later shapes are painted over earlier ones."""
    row = ["pad"] * SIZE
    for tissue, ellipse in shapes:
        chord = _chord(*ellipse, y + 0.5)
        if chord:
            x0, x1 = max(0, round(chord[0])), min(SIZE, round(chord[1]))
            row[x0:x1] = [tissue] * (x1 - x0)
    return row


def _shapes(z: float) -> list[tuple[str, tuple[float, float, float, float]]]:
    """The body's cross-section at height z in [0, 1]: bigger at the middle, lungs in the upper half."""
    swell = 1 + 0.12 * math.sin(math.pi * z)
    rx, ry = 200 * swell, 140 * swell
    cx, cy = SIZE / 2, SIZE / 2 + 10
    shapes = [("air", (SIZE / 2, SIZE / 2, SIZE / 2, SIZE / 2)),
              ("fat", (cx, cy, rx, ry)), ("soft", (cx, cy, rx - 14, ry - 14))]
    if z > 0.45:
        lung = 0.6 + 0.4 * math.sin(math.pi * (z - 0.45) / 0.55)
        shapes += [("lung", (cx - 85, cy - 10, 60 * lung, 95 * lung)),
                   ("lung", (cx + 85, cy - 10, 60 * lung, 95 * lung))]
    shapes += [("bone", (cx, cy + ry - 45, 22, 20)), ("soft", (cx, cy + ry - 45, 9, 8))]
    return shapes


def slice_pixels(z: float, pools: dict[str, bytes], rng: random.Random) -> bytes:
    """One slice's PixelData: each run of one tissue is cut from its pool at a random offset."""
    shapes = _shapes(z)
    out = bytearray()
    for y in range(SIZE):
        row = _row_segments(y, shapes)
        start = 0
        for x in range(1, SIZE + 1):
            if x == SIZE or row[x] != row[start]:
                n = (x - start) * 2
                offset = rng.randrange(0, len(pools[row[start]]) - n) & ~1
                out += pools[row[start]][offset:offset + n]
                start = x
    return bytes(out)


def _dataset(study: dict[str, str], series_uid: str, series_number: int, instance: int,
             z_mm: float, pixels: bytes) -> Dataset:
    """A minimal but valid CT Image Storage instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Benchmark^Pat"
    ds.PatientID = "BENCH0001"
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID = study["uid"]
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = "BENCH1"
    ds.StudyDescription = "CT chest abdomen (synthetic benchmark)"
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]  # as scanners write it: a slice the pixel check clears
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = f"Axial 1.0 mm part {series_number}"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-250.0, -250.0, z_mm]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = z_mm
    ds.SliceThickness = 1.0
    ds.PixelSpacing = [0.9765625, 0.9765625]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = SIZE
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = INTERCEPT, 1
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = pixels
    return ds


def _listing(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def ct_folder(out: Path, size_mib: int, log=print) -> Path:
    """The CT-like disc of at least `size_mib` MiB under `out`, generated once and then reused.

    Reused only if the listing recorded beside it (not inside: it would be uploaded) still
    matches file for file and byte for byte in size.
    """
    root = out / f"ct-{size_mib}MiB"
    record = out / f"ct-{size_mib}MiB.json"
    if root.is_dir() and record.is_file():
        if json.loads(record.read_text()) == _listing(root):
            log(f"reusing {root}")
            return root
    log(f"generating {root} (once; reused by later runs)")
    shutil.rmtree(root, ignore_errors=True)
    staging = out / f"ct-{size_mib}MiB.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    rng = random.Random(20261125)
    pools = _pools(rng)
    slices = math.ceil(size_mib * 1024 * 1024 / SLICE_BYTES)
    study = {"uid": generate_uid()}
    fileset = FileSet()
    fileset.ID = "PCIRBENCH"
    series_uid, series_number = "", 0
    for i in range(slices):
        if i % SLICES_PER_SERIES == 0:
            series_uid, series_number = generate_uid(), series_number + 1
        ds = _dataset(study, series_uid, series_number, i % SLICES_PER_SERIES + 1,
                      -600.0 + i * 1.0, slice_pixels(i / max(1, slices - 1), pools, rng))
        path = staging / f"{i:06d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        fileset.add(path)
        if (i + 1) % 256 == 0:
            log(f"  {i + 1}/{slices} slices")
    # FileSet.write copies every instance into PTxxxxxx/STxxxxxx/SExxxxxx/IMxxxxxx beside the
    # DICOMDIR, the layout of a real disc.
    fileset.write(root)
    shutil.rmtree(staging)
    listing = _listing(root)
    record.write_text(json.dumps(listing))
    log(f"  {len(listing)} files, {sum(listing.values()) / 2**20:.0f} MiB")
    return root


def ct_volume(out: Path, size_mib: int, log=print) -> Path:
    """A folder holding one DICOM file of at least `size_mib` MiB: a multi-frame CT-like volume
    (the slices above, one frame each), as a scanner's enhanced export can be. Generated once.

    pydicom writes the header; the pixel data element is appended frame by frame, so no
    1.5 GiB bytes object is ever built here either.
    """
    root = out / f"volume-{size_mib}MiB"
    record = out / f"volume-{size_mib}MiB.json"
    if root.is_dir() and record.is_file() and json.loads(record.read_text()) == _listing(root):
        log(f"reusing {root}")
        return root
    log(f"generating {root} (once; reused by later runs)")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = random.Random(20261201)
    pools = _pools(rng)
    frames = math.ceil(size_mib * 1024 * 1024 / SLICE_BYTES)
    ds = _dataset({"uid": generate_uid()}, generate_uid(), 1, 1, 0.0, b"")
    del ds.PixelData
    ds.NumberOfFrames = frames
    path = root / "VOLUME.dcm"
    ds.save_as(path, enforce_file_format=True)
    with open(path, "ab") as f:
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, frames * SLICE_BYTES))
        for i in range(frames):
            f.write(slice_pixels(i / max(1, frames - 1), pools, rng))
            if (i + 1) % 512 == 0:
                log(f"  {i + 1}/{frames} frames")
    listing = _listing(root)
    record.write_text(json.dumps(listing))
    log(f"  1 file, {sum(listing.values()) / 2**20:.0f} MiB")
    return root


if __name__ == "__main__":  # python bench/ctdisc.py [MiB]: just generate
    ct_folder(Path(__file__).resolve().parent / "out", int(sys.argv[1]) if len(sys.argv) > 1 else 512)
