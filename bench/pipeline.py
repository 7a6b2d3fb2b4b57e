"""End-to-end benchmark of the contribution page: a CT-like disc through the real page to the
receiver, then unpacked and checked byte for byte.

    .venv/bin/python bench/pipeline.py [--size-mib 512] [--keep] [--engine chromium|webkit]

Run `python build.py` first: this measures whatever dist/ holds.

What it does, and why this way:
1. Makes a CT-like disc of --size-mib MiB under bench/out/ (bench/ctdisc.py; generated once,
   then reused) so that deflate sees data that compresses like real CT.
2. Starts `pcir-upload serve` on a free port with a fresh data folder, as an operator would.
3. Drives /usr/bin/chromium (headless) through the page over a raw DevTools Protocol connection
   (bench/cdp.py, standard library only). Not Playwright: Playwright enables the Network domain,
   and then Chromium copies every request body for the inspector, which slowed uploads 20-40x
   here. This client uses only the Target, Page, Runtime and DOM domains. The folder is handed to
   the page's <input webkitdirectory> with DOM.setFileInputFiles and the folder's path.
   Timings are taken in the page (performance.now() in a change listener, a MutationObserver and
   a listener for the worker's progress messages), so the 0.1-0.5 s polling does not blur them.
   Memory is sampled every 0.5 s: the Python worker's WebAssembly memory (found by wrapping
   WebAssembly.instantiate in the worker before it runs: Pyodide's module is not reachable from
   the worker's global scope, and Runtime.queryObjects hangs in that worker), the JS heaps of
   page and worker (Runtime.getHeapUsage), and the proportional set size (PSS) of all Chromium
   processes from /proc.
4. Runs `pcir-upload unpack` and compares every file's size and SHA-256 with the disc.
5. Prints the figures and exits non-zero if anything failed. MB is 10^6 bytes; MiB is 2^20.

Needs nothing beyond the project's venv (pydicom is already there) and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cdp import CDP, CDPError, Chromium, memory_by_kind, memory_bytes  # noqa: E402
from ctdisc import ct_folder, ct_volume  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
POLL = 0.5  # seconds between memory samples during the upload


class BenchFailure(Exception):
    """Something in the pipeline did not work; the message says what."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def small_files(out: Path, count: int) -> Path:
    """`count` small CT files (about 1 KB each) without a DICOMDIR, made once (tests/discs.py)."""
    root = out / f"small-{count}"
    if not (root / "IMAGES").is_dir() or sum(1 for p in root.rglob("*") if p.is_file()) != count:
        shutil.rmtree(root, ignore_errors=True)
        sys.path.insert(0, str(ROOT / "tests"))
        from discs import many_small_dicom_files

        log(f"generating {root}")
        many_small_dicom_files(root, count)
    return root


# --- the receiver -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_receiver(data_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`pcir-upload serve` on a free port; returns once it answers. Retries if the port was
    taken between choosing and binding it (other benchmarks may run on this machine)."""
    for _ in range(3):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "pcir_upload.cli", "serve", "--data", str(data_dir), "--port", str(port)],
            cwd=ROOT, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as r:
                    if r.status == 200:
                        return process, url
            except OSError:
                time.sleep(0.1)
        stop(process)
    raise BenchFailure(f"the receiver did not start; see {log_path}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class BenchRun:
    """One run's folder under bench/out/ and the receiver it serves: the receiver is stopped
    and the folder removed after a run that worked (kept with --keep, or after a failure,
    which is printed, not raised, so that `ok` says how the run went)."""

    def __init__(self, prefix: str, keep: bool):
        self.path = OUT / datetime.now(timezone.utc).strftime(f"{prefix}-%Y%m%dT%H%M%SZ")
        self.keep = keep
        self.ok = False
        self._receiver: subprocess.Popen | None = None

    def start_receiver(self) -> str:
        self._receiver, url = start_receiver(self.path / "data", self.path / "server.log")
        return url

    def stop_receiver(self) -> None:
        if self._receiver is not None:
            stop(self._receiver)
            self._receiver = None

    def __enter__(self) -> BenchRun:
        self.path.mkdir(parents=True)
        return self

    def __exit__(self, kind: Any, error: BaseException | None, trace: Any) -> bool:
        self.stop_receiver()
        failed = isinstance(error, (BenchFailure, CDPError, OSError))
        if failed:
            print(f"\nFAILED: {error}", file=sys.stderr)
        self.ok = error is None
        if self.ok and not self.keep:
            shutil.rmtree(self.path)
        else:
            log(f"run folder kept: {self.path}")
        return failed


# --- what runs inside the browser ---------------------------------------------------------------

# Evaluated in the worker before it runs its first line: keeps a reference to every
# WebAssembly.Memory that passes through instantiate, so the driver can read its size.
WORKER_PROBE = r"""(() => {
  const seen = globalThis.__benchMemories = [];
  const keep = (v) => { if (v instanceof WebAssembly.Memory && !seen.includes(v)) seen.push(v); };
  const scan = (o) => {
    if (!o || typeof o !== 'object') return;
    for (const v of Object.values(o)) {
      keep(v);
      if (v && typeof v === 'object' && !(v instanceof WebAssembly.Memory)) Object.values(v).forEach(keep);
    }
  };
  for (const name of ['instantiate', 'instantiateStreaming']) {
    const original = WebAssembly[name];
    WebAssembly[name] = function (source, imports, ...rest) {
      scan(imports);
      return original.call(this, source, imports, ...rest)
        .then((r) => { scan((r.instance || r).exports); return r; });
    };
  }
})()"""

WASM_BYTES = "__benchMemories.reduce((sum, m) => sum + m.buffer.byteLength, 0)"

# Evaluated in the page once Python is ready: timestamps in the page's own clock.
PAGE_PROBE = r"""(() => {
  const $ = (id) => document.getElementById(id);
  const b = window.__bench = { progress: [], files: null, handAt: null, changeAt: null, scannedAt: null,
                               clickAt: null, receiptAt: null, errorAt: null };
  // Capture phase on the document: runs before the page's own listener on the input.
  document.addEventListener('change', (e) => {
    if (e.target.id === 'folder-input') { b.changeAt = performance.now(); b.files = e.target.files.length; }
  }, true);
  new MutationObserver(() => {
    const now = performance.now();
    if (b.scannedAt === null && $('discs').children.length) b.scannedAt = now;
    if (b.receiptAt === null && document.body.dataset.receipt) b.receiptAt = now;
    if (b.errorAt === null && !$('error').hidden) b.errorAt = now;
  }).observe(document.body, { attributes: true, childList: true, subtree: true,
                              attributeFilter: ['hidden', 'data-receipt'] });
  // Progress comes from the worker as messages on its port (app.js, fromWorker).
  document.querySelector('script[type="py"][worker]').xworker.addEventListener('message', ({ data }) => {
    if (data && data.pcir && data.pcir.kind === 'progress') b.progress.push([performance.now(), JSON.parse(data.pcir.progress)]);
  });
})()"""

PAGE_STATE = r"""JSON.stringify({
  files: __bench.files, scanned: __bench.scannedAt !== null, receipt: document.body.dataset.receipt || null,
  error: document.getElementById('error').hidden ? null : document.getElementById('error').innerText,
  progress: __bench.progress.length ? __bench.progress[__bench.progress.length - 1][1] : null,
})"""


@dataclass
class Peaks:
    """Highest values seen while sampling, in bytes."""
    worker_wasm: int = 0  # the page's Python worker
    worker_js_heap: int = 0
    packers_wasm: int = 0  # the packer workers it started, together
    packers_js_heap: int = 0
    page_js_heap: int = 0
    chromium_pss: int = 0
    samples: int = 0
    # PSS by process kind (cdp.memory_by_kind), and the wasm memories and JS heaps of each
    # worker, once when Python is ready and again at the sample of the highest total PSS.
    at_ready: dict[str, Any] = field(default_factory=dict)
    at_peak: dict[str, Any] = field(default_factory=dict)

    def take(self, **values: int) -> None:
        for name, value in values.items():
            setattr(self, name, max(getattr(self, name), value))


@dataclass
class Figures:
    """Everything measured in one run. Times in seconds, sizes in bytes."""
    files: int = 0
    disc_bytes: int = 0
    bytes_sent: int = 0
    chunks_confirmed: int = 0
    python_ready_s: float = 0.0
    listing_s: float = 0.0
    scan_s: float = 0.0
    upload_s: float = 0.0
    first_chunk_s: float = 0.0
    unpack_s: float = 0.0
    receipt: str = ""
    packers: int = 0  # packer workers the page started
    peaks: Peaks = field(default_factory=Peaks)


class PageDriver:
    """The contribution page in one Chromium tab, and its Python worker."""

    def __init__(self, browser: Chromium, url: str, memory: bool = True):
        self.browser = browser
        self.memory = memory  # sample memory while polling (off: to check the sampling costs nothing)
        self.cdp = CDP(browser.ws_url)
        self.url = url
        self.page = ""
        self.workers: list[str] = []

    def open(self) -> float:
        """Load the page; returns the seconds until Python is ready (data-ready)."""
        targets = self.cdp.send("Target.getTargets")["targetInfos"]
        target = next(t["targetId"] for t in targets if t["type"] == "page")
        self.page = self.cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        # Workers start paused so that the probe is in place before Pyodide instantiates.
        self.cdp.send("Target.setAutoAttach",
                      {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True}, self.page)
        start = time.monotonic()
        self.cdp.send("Page.navigate", {"url": self.url + "/"}, self.page)
        self.wait_for("document.body && document.body.dataset.ready === 'true'", 120, "Python to be ready")
        if not self.workers:
            raise BenchFailure("the page's worker never appeared")
        elapsed = time.monotonic() - start
        self.evaluate(PAGE_PROBE)
        return elapsed

    def evaluate(self, expression: str, session: str | None = None) -> Any:
        self._attach_workers()
        return self.cdp.evaluate(expression, session or self.page)

    def _attach_workers(self) -> None:
        """Put the probe into each newly started worker, then let it run."""
        for event in self.cdp.pop_events("Target.attachedToTarget"):
            info, session = event["params"]["targetInfo"], event["params"]["sessionId"]
            if info["type"] == "worker":
                self.cdp.evaluate(WORKER_PROBE, session)
                self.workers.append(session)
                # The packers are the worker's own workers: attach to them the same way.
                self.cdp.send("Target.setAutoAttach",
                              {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True}, session)
            self.cdp.send("Runtime.runIfWaitingForDebugger", {}, session)

    def wait_for(self, expression: str, timeout: float, what: str, interval: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(f"!!({expression})"):
            if time.monotonic() > deadline:
                raise BenchFailure(f"timed out after {timeout} s waiting for {what}")
            time.sleep(interval)

    def agree(self) -> None:
        self.evaluate("document.querySelectorAll('input[name=confirm]').forEach((box) => { box.checked = true; }); "
                      "document.getElementById('agree-continue').click()")
        self.wait_for("!document.getElementById('step-choose').hidden", 10, "the choose step")

    def hand_folder(self, folder: Path) -> None:
        """Give the folder to <input webkitdirectory>, as choosing it in the dialog would."""
        document = self.cdp.send("DOM.getDocument", {"depth": 0}, self.page)
        node = self.cdp.send("DOM.querySelector",
                             {"nodeId": document["root"]["nodeId"], "selector": "#folder-input"}, self.page)
        # The page's clock starts here: Chromium lists the folder before the change event fires.
        self.evaluate("window.__bench.handAt = performance.now()")
        self.cdp.send("DOM.setFileInputFiles", {"nodeId": node["nodeId"], "files": [str(folder)]}, self.page)

    def state(self) -> dict[str, Any]:
        return json.loads(self.evaluate(PAGE_STATE))

    def sample(self, peaks: Peaks) -> None:
        """One memory sample of worker, page and the whole browser."""
        if not self.memory:
            return
        kinds = memory_by_kind(self.browser.pids())
        values = {"chromium_pss": sum(k["pss"] for k in kinds.values()),
                  "page_js_heap": int(self.cdp.send("Runtime.getHeapUsage", {}, self.page)["usedSize"])}
        wasm = [int(self.evaluate(WASM_BYTES, worker)) for worker in self.workers]
        usage = [self.cdp.send("Runtime.getHeapUsage", {}, worker) for worker in self.workers]
        heaps = [int(u["usedSize"]) for u in usage]
        # ArrayBuffers' contents live outside the JS heap (read pieces, chunks on their way to
        # WebCrypto and fetch): Chromium reports them as backingStorageSize.
        buffers = [int(u.get("backingStorageSize", -1)) for u in usage]
        if wasm:  # the first worker is the page's own; any others are its packers
            values.update(worker_wasm=wasm[0], worker_js_heap=heaps[0],
                          packers_wasm=sum(wasm[1:]), packers_js_heap=sum(heaps[1:]))
        snapshot = {"pss": kinds, "wasm": wasm, "js_heaps": heaps, "buffers": buffers,
                    "page_js_heap": values["page_js_heap"]}
        if not peaks.samples:
            peaks.at_ready = snapshot
        if values["chromium_pss"] > peaks.chromium_pss:
            peaks.at_peak = snapshot
        peaks.take(**values)
        peaks.samples += 1

    def until(self, done, timeout: float, peaks: Peaks, interval: float) -> dict[str, Any]:
        """Poll the page (sampling memory) until done(state) or an error; returns the state."""
        deadline = time.monotonic() + timeout
        next_sample = 0.0
        while True:
            state = self.state()
            if state["error"]:
                raise BenchFailure(f"the page shows an error: {state['error']}")
            if done(state):
                self.sample(peaks)
                return state
            if time.monotonic() > deadline:
                raise BenchFailure(f"timed out after {timeout} s; last state {state}")
            if time.monotonic() >= next_sample:
                self.sample(peaks)
                next_sample = time.monotonic() + POLL
            time.sleep(interval)

    def profile(self, seconds: float) -> None:
        """Sample the CPU of the page's main thread and of each worker for `seconds`, and
        print where each spent its time (self time by function): to find what limits a run."""
        targets = [("page", self.page)] + [(f"worker {i + 1}", w) for i, w in enumerate(self.workers)]
        for _, session in targets:
            self.cdp.send("Profiler.enable", {}, session)
            self.cdp.send("Profiler.setSamplingInterval", {"interval": 1000}, session)
            self.cdp.send("Profiler.start", {}, session)
        time.sleep(seconds)
        for name, session in targets:
            nodes = self.cdp.send("Profiler.stop", {}, session)["profile"]
            print_profile(name, nodes, seconds)

    def close(self) -> None:
        self.cdp.close()


def print_profile(name: str, profile: dict[str, Any], seconds: float) -> None:
    """Self time by function of one CDP profile, the top lines."""
    by_id = {node["id"]: node for node in profile["nodes"]}
    interval = (profile["endTime"] - profile["startTime"]) / max(1, len(profile["samples"])) / 1e6
    self_time: dict[str, float] = {}
    for sample in profile["samples"]:
        frame = by_id[sample]["callFrame"]
        where = frame["url"].rsplit("/", 1)[-1]
        key = f"{frame['functionName'] or '(anonymous)'} {where}:{frame['lineNumber']}:{frame['columnNumber']}"
        self_time[key] = self_time.get(key, 0.0) + interval
    busy = sum(t for k, t in self_time.items() if not k.startswith("(idle)"))
    print(f"\n{name}: busy {busy:.1f} of {seconds:.1f} s")
    for key, t in sorted(self_time.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {t:6.2f} s  {key}")


def contribute(url: str, folder: Path, expected_files: int, figures: Figures, memory: bool,
               profile: float = 0, profile_scan: float = 0, before_upload=lambda: None) -> None:
    """The patient's path through the page, measured; `before_upload()` just before the click."""
    browser = Chromium()
    try:
        page = PageDriver(browser, url, memory)
        figures.python_ready_s = page.open()
        page.sample(figures.peaks)  # the first sample: memory at ready
        log(f"Python ready after {figures.python_ready_s:.1f} s; handing over the folder")
        page.agree()
        page.hand_folder(folder)
        if profile_scan:
            page.profile(profile_scan)
        state = page.until(lambda s: s["scanned"] or s["files"] == 0, 600, figures.peaks, 0.1)
        if state["files"] != expected_files:
            raise BenchFailure(f"the page received {state['files']} files, the folder has {expected_files}")
        log(f"scanned {state['files']} files; uploading")
        before_upload()
        page.evaluate("document.getElementById('choose-continue').click(); "
                      "window.__bench.clickAt = performance.now(); document.getElementById('upload').click()")
        if profile:
            time.sleep(2)
            page.profile(profile)
        state = page.until(lambda s: s["receipt"], 7200, figures.peaks, POLL)
        bench = page.evaluate("JSON.stringify(window.__bench)")
        figures.packers = len(page.workers) - 1
        page.close()
    finally:
        browser.close()
    read_page_timings(json.loads(bench), state, figures)


def contribute_webkit(url: str, folder: Path, expected_files: int, figures: Figures, memory: bool,
                      home: Path) -> None:
    """The same path in WebKitGTK (tests/webkit.py's own window under an Xvfb of its own):
    the folder through WebKit's file chooser request, memory as the PSS of WebKit's processes
    (no wasm or heap figures: WebKit has no DevTools Protocol to ask)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import webkit

    def state() -> dict[str, Any]:
        return json.loads(page.run("return " + PAGE_STATE))

    def until(done, timeout: float, interval: float) -> dict[str, Any]:
        deadline, next_sample = time.monotonic() + timeout, 0.0
        while True:
            now = state()
            if now["error"]:
                raise BenchFailure(f"the page shows an error: {now['error']}")
            if memory and time.monotonic() >= next_sample:
                figures.peaks.take(chromium_pss=memory_bytes(webkit.processes(page.pid)))
                figures.peaks.samples += 1
                next_sample = time.monotonic() + POLL
            if done(now):
                return now
            if time.monotonic() > deadline:
                raise BenchFailure(f"timed out after {timeout} s; last state {now}")
            time.sleep(interval)

    with webkit.xvfb() as display, webkit.view(display, home) as page:
        start = time.monotonic()
        page.load(url + "/")
        page.wait("body[data-ready=true], #error:not([hidden])", 120)
        figures.python_ready_s = time.monotonic() - start
        log(f"Python ready after {figures.python_ready_s:.1f} s in WebKit; handing over the folder")
        page.run(PAGE_PROBE)
        page.run("document.querySelectorAll('input[name=confirm]').forEach((box) => { box.checked = true; }); "
                 "document.getElementById('agree-continue').click()")
        page.wait("#step-choose:not([hidden])", 10)
        page.choose(folder)
        page.run("window.__bench.handAt = performance.now(); document.getElementById('folder-input').click()")
        now = until(lambda s: s["scanned"] or s["files"] == 0, 600, 0.1)
        if now["files"] != expected_files:
            raise BenchFailure(f"the page received {now['files']} files, the folder has {expected_files}")
        log(f"scanned {now['files']} files; uploading")
        page.run("document.getElementById('choose-continue').click(); "
                 "window.__bench.clickAt = performance.now(); document.getElementById('upload').click()")
        now = until(lambda s: s["receipt"], 7200, POLL)
        bench = json.loads(page.run("return JSON.stringify(window.__bench)"))
        held = json.loads(page.run("return await document.querySelector('script[type=\"py\"][worker]')"
                                   ".xworker.sync.memory_report()"))
        figures.packers = len(held["packers"])
    read_page_timings(bench, now, figures)


def read_page_timings(bench: dict[str, Any], state: dict[str, Any], figures: Figures) -> None:
    """Turn the page's timestamps (milliseconds, performance.now()) into the figures."""
    progress = bench["progress"]
    if not progress:
        raise BenchFailure("the worker sent no progress")
    last = progress[-1][1]
    figures.receipt = state["receipt"]
    figures.files = last["files_total"]
    figures.disc_bytes = last["disc_bytes_total"]
    figures.bytes_sent = last["bytes_sent"]
    figures.chunks_confirmed = len(progress)
    figures.listing_s = (bench["changeAt"] - bench["handAt"]) / 1000
    figures.scan_s = (bench["scannedAt"] - bench["handAt"]) / 1000
    figures.upload_s = (bench["receiptAt"] - bench["clickAt"]) / 1000
    figures.first_chunk_s = (progress[0][0] - bench["clickAt"]) / 1000
    if not last["done"] or last["disc_bytes_done"] != last["disc_bytes_total"]:
        raise BenchFailure(f"the last progress report is not complete: {last}")


# --- unpack and check ---------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(root: Path) -> dict[str, tuple[int, str]]:
    """Every file below root: relative path -> (size, sha256)."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, sha256_file(p))
            for p in sorted(root.rglob("*")) if p.is_file()}


def unpack_and_verify(data_dir: Path, out: Path, folder: Path, figures: Figures) -> None:
    """`pcir-upload unpack` (which checks every chunk and hash itself), then an independent
    comparison of sizes and SHA-256 with the disc as generated."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pcir_upload.cli", "unpack", "--data", str(data_dir),
         "--private-key", str(data_dir / "private_key.pem"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True,
    )
    figures.unpack_s = time.monotonic() - start
    print(result.stdout.rstrip())
    if result.returncode != 0:
        raise BenchFailure(f"pcir-upload unpack failed ({result.returncode}): {result.stderr.strip()}")
    if f"(receipt {figures.receipt})" not in result.stdout:
        raise BenchFailure(f"unpack did not report the page's receipt {figures.receipt}")
    contributions = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(contributions) != 1:
        raise BenchFailure(f"expected one unpacked contribution, found {len(contributions)}")
    got, want = fingerprint(contributions[0] / "files" / "disc-1"), fingerprint(folder)  # one disc
    if got != want:
        missing, extra = want.keys() - got.keys(), got.keys() - want.keys()
        differ = [k for k in want.keys() & got.keys() if want[k] != got[k]]
        raise BenchFailure(f"unpacked files differ: {len(missing)} missing, {len(extra)} extra, "
                           f"{len(differ)} changed (e.g. {sorted(missing or extra or differ)[:3]})")
    log(f"verified {len(got)} files byte for byte (size and SHA-256)")


# --- the report ---------------------------------------------------------------------------------

def report(figures: Figures, what: str) -> list[tuple[str, str]]:
    f, p = figures, figures.peaks
    mb = 1e6  # MB/s are of disc data, 1 MB = 10^6 bytes
    total = f.scan_s + f.upload_s
    rows = [
        ("disc", f"{f.files} files, {f.disc_bytes / mb:.1f} MB ({f.disc_bytes / 2**20:.1f} MiB)"),
        ("Python ready (navigate -> data-ready)", f"{f.python_ready_s:.1f} s"),
        ("scan (folder handed -> disc listed)", f"{f.scan_s:.2f} s"),
        ("  of which the browser listing the folder", f"{f.listing_s:.2f} s (until the change event)"),
        ("upload (click -> receipt)", f"{f.upload_s:.1f} s"),
        ("upload speed (disc MB / upload s)", f"{f.disc_bytes / mb / f.upload_s:.1f} MB/s"),
        ("scan + upload", f"{total:.1f} s ({f.disc_bytes / mb / total:.1f} MB/s)"),
        ("first chunk confirmed after click", f"{f.first_chunk_s:.2f} s"),
        ("bytes sent / disc bytes",
         f"{f.bytes_sent / mb:.1f} MB / {f.disc_bytes / mb:.1f} MB = {f.bytes_sent / f.disc_bytes:.3f}"),
        ("progress reports (confirmed chunks)", f"{f.chunks_confirmed}"),
    ]
    if p.samples and p.worker_wasm:
        rows += [
            ("peak worker wasm memory", f"{p.worker_wasm / 2**20:.0f} MiB"),
            ("peak worker JS heap (used)", f"{p.worker_js_heap / 2**20:.1f} MiB"),
            (f"peak packers' wasm memory ({f.packers} workers)", f"{p.packers_wasm / 2**20:.0f} MiB"),
            ("peak packers' JS heap (used)", f"{p.packers_js_heap / 2**20:.1f} MiB"),
            ("peak page JS heap (used)", f"{p.page_js_heap / 2**20:.1f} MiB"),
            ("peak browser PSS (all its processes)", f"{p.chromium_pss / 2**20:.0f} MiB"),
            ("memory samples", f"{p.samples} (every {POLL} s)"),
        ]
    elif p.samples:  # WebKit: the processes' memory only
        rows += [
            (f"peak browser PSS (all its processes; {f.packers} packers)", f"{p.chromium_pss / 2**20:.0f} MiB"),
            ("memory samples", f"{p.samples} (every {POLL} s)"),
        ]
    else:
        rows.append(("memory", "not sampled (--no-memory)"))
    rows += [
        ("unpack + hash check (pcir-upload unpack)", f"{f.unpack_s:.1f} s"),
        ("receipt", f.receipt),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    print(f"pcir-upload pipeline benchmark of {what}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    for name, snapshot in (("at ready", p.at_ready), ("at peak", p.at_peak)):
        if snapshot:
            print_breakdown(name, snapshot)
    return rows


def print_breakdown(name: str, snapshot: dict[str, Any]) -> None:
    """PSS by process kind (anon / file / shmem) and each worker's wasm memory and JS heap."""
    mib = 2**20
    kinds = snapshot["pss"]
    print(f"  PSS {name}: {sum(k['pss'] for k in kinds.values()) / mib:.0f} MiB")
    for kind, k in sorted(kinds.items(), key=lambda kv: -kv[1]["pss"]):
        print(f"    {kind:<22} {k['processes']} proc  {k['pss'] / mib:6.0f} MiB  (anon {k['anon'] / mib:.0f}, "
              f"file {k['file'] / mib:.0f}, shmem {k['shmem'] / mib:.0f})")
    workers = ", ".join(f"{w / mib:.0f} + {h / mib:.1f} + {b / mib:.1f}"
                        for w, h, b in zip(snapshot["wasm"], snapshot["js_heaps"], snapshot["buffers"]))
    print(f"    workers' wasm + JS heap + ArrayBuffers (MiB; the page's worker first): {workers}; "
          f"page JS heap {snapshot['page_js_heap'] / mib:.1f}")


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--size-mib", type=int, default=512, help="size of the CT-like disc (default 512)")
    options.add_argument("--keep", action="store_true", help="keep the run folder (uploads, unpacked files)")
    options.add_argument("--no-memory", action="store_true",
                         help="do not sample memory (to check that sampling does not slow the upload)")
    options.add_argument("--folder", type=Path, help="benchmark this folder instead (e.g. a real disc)")
    options.add_argument("--one-file", action="store_true",
                         help="the disc is one DICOM file of --size-mib (a multi-frame volume)")
    options.add_argument("--small-files", type=int, metavar="N",
                         help="the disc is N small CT files without a DICOMDIR (tests/discs.py), "
                              "as for the summary of a 20,000-file disc")
    options.add_argument("--profile", type=float, default=0, metavar="SECONDS",
                         help="2 s into the upload, sample the CPU of the page and its workers for "
                              "SECONDS and print where the time went (slows the run)")
    options.add_argument("--profile-scan", type=float, default=0, metavar="SECONDS",
                         help="the same, from the moment the folder is handed over")
    options.add_argument("--engine", choices=["chromium", "webkit"], default="chromium",
                         help="the browser engine: Debian's Chromium over CDP, or WebKitGTK "
                              "(tests/webkit.py; memory is its processes' PSS only)")
    args = options.parse_args(argv)
    if not (ROOT / "dist" / "index.html").is_file():
        print("dist/ is not built: run `python build.py` first", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    if args.folder:
        folder = args.folder.resolve()
    elif args.small_files:
        folder = small_files(OUT, args.small_files)
    else:
        folder = (ct_volume if args.one_file else ct_folder)(OUT, args.size_mib, log)
    listing = [p for p in folder.rglob("*") if p.is_file()]
    if not listing:
        print(f"{folder} holds no files", file=sys.stderr)
        return 2
    figures = Figures()
    with BenchRun("run", args.keep) as run:
        url = run.start_receiver()
        log(f"receiver at {url}, data in {run.path / 'data'}")
        if args.engine == "webkit":
            contribute_webkit(url, folder, len(listing), figures, not args.no_memory, run.path / "webkit")
        else:
            contribute(url, folder, len(listing), figures, not args.no_memory, args.profile, args.profile_scan)
        log(f"receipt {figures.receipt}; unpacking")
        run.stop_receiver()
        unpack_and_verify(run.path / "data", run.path / "unpacked", folder, figures)
        what = f"{args.engine}: " + (str(args.folder) if args.folder else f"--small-files {args.small_files}" if args.small_files
                else f"--size-mib {args.size_mib}{' --one-file' * args.one_file}")
        rows = report(figures, what)
        (OUT / "last-run.json").write_text(json.dumps(
            {"date": datetime.now(timezone.utc).isoformat(), "folder": str(folder),
             "figures": asdict(figures), "table": rows}, indent=2))
    return 0 if run.ok else 1


if __name__ == "__main__":
    sys.exit(main())
