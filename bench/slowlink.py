"""The contribution page on a home uplink, against the way common web uploaders do it.

    .venv/bin/python bench/slowlink.py [--size-mib 256] [--mbit 20] [--keep]

Run `python build.py` first: this measures whatever dist/ holds.

Both runs go through one throttling TCP proxy (tests/faultproxy.py, shared by every
connection, each way) to one `pcir-upload serve`, in one headless Chromium driven over raw CDP
(bench/cdp.py; no Playwright, which slows uploads):

1. **The page**: the CT-like disc (bench/ctdisc.py) through the real contribution page, as in
   bench/pipeline.py: packaged, deflated at the level the link can take, sealed, uploaded.
   Time is click to receipt, in the page's clock; bytes are what the receiver confirmed.
   Then `pcir-upload unpack` and a byte-for-byte check.
2. **The baseline**: the same files sent raw with tus-js-client (npm, as pinned in
   package.json) from a small page on the same origin: one tus upload per file, three at a
   time, its name in the Upload-Metadata header, as an Uppy-style uploader does. Time is from
   the first upload started to the last one finished, in the page's clock.

For each it prints the wall time, the bytes sent, and the wall time the link alone would need
for those bytes (bytes / rate): the page should stay within 1.1 of that. MB is 10^6 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "tests")]
from cdp import Chromium  # noqa: E402
from ctdisc import ct_folder  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402
from pipeline import (  # noqa: E402
    OUT, ROOT, BenchFailure, BenchRun, Figures, PageDriver, contribute, log, unpack_and_verify,
)

from pcir_upload.repository.receive.store import all_uploads  # noqa: E402

# The baseline's page. Its script may not be inline (the receiver's CSP), so it is a file too.
BASELINE_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>baseline</title>
<script src="/baseline/tus.min.js"></script><script src="/baseline/baseline.js"></script></head>
<body><input type="file" id="folder" webkitdirectory multiple></body></html>"""
BASELINE_JS = r"""
window.__baseline = { done: 0, failed: null, startAt: null, endAt: null, files: 0 };
document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('folder').addEventListener('change', (event) => {
    const files = Array.from(event.target.files);
    const b = window.__baseline;
    b.files = files.length;
    b.startAt = performance.now();
    let next = 0;
    const one = () => {
      if (next >= files.length) return;
      const file = files[next++];
      new tus.Upload(file, {
        endpoint: location.origin + '/files/',
        metadata: { filename: file.webkitRelativePath, filetype: file.type },
        retryDelays: [0, 1000, 3000],
        onSuccess: () => { b.done += 1; if (b.done === files.length) b.endAt = performance.now(); one(); },
        onError: (error) => { b.failed = String(error); },
      }).start();
    };
    for (let i = 0; i < 3; i++) one();
  });
});
"""


def site_with_baseline(workdir: Path) -> Path:
    """dist/ (hard links) and the baseline's page, for one receiver to serve both."""
    site = workdir / "site"
    shutil.copytree(ROOT / "dist", site, copy_function=os.link)
    baseline = site / "baseline"
    baseline.mkdir()
    shutil.copyfile(ROOT / "node_modules" / "tus-js-client" / "dist" / "tus.min.js", baseline / "tus.min.js")
    (baseline / "baseline.js").write_text(BASELINE_JS)
    (site / "baseline.html").write_text(BASELINE_HTML)
    return site


def run_baseline(url: str, folder: Path, files: int) -> dict[str, float]:
    browser = Chromium()
    try:
        page = PageDriver(browser, url, memory=False)
        target = next(t["targetId"] for t in page.cdp.send("Target.getTargets")["targetInfos"]
                      if t["type"] == "page")
        page.page = page.cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page.cdp.send("Page.navigate", {"url": url + "/baseline.html"}, page.page)
        page.wait_for("window.__baseline && document.getElementById('folder')", 60, "the baseline page")
        document = page.cdp.send("DOM.getDocument", {"depth": 0}, page.page)
        node = page.cdp.send("DOM.querySelector",
                             {"nodeId": document["root"]["nodeId"], "selector": "#folder"}, page.page)
        page.cdp.send("DOM.setFileInputFiles", {"nodeId": node["nodeId"], "files": [str(folder)]}, page.page)
        deadline = time.monotonic() + 7200
        while True:
            state = page.evaluate("JSON.stringify(window.__baseline)")
            state = json.loads(state)
            if state["failed"]:
                raise BenchFailure(f"tus-js-client failed: {state['failed']}")
            if state["endAt"] is not None:
                break
            if time.monotonic() > deadline:
                raise BenchFailure(f"the baseline did not finish: {state}")
            time.sleep(0.5)
        if state["files"] != files:
            raise BenchFailure(f"the baseline page got {state['files']} files, the folder has {files}")
        page.close()
        return {"seconds": (state["endAt"] - state["startAt"]) / 1000, "files": state["done"]}
    finally:
        browser.close()


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--size-mib", type=int, default=256, help="size of the CT-like disc (default 256)")
    options.add_argument("--mbit", type=float, default=20.0, help="the link, Mbit/s each way (default 20)")
    options.add_argument("--keep", action="store_true", help="keep the run folder")
    args = options.parse_args(argv)
    if not (ROOT / "dist" / "index.html").is_file():
        print("dist/ is not built: run `python build.py` first", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    folder = ct_folder(OUT, args.size_mib, log)
    listing = [p for p in folder.rglob("*") if p.is_file()]
    disc_bytes = sum(p.stat().st_size for p in listing)
    rate = args.mbit * 1e6 / 8  # bytes per second
    with BenchRun("slowlink", args.keep) as run:
        os.environ["PCIR_SITE"] = str(site_with_baseline(run.path))
        url = run.start_receiver()
        with FaultProxy(url) as proxy:
            proxy.throttle(rate)
            log(f"receiver at {url}, through a {args.mbit:g} Mbit/s link at {proxy.url}")
            ours = Figures()
            contribute(proxy.url, folder, len(listing), ours, memory=False)
            log(f"the page: {ours.upload_s:.1f} s; now the baseline")
            before = {u.id for u in all_uploads(run.path / "data")}
            baseline = run_baseline(proxy.url, folder, len(listing))
        uploads = [u for u in all_uploads(run.path / "data") if u.id not in before]
        baseline_bytes = sum(u.offset for u in uploads)
        if len(uploads) != len(listing) or baseline_bytes != disc_bytes:
            raise BenchFailure(f"the baseline left {len(uploads)} uploads of {baseline_bytes} bytes; "
                               f"the disc has {len(listing)} files of {disc_bytes} bytes")
        run.stop_receiver()
        for upload in uploads:  # unpack would refuse them: they are not contributions
            shutil.rmtree(upload.data_path.parent, ignore_errors=True)
        unpack_and_verify(run.path / "data", run.path / "unpacked", folder, ours)
        rows = [
            ("the page (packaged, sealed)", ours.upload_s, ours.bytes_sent),
            ("tus-js-client, raw files", baseline["seconds"], baseline_bytes),
        ]
        print()
        version = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout.strip()
        print(f"{len(listing)} files, {disc_bytes / 1e6:.1f} MB, link {args.mbit:g} Mbit/s "
              f"({rate / 1e6:.2f} MB/s) each way, {version}")
        print(f"  {'':30} {'wall time':>10} {'bytes sent':>12} {'link alone':>11} {'ratio':>6}")
        for name, seconds, sent in rows:
            alone = sent / rate
            print(f"  {name:30} {seconds:9.1f}s {sent / 1e6:10.1f}MB {alone:10.1f}s {seconds / alone:6.2f}")
        print(f"  the page took {ours.upload_s / baseline['seconds']:.2f} of the baseline's time "
              f"and sent {ours.bytes_sent / baseline_bytes:.3f} of its bytes")
        (OUT / "last-slowlink.json").write_text(json.dumps({
            "date": datetime.now(timezone.utc).isoformat(), "mbit": args.mbit, "files": len(listing),
            "disc_bytes": disc_bytes, "page": {"seconds": ours.upload_s, "bytes": ours.bytes_sent},
            "baseline": {"seconds": baseline["seconds"], "bytes": baseline_bytes}}, indent=2))
    return 0 if run.ok else 1


if __name__ == "__main__":
    sys.exit(main())
