"""How long scan_disc takes on a disc of many small DICOM files, with and without a DICOMDIR.

    python bench/scan.py [FILES] [--latency MS] [--dicomdir]

Builds FILES (default 20,000) small CT images in a temporary folder (tests/discs.py), then
times scan_disc through a FolderDisc: without DICOMDIR (every file's head is read and parsed)
and, with `--dicomdir`, with one written by DCMTK's dcmmkdir (only the DICOMDIR is read;
dcmmkdir itself needs about 6 minutes for 20,000 files). `--latency`
adds a pause per read_heads call, standing in for the browser's Python-to-JavaScript round
trip (about 4 ms), so the figure shows what batching saves. Prints one line per case.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "py"), str(ROOT / "tests")]

import discs  # noqa: E402
from support import FolderDisc  # noqa: E402

from pcir_upload.page.disc.discovery import scan_disc  # noqa: E402


class SlowDisc(FolderDisc):
    """A FolderDisc whose every call costs `latency` seconds more, as a call into the browser does."""

    def __init__(self, root: Path, latency: float):
        super().__init__(root)
        self.latency = latency

    async def read(self, path: str, offset: int, length: int) -> bytes:
        await asyncio.sleep(self.latency)
        return await super().read(path, offset, length)

    async def read_heads(self, paths, length):  # type: ignore[no-untyped-def]
        await asyncio.sleep(self.latency)  # one pause per call, not per file
        self.batches.append(len(paths))
        heads = []
        for path in paths:
            try:
                heads.append(await FolderDisc.read(self, path, 0, length))
            except Exception as exc:  # DiscReadError
                heads.append(exc)
        return heads


def measure(label: str, disc: FolderDisc) -> None:
    started = time.perf_counter()
    summary = asyncio.run(scan_disc(disc.listing, disc))
    seconds = time.perf_counter() - started
    read = sum(length for _, _, length in disc.reads)
    images = sum(s.images for p in summary.patients for s in p.studies)
    print(
        f"{label}: {len(disc.listing)} files, {images} images, kind {summary.kind}: {seconds:.1f} s "
        f"({len(disc.listing) / seconds:.0f} files/s), {len(disc.reads)} reads in {len(disc.batches)} "
        f"batches, at most {read / 1e6:.1f} MB asked for"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="?", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.0, help="ms per reader call")
    parser.add_argument("--dicomdir", action="store_true", help="also time a disc with a DICOMDIR")
    args = parser.parse_args()
    latency = args.latency / 1000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "disc"
        started = time.perf_counter()
        discs.many_small_dicom_files(root, args.files)
        print(f"built {args.files} files in {time.perf_counter() - started:.1f} s")
        measure("no DICOMDIR", SlowDisc(root, latency) if latency else FolderDisc(root))
        if args.dicomdir:
            started = time.perf_counter()
            discs.run("dcmmkdir", "-q", "+I", "+r", "+id", ".", "+D", "DICOMDIR", cwd=root)
            print(f"dcmmkdir wrote the DICOMDIR in {time.perf_counter() - started:.1f} s")
            measure("with DICOMDIR", SlowDisc(root, latency) if latency else FolderDisc(root))


if __name__ == "__main__":
    main()
