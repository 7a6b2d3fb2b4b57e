"""The contribution page's first load, measured: how soon the welcome is usable, how soon Python
is ready, and how many bytes it takes, on a first visit and on a return visit.

    .venv/bin/python bench/firstload.py [--runs 5] [--site dist] [--no-network] [--json FILE] [--engine webkit]

Run `python build.py` first: this measures whatever dist/ (or --site) holds.

What it does, and why this way:
1. Serves the site with the real receiver (`create_app`, as `pcir-upload serve` does) in a
   process of its own on 127.0.0.1, wrapped in a counter that logs, for every response, its
   path, status, Content-Encoding and the body bytes actually sent: the server's own account
   of what a visit cost.
2. Starts /usr/bin/chromium (headless) with a fresh profile, over a raw DevTools Protocol
   connection (bench/cdp.py; Playwright is not attached: it distorts timings). Before the
   navigation a probe is installed in every new document (Page.addScriptToEvaluateOnNewDocument):
   it stamps, in the page's own clock (performance.now(), whose origin is the navigation's
   start), when #start got its label from app.js (the module has run: the label is set and the
   click listener attached in the same task), the frame after that (painted), and when
   body[data-ready=true] appears (the Python worker answered its first call). First
   contentful paint comes from the page's paint timing.
3. With the Network domain on (the default; no uploads happen here, so the copying that
   slows uploads under DevTools does not matter), every request of the page and of its workers
   is recorded: URL, status, whether it came from the disk cache, and the bytes received
   (Network.loadingFinished's encodedDataLength, headers included). Workers are attached paused
   (Target.setAutoAttach with waitForDebuggerOnStart) and released at once from an event loop,
   so none of their requests is missed. `--no-network` attaches nothing and counts bytes on the
   server side only, to check that observing the network does not change the times.
4. Closes the browser (Browser.close, so the cache is written), starts it again on the same
   profile and loads the page again: a return visit, another day.
5. Repeats --runs times with a fresh profile each time and prints median and range.

MB is 10^6 bytes. Exits non-zero if the page fails to get ready or a request leaves the origin.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cdp import CDP, CDPError, Chromium, memory_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


class BenchFailure(Exception):
    """The page did not load as it should; the message says what."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the server, in a process of its own ----------------------------------------------------------

def serve(site: Path, data: Path, port_file: Path, log_file: Path) -> None:
    """The receiver's app on a free port of 127.0.0.1, every response counted into log_file."""
    import uvicorn

    from pcir_upload.repository.keys import keygen, load_public_keys
    from pcir_upload.repository.receive.app import create_app, uvicorn_options

    keygen(data)
    keys = load_public_keys(data / "public_key.pem")
    app = create_app(data, site, keys.classical, hybrid_public_key=keys.hybrid)
    out = open(log_file, "a", buffering=1)

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        record: dict[str, Any] = {"path": scope["path"], "method": scope["method"], "bytes": 0,
                                  "accept_encoding": request_headers.get("accept-encoding", "")}

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
                record["encoding"] = headers.get("content-encoding", "")
            elif message["type"] == "http.response.body":
                record["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, counting_send)
        finally:
            out.write(json.dumps(record) + "\n")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        config = uvicorn.Config(counted, log_level="warning", **uvicorn_options())  # type: ignore[arg-type]
        server = uvicorn.Server(config)
        port_file.write_text(str(s.getsockname()[1]))
        server.run(sockets=[s])


class Server:
    """`serve` above, as a child process; its log is read back between visits."""

    def __init__(self, site: Path, workdir: Path):
        self.log_file = workdir / "server.log"
        port_file = workdir / "port"
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(site), str(workdir / "data"), str(port_file),
             str(self.log_file)],
            cwd=ROOT, stdout=open(workdir / "server.out", "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise BenchFailure(f"the server did not start; see {workdir / 'server.out'}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"
        while True:
            try:
                with urllib.request.urlopen(self.url + "/api/config", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise BenchFailure("the server does not answer")
                time.sleep(0.05)
        self._seen = self._lines()

    def _lines(self) -> int:
        return len(self.log_file.read_text().splitlines()) if self.log_file.exists() else 0

    def take(self) -> list[dict[str, Any]]:
        """The responses logged since the last call (the health check's included the first time)."""
        time.sleep(0.2)  # the log line is written when the response ends
        lines = self.log_file.read_text().splitlines() if self.log_file.exists() else []
        taken, self._seen = lines[self._seen:], len(lines)
        return [json.loads(line) for line in taken]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the browser ----------------------------------------------------------------------------------

class Browser(Chromium):
    """Chromium on a profile that outlives it, so that a second start is a return visit."""

    def __init__(self, profile: Path, executable: str = "/usr/bin/chromium"):
        self.profile_dir = profile
        self.process = subprocess.Popen(
            [executable, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.ws_url = self._devtools_url()

    def close(self, cdp: CDP | None = None) -> None:
        """Browser.close lets Chromium write its cache; terminate only if it does not exit."""
        if cdp is not None and self.process.poll() is None:
            try:
                cdp.send("Browser.close")
            except (CDPError, OSError):
                pass
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# Installed in every new document before it runs: stamps in the page's clock (milliseconds since
# the navigation started).
PAGE_PROBE = r"""(() => {
  if (!location.protocol.startsWith('http')) return;
  const b = window.__firstload = { labelled: null, painted: null, ready: null };
  const afterPaint = (then) => requestAnimationFrame(() => {
    const channel = new MessageChannel();
    channel.port1.onmessage = then;
    channel.port2.postMessage(null);
  });
  const stamp = () => {
    const start = document.getElementById('start');
    if (b.labelled === null && start && start.textContent.trim()) {
      b.labelled = performance.now();
      afterPaint(() => { b.painted = performance.now(); });
    }
    if (b.ready === null && document.body && document.body.dataset.ready === 'true') b.ready = performance.now();
  };
  new MutationObserver(stamp).observe(document, {
    subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['data-ready'],
  });
})()"""

# Evaluated in each worker before its first line (--phases): stamps around WebAssembly
# instantiation, in the worker's clock.
WORKER_PROBE = r"""(() => {
  const w = globalThis.__firstload = { instantiate: [] };
  for (const name of ['instantiate', 'instantiateStreaming']) {
    const original = WebAssembly[name];
    WebAssembly[name] = function (...args) {
      const entry = { name, start: performance.now(), end: null };
      w.instantiate.push(entry);
      return original.apply(this, args).then((r) => { entry.end = performance.now(); return r; });
    };
  }
})()"""

WORKER_STATE = r"""JSON.stringify({
  origin: performance.timeOrigin,
  instantiate: (globalThis.__firstload || {}).instantiate || [],
  marks: performance.getEntriesByType('mark').map((e) => ({ name: e.name, start: e.startTime })),
  resources: performance.getEntriesByType('resource').map((e) => ({
    name: e.name, start: e.startTime, end: e.responseEnd, size: e.transferSize })),
})"""

PAGE_STATE = r"""JSON.stringify({
  ...window.__firstload,
  origin: performance.timeOrigin,
  resources: performance.getEntriesByType('resource').map((e) => ({
    name: e.name, start: e.startTime, end: e.responseEnd, size: e.transferSize })),
  fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime ?? null,
  error: (document.getElementById('error') && !document.getElementById('error').hidden)
    ? document.getElementById('error').innerText : null,
})"""


@dataclass
class Request:
    url: str
    status: int = 0
    from_cache: bool = False
    encoding: str = ""
    received: int = 0  # bytes on the wire, headers included (encodedDataLength)
    failed: str = ""


@dataclass
class Visit:
    """One page load. Times in seconds from the navigation's start."""
    fcp_s: float = 0.0
    welcome_s: float = 0.0  # #start labelled and listened to
    welcome_painted_s: float = 0.0
    ready_s: float = 0.0
    requests: list[Request] = field(default_factory=list)
    server: list[dict[str, Any]] = field(default_factory=list)

    @property
    def network_bytes(self) -> int:
        return sum(r.received for r in self.requests)

    @property
    def network_requests(self) -> int:
        """Requests that reached the network (not answered from the cache)."""
        return sum(1 for r in self.requests if not r.from_cache and r.url.startswith("http"))

    @property
    def server_bytes(self) -> int:
        return sum(r["bytes"] for r in self.server)


class Page:
    """One tab of a browser, driven from an event loop that releases paused workers at once."""

    def __init__(self, browser: Browser, network: bool, phases: bool = False,
                 throttle: tuple[float, float] | None = None):
        self.cdp = CDP(browser.ws_url)
        self.network = network
        self.throttle = throttle
        self.phases = phases
        self.workers: list[str] = []
        self.requests: dict[str, Request] = {}
        targets = self.cdp.send("Target.getTargets")["targetInfos"]
        target = next(t["targetId"] for t in targets if t["type"] == "page")
        self.session = self.cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.cdp.send("Page.enable", {}, self.session)
        self.cdp.send("Page.addScriptToEvaluateOnNewDocument", {"source": PAGE_PROBE}, self.session)
        if network:
            self._watch(self.session)
        if network or phases:
            self.cdp.send("Target.setAutoAttach",
                          {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True}, self.session)

    def _watch(self, session: str) -> None:
        # No buffering of bodies for the inspector: only sizes are wanted.
        self.cdp.send("Network.enable", {"maxTotalBufferSize": 0, "maxResourceBufferSize": 0}, session)
        self.cdp.send("Network.setCacheDisabled", {"cacheDisabled": False}, session)
        if self.throttle and session == self.session:
            # Set on the page; workers answer "Not supported" and are throttled with their page.
            mbit, rtt = self.throttle
            self.cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": rtt, "downloadThroughput": mbit * 1e6 / 8,
                "uploadThroughput": mbit * 1e6 / 8}, session)

    def _handle(self, event: dict[str, Any]) -> None:
        method, params = event["method"], event.get("params", {})
        if method == "Target.attachedToTarget":
            session = params["sessionId"]
            if self.network:
                self._watch(session)
            if self.phases and params["targetInfo"]["type"] == "worker":
                self.cdp.evaluate(WORKER_PROBE, session)
                self.workers.append(session)
            self.cdp.send("Runtime.runIfWaitingForDebugger", {}, session)
        elif method == "Network.requestWillBeSent":
            request = self.requests.setdefault(params["requestId"], Request(params["request"]["url"]))
            request.url = params["request"]["url"]
        elif method == "Network.responseReceived":
            request = self.requests.setdefault(params["requestId"], Request(params["response"]["url"]))
            response = params["response"]
            request.status = response["status"]
            request.from_cache = bool(response.get("fromDiskCache") or response.get("fromPrefetchCache")
                                      or response.get("fromServiceWorker"))
            headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
            request.encoding = headers.get("content-encoding", "")
        elif method == "Network.requestServedFromCache":
            self.requests.setdefault(params["requestId"], Request("")).from_cache = True
        elif method == "Network.loadingFinished":
            self.requests.setdefault(params["requestId"], Request("")).received = int(params["encodedDataLength"])
        elif method == "Network.loadingFailed":
            request = self.requests.setdefault(params["requestId"], Request(""))
            request.failed = params.get("blockedReason") or params.get("errorText", "failed")

    def pump(self, seconds: float) -> None:
        """Handle events for `seconds` (attached workers are released as soon as they appear)."""
        deadline = time.monotonic() + seconds
        while True:
            while self.cdp.events:
                self._handle(self.cdp.events.popleft())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            ws = self.cdp.ws
            if not ws._buffer and not select.select([ws.sock], [], [], remaining)[0]:
                return
            message = json.loads(ws.recv())
            if "method" in message:
                self.cdp.events.append(message)

    def state(self) -> dict[str, Any]:
        return json.loads(self.cdp.evaluate(PAGE_STATE, self.session) or "{}")

    def load(self, url: str, timeout: float = 120.0) -> Visit:
        self.cdp.send("Page.navigate", {"url": url}, self.session)
        deadline = time.monotonic() + timeout
        while True:
            self.pump(0.1)
            state = self.state()
            if state.get("error"):
                raise BenchFailure(f"the page shows an error: {state['error']}")
            if state.get("ready") is not None and state.get("painted") is not None:
                break
            if time.monotonic() > deadline:
                raise BenchFailure(f"not ready after {timeout} s: {state}")
        self.pump(0.5)  # requests that end just after ready (none are expected)
        state = self.state()
        if self.phases:
            self.timeline = timeline(state, [json.loads(self.cdp.evaluate(WORKER_STATE, w)) for w in self.workers])
        return Visit(
            fcp_s=(state["fcp"] or 0) / 1000, welcome_s=state["labelled"] / 1000,
            welcome_painted_s=state["painted"] / 1000, ready_s=state["ready"] / 1000,
            requests=[r for r in self.requests.values() if r.url],
        )


def timeline(page: dict[str, Any], workers: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """What happened when, in seconds of the page's clock (workers' clocks shifted onto it)."""
    events: list[tuple[float, str]] = []
    for worker in [page, *workers]:
        shift = worker["origin"] - page["origin"]
        where = "page" if worker is page else "worker"
        if worker is not page:
            events.append((shift, "worker starts"))
        for r in worker["resources"]:
            name = r["name"].split("/", 3)[-1]
            events.append(((r["start"] + shift), f"{where} fetch starts: {name}"))
            events.append(((r["end"] + shift), f"{where} fetch ends: {name} ({r['size']:,} B)"))
        for mark in worker.get("marks", []):
            events.append((mark["start"] + shift, f"{where} mark: {mark['name']}"))
        for i in worker.get("instantiate", []):
            events.append((i["start"] + shift, f"{where} WebAssembly.{i['name']} starts"))
            if i["end"] is not None:
                events.append((i["end"] + shift, f"{where} WebAssembly.{i['name']} ends"))
    for key in ("fcp", "labelled", "painted", "ready"):
        if page.get(key) is not None:
            events.append((page[key], f"page: {key}"))
    return sorted((round(t / 1000, 3), what) for t, what in events)


def visit(profile: Path, url: str, server: Server, network: bool, phases: bool = False,
          throttle: tuple[float, float] | None = None) -> Visit:
    browser = Browser(profile)
    page = None
    try:
        page = Page(browser, network, phases, throttle)
        result = page.load(url + "/")
        if phases:
            for t, what in page.timeline:
                print(f"    {t:7.3f}  {what}")
        result.server = server.take()
    finally:
        browser.close(page.cdp if page else None)
    return result


def check_origin(result: Visit, origin: str) -> list[str]:
    """Requests that went anywhere but the page's own origin (blob: and data: belong to it)."""
    return sorted({r.url for r in result.requests
                   if not (r.url.startswith(origin + "/") or r.url.startswith(("blob:" + origin + "/", "data:")))})


# --- figures --------------------------------------------------------------------------------------

def describe(result: Visit, network: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "fcp_s": round(result.fcp_s, 3),
        "welcome_s": round(result.welcome_s, 3),
        "welcome_painted_s": round(result.welcome_painted_s, 3),
        "ready_s": round(result.ready_s, 3),
        "server_responses": len(result.server),
        "server_body_bytes": result.server_bytes,
        "server_304": sum(1 for r in result.server if r.get("status") == 304),
    }
    if network:
        figures.update({
            "requests": len([r for r in result.requests if r.url.startswith("http")]),
            "network_requests": result.network_requests,
            "from_cache": sum(1 for r in result.requests if r.from_cache),
            "network_bytes": result.network_bytes,
        })
    return figures


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def biggest(result: Visit, n: int = 12) -> list[str]:
    rows = sorted(result.server, key=lambda r: -r["bytes"])[:n]
    return [f"{r['bytes']:>10,}  {r.get('status')}  {r.get('encoding') or '-':<4}  {r['path']}" for r in rows]


def webkit_visits(server: Server, runs: int, workdir: Path) -> list[dict[str, Any]]:
    """First and return visits in WebKitGTK (tests/webkit.py's own window, a fresh Xvfb per
    visit, one storage folder per pair): seconds polled from outside every 0.05 s (WebKit has
    no DevTools Protocol to stamp them in the page), bytes from the server's count, and the
    PSS of WebKit's processes once Python is ready."""
    sys.path.insert(0, str(ROOT / "tests"))
    import webkit

    pairs = []
    for run in range(1, runs + 1):
        pair: dict[str, Any] = {}
        for name in ("cold", "return"):
            with webkit.xvfb() as display, webkit.view(display, workdir / f"webkit-{run}") as page:
                start = time.monotonic()
                page.load(server.url + "/")
                welcome = ready = None
                while ready is None:
                    now = page.run("return [!!document.getElementById('start').textContent,"
                                   " document.body.dataset.ready === 'true']")
                    if welcome is None and now[0]:
                        welcome = time.monotonic() - start
                    if now[1]:
                        ready = time.monotonic() - start
                    elif time.monotonic() - start > 120:
                        raise BenchFailure("WebKit: Python not ready in 120 s")
                    time.sleep(0.05)
                memory = memory_bytes(webkit.processes(page.pid))
            served = server.take()
            pair[name] = {"welcome_s": round(welcome, 3), "ready_s": round(ready, 3),
                          "server_responses": len(served), "server_body_bytes": sum(r["bytes"] for r in served),
                          "pss_bytes": memory}
        pair["load_average"] = round(os.getloadavg()[0], 2)
        log(f"run {run}: WebKit cold ready {pair['cold']['ready_s']:.2f} s, "
            f"{pair['cold']['server_body_bytes'] / 1e6:.2f} MB, PSS {pair['cold']['pss_bytes'] / 2**20:.0f} MiB | "
            f"return ready {pair['return']['ready_s']:.2f} s, {pair['return']['server_body_bytes'] / 1e6:.3f} MB "
            f"(load average {pair['load_average']})")
        pairs.append(pair)
    print(f"\nWebKitGTK (tests/webkit.py), {os.cpu_count()} cores, {runs} runs; median (min-max)")
    print(f"{'':<46} {'first visit':<22} {'return visit':<22}")
    for label, key, scale in [("welcome usable (#start labelled), s", "welcome_s", 1), ("Python ready, s", "ready_s", 1),
                              ("bytes sent by the server, MB", "server_body_bytes", 1e6),
                              ("responses", "server_responses", 1),
                              ("PSS of WebKit's processes at ready, MiB", "pss_bytes", 2**20)]:
        print(f"{label:<46} {summary([p['cold'][key] / scale for p in pairs]):<22} "
              f"{summary([p['return'][key] / scale for p in pairs]):<22}")
    return pairs


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        site, data, port_file, log_file = (Path(a) for a in sys.argv[2:6])
        serve(site, data, port_file, log_file)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="cold + return visit pairs (default 5)")
    parser.add_argument("--site", type=Path, default=ROOT / "dist", help="the built site (default dist/)")
    parser.add_argument("--no-network", action="store_true",
                        help="do not enable the Network domain; bytes from the server's count only")
    parser.add_argument("--json", type=Path, default=OUT / "firstload.json", help="where the figures go")
    parser.add_argument("--throttle", metavar="MBIT[,RTT_MS]",
                        help="emulate a line of MBIT Mbit/s each way and RTT_MS round trip "
                             "(Network.emulateNetworkConditions on the page and its workers)")
    parser.add_argument("--phases", action="store_true",
                        help="print a timeline of each visit (fetches, wasm instantiation), page clock")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run folder (bench/out/firstload-*: server log, profiles)")
    parser.add_argument("--verbose", action="store_true", help="list the largest responses of each visit")
    parser.add_argument("--engine", choices=["chromium", "webkit"], default="chromium",
                        help="Debian's Chromium over CDP, or WebKitGTK (Python ready, bytes, memory only)")
    args = parser.parse_args()
    if args.engine == "webkit":
        OUT.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="firstload-webkit-", dir=OUT))
        server = Server(args.site.resolve(), workdir)
        try:
            server.take()
            pairs = webkit_visits(server, args.runs, workdir)
        finally:
            server.close()
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        args.json.write_text(json.dumps({"engine": "webkitgtk", "runs": pairs}, indent=1))
        return 0
    if not (args.site / "index.html").is_file():
        sys.exit(f"{args.site} has no index.html: run `python build.py` first")
    network = not args.no_network
    throttle = None
    if args.throttle:
        if not network:
            sys.exit("--throttle needs the Network domain (drop --no-network)")
        mbit, _, rtt = args.throttle.partition(",")
        throttle = (float(mbit), float(rtt or 0))
    OUT.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout.strip()
    workdir = Path(tempfile.mkdtemp(prefix="firstload-", dir=OUT))
    runs: list[dict[str, Any]] = []
    server = Server(args.site.resolve(), workdir)
    failures: list[str] = []
    try:
        server.take()
        for run in range(1, args.runs + 1):
            profile = workdir / f"profile-{run}"
            cold = visit(profile, server.url, server, network, args.phases, throttle)
            again = visit(profile, server.url, server, network, args.phases, throttle)
            shutil.rmtree(profile, ignore_errors=True)
            pair = {"cold": describe(cold, network), "return": describe(again, network)}
            for name, result in (("cold", cold), ("return", again)):
                foreign = check_origin(result, server.url)
                if foreign:
                    failures.append(f"run {run} {name}: requests outside the origin: {foreign}")
                failed = [f"{r.url} ({r.failed})" for r in result.requests if r.failed]
                if failed:
                    failures.append(f"run {run} {name}: failed requests: {failed}")
            pair["load_average"] = round(os.getloadavg()[0], 2)
            runs.append(pair)
            c, r = pair["cold"], pair["return"]
            log(f"run {run}: cold FCP {c['fcp_s']:.2f} s, welcome {c['welcome_painted_s']:.2f} s, "
                f"ready {c['ready_s']:.2f} s, {c['server_body_bytes'] / 1e6:.2f} MB in "
                f"{c['server_responses']} responses | return FCP {r['fcp_s']:.2f} s, "
                f"welcome {r['welcome_painted_s']:.2f} s, ready {r['ready_s']:.2f} s, "
                f"{r['server_body_bytes'] / 1e6:.3f} MB in {r['server_responses']} responses "
                f"(load average {pair['load_average']})")
            if args.verbose:
                for name, result in (("cold", cold), ("return", again)):
                    print(f"  {name}:", *biggest(result), sep="\n    ")
    finally:
        server.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"{version}, {os.cpu_count()} cores, site {args.site}, {args.runs} runs, "
          f"Network domain {'on' if network else 'off'}"
          f"{f', line emulated at {throttle[0]:g} Mbit/s, {throttle[1]:g} ms RTT' if throttle else ''}; "
          "median (min-max)")
    rows = [("first contentful paint, s", "fcp_s", 1), ("welcome usable (#start labelled), s", "welcome_s", 1),
            ("welcome painted, s", "welcome_painted_s", 1), ("Python ready, s", "ready_s", 1),
            ("bytes sent by the server, MB", "server_body_bytes", 1e6), ("responses", "server_responses", 1)]
    if network:
        rows += [("bytes received (Network, headers incl.), MB", "network_bytes", 1e6),
                 ("requests", "requests", 1), ("  of them from the cache", "from_cache", 1)]
    loads = [p["load_average"] for p in runs]
    print(f"load average (1 min) during the runs: {min(loads)}-{max(loads)}")
    print(f"{'':<46} {'first visit':<22} {'return visit':<22}")
    for label, key, scale in rows:
        cold_values = [p["cold"][key] / scale for p in runs]
        return_values = [p["return"][key] / scale for p in runs]
        print(f"{label:<46} {summary(cold_values):<22} {summary(return_values):<22}")
    args.json.write_text(json.dumps({"chromium": version, "cores": os.cpu_count(), "network": network,
                                     "site": str(args.site), "runs": runs}, indent=1))
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
