"""Does a filter on 16-bit pixel data pay before Zstandard? Ratios and speeds, one core.

    .venv/bin/python bench/pixelfilter.py [--size-mib 64]

The pixel data of the CT-like disc (bench/ctdisc.py, made under bench/out/ once) and of every
uncompressed 16-bit image that pydicom and pydicom-data ship (their local files only), each
image's pixel data alone, compressed with Zstandard at levels 3 and 9:
- none: the samples as they are (little endian);
- planes: the low bytes of all samples, then the high bytes (12-bit CT leaves the high plane
  nearly constant, which Zstandard's byte-wise matching cannot see in interleaved samples);
- delta: each sample less the one before it (mod 2^16), the first less 0;
- delta+planes: delta, then planes.
MB/s is of pixel data, filter and compression together (CPU time, CPython with numpy).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "py"))
from ctdisc import SLICE_BYTES, ct_folder  # noqa: E402

from pcir_upload.page.package.zstandard import zstd  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def ct_images(size_mib: int) -> list[bytes]:
    folder = ct_folder(OUT, size_mib, lambda *_: None)
    return [p.read_bytes()[-SLICE_BYTES:] for p in sorted(folder.rglob("*")) if p.stat().st_size > SLICE_BYTES]


def shipped_images() -> list[bytes]:
    """pydicom's test files and pydicom-data's, as installed (nothing is downloaded)."""
    package = Path(pydicom.__file__).parent
    folders = [package / "data" / "test_files", package.parent / "data_store" / "data"]
    images = []
    for path in sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            continue
        syntax = getattr(ds.file_meta, "TransferSyntaxUID", None)
        if ("PixelData" in ds and syntax is not None and not syntax.is_compressed
                and ds.get("BitsAllocated") == 16 and len(ds.PixelData) > 20_000):
            images.append(bytes(ds.PixelData))
    return images


def samples(data: bytes) -> np.ndarray:
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<u2")


def planes(data: bytes) -> bytes:
    return data[0::2] + data[1::2]


def delta(data: bytes) -> bytes:
    return np.diff(samples(data), prepend=np.uint16(0)).astype("<u2").tobytes()


FILTERS = {"none": lambda d: d, "planes": planes, "delta": delta, "delta+planes": lambda d: planes(delta(d))}


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--size-mib", type=int, default=64, help="size of the CT-like disc (default 64)")
    args = options.parse_args()
    for name, images in (("CT-like (bench/ctdisc.py)", ct_images(args.size_mib)),
                         ("pydicom's 16-bit images", shipped_images())):
        total = sum(map(len, images))
        print(f"{name}: {len(images)} images, {total / 1e6:.1f} MB of pixel data")
        print(f"  {'filter':14} {'level':>5} {'ratio':>7} {'MB/s':>7}")
        for filter_name, apply in FILTERS.items():
            for level in (3, 9):
                start = time.process_time()
                out = sum(len(zstd.compress(apply(d), level)) for d in images)
                seconds = time.process_time() - start
                print(f"  {filter_name:14} {level:5} {total / out:7.3f} {total / seconds / 1e6:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
