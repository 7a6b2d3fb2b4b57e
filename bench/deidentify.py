"""`pcir-upload deidentify` on the CT-like disc, against a plain pydicom read and write of the
same files in the same run: what the header actions, UID mapping, reports and the walk cost.

    .venv/bin/python bench/deidentify.py [--size-mib 256]

The disc (bench/ctdisc.py: 512x512 16-bit CT slices, a DICOMDIR) is laid out as `pcir-upload
unpack` writes a contribution (hard links, so no copy). Both runs read from the page cache and
write to bench/out/. MB is 10^6 bytes of input DICOM. The CT-like slices carry no ImageType or
Burned In Annotation, so pixels.py's header rule sends each to its OCR; without pixels.py (it is
built on another branch), the tests' double of its interface stands in and the OCR is not timed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pydicom

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from ctdisc import ct_folder  # noqa: E402

OUT = HERE / "out"


def contribution(disc: Path, unpacked: Path) -> tuple[list[Path], int]:
    """The disc as an unpacked contribution; returns its DICOM files and their bytes."""
    cid = "0" * 31 + "1"
    root = unpacked / cid
    shutil.rmtree(root, ignore_errors=True)
    records, dicom, total = [], [], 0
    for source in sorted(p for p in disc.rglob("*") if p.is_file()):
        path = "disc-1/" + source.relative_to(disc).as_posix()
        target = root / "files" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
        role = "index" if source.name == "DICOMDIR" else "dicom"
        if role == "dicom":
            dicom.append(target)
            total += source.stat().st_size
        records.append({"path": path, "entry": f"files/{path}", "size": source.stat().st_size,
                        "sha256": hashlib.sha256(source.read_bytes()).hexdigest(), "role": role})
    (root / "manifest.json").write_text(json.dumps({
        "format": "pcir-contribution", "version": 1, "contribution_id": cid,
        "contributor_id": "f" * 32, "files": records}))
    return dicom, total


def baseline(files: list[Path], out: Path) -> float:
    """pydicom's read and write of each file, nothing changed: the floor for any de-identifier."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    for n, path in enumerate(files):
        pydicom.dcmread(path, defer_size=256 * 1024).save_as(out / f"{n}.dcm")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    args = parser.parse_args()
    from pcir_upload.repository.deidentify.run import deidentify_all

    disc = ct_folder(OUT, args.size_mib)
    unpacked, result = OUT / "deid-unpacked", OUT / "deid-out"
    files, total = contribution(disc, unpacked)
    base = baseline(files, OUT / "deid-baseline")
    shutil.rmtree(result, ignore_errors=True)
    secret = OUT / "deid-secret"
    secret.unlink(missing_ok=True)
    secret.write_bytes(os.urandom(32))
    secret.chmod(0o600)
    start = time.perf_counter()
    ok = deidentify_all(unpacked, result, secret.read_bytes(), log=lambda line: None)
    took = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mb = total / 1e6
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"input: {len(files)} DICOM files, {mb:.0f} MB (CT-like disc, {args.size_mib} MiB)")
    print(f"pydicom read+write (baseline): {base:6.2f} s  {len(files) / base:7.1f} files/s  {mb / base:6.1f} MB/s")
    print(f"pcir-upload deidentify:        {took:6.2f} s  {len(files) / took:7.1f} files/s  {mb / took:6.1f} MB/s"
          f"  ({took / base:.2f}x the baseline)")
    print(f"peak RSS of this process: {peak:.0f} MiB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
