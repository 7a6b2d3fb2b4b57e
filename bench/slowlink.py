"""The contribution page on a home uplink, against the way common web uploaders do it.

    .venv/bin/python bench/slowlink.py [--size-mib 256] [--mbit 20] [--cuts steady|wifi|mobile] [--keep]

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

With `--cuts` the link keeps breaking, the same way for both runs (the same seeded pattern,
started afresh for each): `wifi`, every connection cut after a random 0.5–1.5 MB sent up it;
`mobile`, every open connection broken every 20–60 s. Their link is 1 MB/s and 125 kB/s
unless `--mbit` says otherwise.

For each it prints the wall time, the bytes that went up the link (everything the proxy
forwarded to the receiver: bodies cut off and sent again included), the bytes stored, and
the wall time the link alone would need for the bytes stored (bytes / rate): the page should
stay within 1.1 of that on a steady link, 1.3 on one that drops. MB is 10^6 bytes.
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


def run_baseline(url: str, folder: Path, files: int, before_upload=lambda: None) -> dict[str, float]:
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
        before_upload()
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


# name: (link in bytes/s when --mbit is not given, how the link breaks)
PATTERNS = {
    "steady": (20e6 / 8, lambda proxy: None),
    "wifi": (1_000_000, lambda proxy: proxy.cut_every(500_000, 1_500_000, seed=11)),
    "mobile": (125_000, lambda proxy: proxy.drop_every(20, 60, seed=12)),
}


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--size-mib", type=int, default=256, help="size of the CT-like disc (default 256)")
    options.add_argument("--mbit", type=float, help="the link, Mbit/s each way (default 20, or the pattern's)")
    options.add_argument("--cuts", choices=sorted(PATTERNS), default="steady", help="how the link breaks")
    options.add_argument("--keep", action="store_true", help="keep the run folder")
    args = options.parse_args(argv)
    if not (ROOT / "dist" / "index.html").is_file():
        print("dist/ is not built: run `python build.py` first", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    folder = ct_folder(OUT, args.size_mib, log)
    listing = [p for p in folder.rglob("*") if p.is_file()]
    disc_bytes = sum(p.stat().st_size for p in listing)
    default_rate, breaks = PATTERNS[args.cuts]
    rate = args.mbit * 1e6 / 8 if args.mbit else default_rate  # bytes per second
    mbit = rate * 8 / 1e6
    with BenchRun("slowlink", args.keep) as run:
        os.environ["PCIR_SITE"] = str(site_with_baseline(run.path))
        url = run.start_receiver()
        with FaultProxy(url) as proxy:
            proxy.throttle(rate)
            log(f"receiver at {url}, through a {mbit:g} Mbit/s link ({args.cuts}) at {proxy.url}")
            ours = Figures()
            # The page loads and the disc is scanned on a steady link: the cuts begin at the click.
            contribute(proxy.url, folder, len(listing), ours, memory=False, before_upload=lambda: breaks(proxy))
            ours_up, ours_cuts = proxy.sent_up, proxy.cuts
            proxy.clear()
            proxy.throttle(rate)
            log(f"the page: {ours.upload_s:.1f} s, {ours_cuts} cuts; now the baseline")
            before = {u.id for u in all_uploads(run.path / "data")}
            baseline = run_baseline(proxy.url, folder, len(listing), before_upload=lambda: breaks(proxy))
            baseline_up, baseline_cuts = proxy.sent_up - ours_up, proxy.cuts - ours_cuts
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
            ("the page (packaged, sealed)", ours.upload_s, ours.bytes_sent, ours_up, ours_cuts),
            ("tus-js-client, raw files", baseline["seconds"], baseline_bytes, baseline_up, baseline_cuts),
        ]
        print()
        version = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout.strip()
        print(f"{len(listing)} files, {disc_bytes / 1e6:.1f} MB, link {mbit:g} Mbit/s "
              f"({rate / 1e6:.3f} MB/s) each way, cuts: {args.cuts}, {version}")
        print(f"  {'':30} {'wall time':>10} {'up the link':>12} {'stored':>10} {'link alone':>11} {'ratio':>6} {'cuts':>5}")
        for name, seconds, stored, up, cuts in rows:
            alone = stored / rate
            print(f"  {name:30} {seconds:9.1f}s {up / 1e6:10.1f}MB {stored / 1e6:8.1f}MB "
                  f"{alone:10.1f}s {seconds / alone:6.2f} {cuts:5d}")
        print(f"  the page took {ours.upload_s / baseline['seconds']:.2f} of the baseline's time "
              f"and stored {ours.bytes_sent / baseline_bytes:.3f} of its bytes")
        (OUT / "last-slowlink.json").write_text(json.dumps({
            "date": datetime.now(timezone.utc).isoformat(), "mbit": mbit, "cuts": args.cuts,
            "files": len(listing), "disc_bytes": disc_bytes,
            "page": {"seconds": ours.upload_s, "bytes": ours.bytes_sent, "up": ours_up, "cuts": ours_cuts},
            "baseline": {"seconds": baseline["seconds"], "bytes": baseline_bytes, "up": baseline_up,
                         "cuts": baseline_cuts}}, indent=2))
    return 0 if run.ok else 1


if __name__ == "__main__":
    sys.exit(main())
