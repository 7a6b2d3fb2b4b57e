"""The review page's list view with many contributions waiting: how long the index takes when
`pcir-upload review` starts, and what a request for the list costs once it runs.

    .venv/bin/python bench/review.py [--contributions 1000] [--requests 50]

Synthetic report folders (review/<id>/report.json, as deidentify writes them: six files each,
three released, two images in review with boxes, one document) go to bench/out/review/. The
page runs as the operator starts it, in its own process, and is asked over HTTP on loopback
with a logged-in session, one request at a time: the list sorted by what waits (the default),
by id, and a page deep in the list.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PASSWORD = "benchmark-password-0123"


def report(cid: str, n: int) -> dict:
    files = []
    for i in range(3):
        files.append({"path": f"DISC/CT{i:04d}", "role": "dicom", "outcome": "released", "reason": "",
                      "to": f"released/s{n:019x}/2.25.{n}1/2.25.{n}2/2.25.{n}{i}.dcm",
                      "changes": {"removed": {"PatientName": 1}, "uids_replaced": {"SOPInstanceUID": 1}}, "pixels": {}})
    for i in range(2):
        files.append({"path": f"DISC/US{i:04d}", "role": "dicom", "outcome": "review",
                      "reason": "text found in the pixels: identity 'DOE' at 12,4 40x14",
                      "to": f"review/{cid}/dicom/2.25.{n}1/2.25.{n}3/2.25.{n}4{i}.dcm", "changes": {},
                      "pixels": {"examined_because": "ultrasound", "boxes": [
                          {"frame": 0, "left": 12, "top": 4, "width": 40, "height": 14, "text": "DOE", "reason": "identity"}]}})
    files.append({"path": "letter.pdf", "role": "document", "outcome": "review", "to": f"review/{cid}/files/letter.pdf",
                  "reason": "a document the patient added: only a person can judge what it reveals", "changes": {}, "pixels": {}})
    return {"contribution_id": cid, "subject": f"s{n:019x}", "identity_problem": None,
            "profile": "DICOM PS3.15 Table E.1-1, edition 2024b", "released": 3, "review": 3, "files": files}


def make(out: Path, count: int) -> None:
    shutil.rmtree(out, ignore_errors=True)
    for n in range(count):
        cid = f"20261201T{n:06d}Z-bench-{n:06x}"
        folder = out / "review" / cid
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps(report(cid, n), indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contributions", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    out = HERE / "out" / "review"
    make(out, args.contributions)
    (HERE / "out" / "review-password").write_text(PASSWORD)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "py"), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "pcir_upload.cli", "review", "--out", str(out), "--port", str(port),
                                "--password-file", str(HERE / "out" / "review-password")], env=env)
    url = f"http://127.0.0.1:{port}"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    try:
        while True:
            try:
                opener.open(url + "/login", timeout=1).read()
                break
            except OSError:
                time.sleep(0.02)
        ready = time.perf_counter() - started
        body = urllib.parse.urlencode({"token": PASSWORD, "operator": "bench"}).encode()
        opener.open(url + "/login", data=body).read()
        print(f"{args.contributions} contributions waiting; the page answered {ready:.2f} s after start "
              f"(Python start, imports and the index of every report)")
        for name, path in (("list, by what waits", "/"), ("list, by id", "/?sort=id"), ("list, page 15", "/?page=15")):
            times = []
            for _ in range(args.requests):
                t = time.perf_counter()
                page = opener.open(url + path).read()
                times.append((time.perf_counter() - t) * 1000)
            assert b"Contributions in review" in page
            times.sort()
            print(f"{name}: median {statistics.median(times):.1f} ms, p95 {times[int(len(times) * 0.95) - 1]:.1f} ms, "
                  f"max {times[-1]:.1f} ms over {args.requests} requests ({len(page):,} bytes)")
        print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
