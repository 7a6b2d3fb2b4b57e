"""Each stage of packing a disc, alone, in the browser: what bounds the pipeline, and by how much.

    .venv/bin/python bench/stages.py [--size-mib 64] [--folder DIR]

Run `python build.py` first (it uses dist/'s Pyodide). A bare Pyodide in a module Worker (as
a packer runs) on a page served by `pcir-upload serve` gets the files of a CT-like disc
(bench/ctdisc.py) through `<input webkitdirectory>`, then times, over the first --size-mib MiB:
reading the File objects, copying them into Python (`to_bytes()` and `assign_to()`), CRC-32,
SHA-256 in wasm (hashlib) and in WebCrypto, raw deflate at each level the page uses (run
lengths only, zlib 1, 2, 4, 6: speed and ratio), and copying back to JavaScript. One core,
nothing else running in the page. MB is 10^6 bytes of input; ratio is input / output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cdp import CDP, Chromium  # noqa: E402
from ctdisc import ct_folder  # noqa: E402
from pipeline import OUT, ROOT, BenchFailure, log, start_receiver, stop  # noqa: E402

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>stages</title>
<script type="module" src="/stages/page.js"></script></head>
<body><input type="file" id="folder" webkitdirectory multiple></body></html>"""
PAGE_JS = """
const worker = new Worker('/stages/worker.mjs', { type: 'module' });
window.__result = null;
worker.onmessage = (e) => { window.__result = e.data; };
worker.onerror = (e) => { window.__result = JSON.stringify({ error: String(e.message) }); };
document.getElementById('folder').addEventListener('change', (e) => {
  worker.postMessage({ files: Array.from(e.target.files), limit: Number(location.hash.slice(1)) });
});
"""
WORKER_JS = """
import { loadPyodide } from '/pyodide/pyodide.mjs';
const ready = loadPyodide();
onmessage = async (e) => {
  try {
    const py = await ready;
    py.globals.set('files', e.data.files);
    py.globals.set('limit', e.data.limit);
    postMessage(await py.runPythonAsync(await (await fetch('/stages/stages.py')).text()));
  } catch (error) {
    postMessage(JSON.stringify({ error: String(error) }));
  }
};
"""
# Runs in the worker: `files` (File objects) and `limit` (bytes) are given.
STAGES = """
import hashlib, json, time, zlib
import js

def rate(seconds):
    return round(total / 1e6 / seconds, 1)

out, arrays, total = {}, [], 0
start = time.perf_counter()
for i in range(files.length):
    f = files[i]
    arrays.append(js.Uint8Array.new(await f.arrayBuffer()))  # as the packers read a whole file
    total += f.size
    if total >= limit:
        break
out["read File objects (one at a time)"] = rate(time.perf_counter() - start)
start = time.perf_counter()
datas = [a.to_bytes() for a in arrays]
out["into Python: to_bytes()"] = rate(time.perf_counter() - start)
start = time.perf_counter()
for a in arrays:
    copy = bytearray(a.length)
    a.assign_to(copy)
out["into Python: assign_to(bytearray)"] = rate(time.perf_counter() - start)
start = time.perf_counter()
for d in datas:
    zlib.crc32(d)
out["CRC-32 (zlib)"] = rate(time.perf_counter() - start)
start = time.perf_counter()
for d in datas:
    hashlib.sha256(d).digest()
out["SHA-256, hashlib (wasm)"] = rate(time.perf_counter() - start)
start = time.perf_counter()
for a in arrays:
    await js.crypto.subtle.digest("SHA-256", a)
out["SHA-256, WebCrypto"] = rate(time.perf_counter() - start)
for name, level, strategy in (("run lengths", 1, zlib.Z_RLE), ("zlib 1", 1, 0), ("zlib 2", 2, 0),
                              ("zlib 4", 4, 0), ("zlib 6", 6, 0)):
    start, size = time.perf_counter(), 0
    for d in datas:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
        size += len(c.compress(d)) + len(c.flush())
    out[f"deflate, {name}"] = [rate(time.perf_counter() - start), round(total / size, 3)]
start = time.perf_counter()
for d in datas:
    js.Uint8Array.new(len(d)).assign(d)
out["to JavaScript: Uint8Array.assign"] = rate(time.perf_counter() - start)
out["bytes"] = total
json.dumps(out)
"""


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--size-mib", type=int, default=64, help="MiB of the disc to time (default 64)")
    options.add_argument("--folder", type=Path, help="time this folder's files instead")
    args = options.parse_args(argv)
    if not (ROOT / "dist" / "index.html").is_file():
        print("dist/ is not built: run `python build.py` first", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    folder = args.folder.resolve() if args.folder else ct_folder(OUT, max(args.size_mib, 256), log)
    with tempfile.TemporaryDirectory(prefix="stages-", dir=OUT) as tmp:
        site = Path(tmp) / "site"
        shutil.copytree(ROOT / "dist", site, copy_function=os.link)
        (site / "stages").mkdir()
        (site / "stages.html").write_text(PAGE)
        for name, text in (("page.js", PAGE_JS), ("worker.mjs", WORKER_JS), ("stages.py", STAGES)):
            (site / "stages" / name).write_text(text)
        os.environ["PCIR_SITE"] = str(site)
        receiver, url = start_receiver(Path(tmp) / "data", Path(tmp) / "server.log")
        browser = Chromium()
        try:
            cdp = CDP(browser.ws_url)
            target = next(t["targetId"] for t in cdp.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
            page = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            cdp.send("Page.navigate", {"url": f"{url}/stages.html#{args.size_mib * 2**20}"}, page)
            time.sleep(2)
            document = cdp.send("DOM.getDocument", {"depth": 0}, page)
            node = cdp.send("DOM.querySelector", {"nodeId": document["root"]["nodeId"], "selector": "#folder"}, page)
            cdp.send("DOM.setFileInputFiles", {"nodeId": node["nodeId"], "files": [str(folder)]}, page)
            deadline = time.monotonic() + 600
            while not (result := cdp.evaluate("window.__result", page)):
                if time.monotonic() > deadline:
                    raise BenchFailure("the stages did not finish in 10 minutes")
                time.sleep(0.5)
        finally:
            browser.close()
            stop(receiver)
    figures = json.loads(result)
    if "error" in figures:
        print(f"FAILED: {figures['error']}", file=sys.stderr)
        return 1
    version = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"\n{figures.pop('bytes') / 1e6:.1f} MB of {folder}, one Worker, {version}")
    for name, value in figures.items():
        speed, ratio = value if isinstance(value, list) else (value, None)
        print(f"  {name:36} {speed:8.1f} MB/s" + (f"   ratio {ratio:.3f}" if ratio else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
