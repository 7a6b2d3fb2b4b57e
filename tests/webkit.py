"""WebKitGTK (Safari's engine) for tests and benchmarks: an X server of our own (Xvfb),
Debian's WebKitWebDriver driving MiniBrowser in it, and a small W3C WebDriver client over
httpx. Everything listens on 127.0.0.1 or a local display only, and is stopped on exit.

Why not a WebDriver library: the few commands the page needs are plain HTTP, and httpx is
a dependency already.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

WEBDRIVER = "/usr/bin/WebKitWebDriver"
MINIBROWSER = next(iter(sorted(Path("/usr/lib/x86_64-linux-gnu").glob("webkit2gtk-4.*/MiniBrowser"))),
                   Path("/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"))
XVFB = "/usr/bin/Xvfb"
SCREEN = (1366, 768)
# W3C WebDriver's key for an element reference in JSON.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def missing() -> str | None:
    """What of WebKitGTK's parts is not installed, in words for a failing test."""
    for path, package in ((WEBDRIVER, "webkit2gtk-driver"), (MINIBROWSER, "webkit2gtk-driver"),
                          (XVFB, "xvfb")):
        if not Path(path).exists():
            return f"{path} is missing: install Debian's {package} (./dev test does)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End a process we started, and whatever it started (its own process group)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@contextmanager
def xvfb(size: tuple[int, int] = SCREEN) -> Iterator[str]:
    """An X server of our own, no TCP; yields its DISPLAY (":N", the first free one)."""
    read, write = os.pipe()
    process = subprocess.Popen(
        [XVFB, "-displayfd", str(write), "-screen", "0", f"{size[0]}x{size[1]}x24",
         "-nolisten", "tcp"],
        pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        _stop(process)


class WebDriverError(RuntimeError):
    pass


class Session:
    """One W3C WebDriver session: the commands the tests use, and waiting for the page."""

    def __init__(self, client: httpx.Client, session_id: str):
        self._client = client
        self.id = session_id

    def command(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        url = f"/session/{self.id}{path}"
        response = self._client.request(method, url, json=body if body is not None else ({} if method == "POST" else None))
        value = response.json().get("value")
        if response.status_code != 200:
            raise WebDriverError(f"{method} {path}: {value}")
        return value

    def get(self, url: str) -> None:
        self.command("POST", "/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """The script's return value; a DOM element comes back as a reference usable in args."""
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def run_async(self, script: str, *args: Any) -> Any:
        """A script whose value is a promise's: `return (async () => ...)()`."""
        return self.command("POST", "/execute/async", {
            "script": "const done = arguments[arguments.length - 1];"
                      f"Promise.resolve((() => {{ {script} }})(...Array.from(arguments).slice(0, -1)))"
                      ".then(done, (e) => done({__error: String(e)}));",
            "args": list(args),
        })

    def find(self, css: str) -> dict[str, str]:
        return self.command("POST", "/element", {"using": "css selector", "value": css})

    def click(self, css: str) -> None:
        self.command("POST", f"/element/{self.find(css)[ELEMENT]}/click")

    def send_keys(self, css: str, text: str) -> None:
        self.command("POST", f"/element/{self.find(css)[ELEMENT]}/value", {"text": text})

    def text(self, css: str) -> str:
        return str(self.command("GET", f"/element/{self.find(css)[ELEMENT]}/text"))

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.command("GET", "/screenshot")))

    def set_window(self, x: int, y: int, width: int, height: int) -> None:
        self.command("POST", "/window/rect", {"x": x, "y": y, "width": width, "height": height})

    def wait(self, css: str, timeout: float = 60) -> None:
        """Until an element matches `css` (any of a selector list)."""
        deadline = time.monotonic() + timeout
        while not self.run("return document.querySelector(arguments[0]) !== null", css):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing matched {css} in {timeout} s")
            time.sleep(0.1)


@contextmanager
def webkit(display: str, environment: Mapping[str, str] | None = None) -> Iterator[Session]:
    """WebKitWebDriver on a free port of 127.0.0.1, and a session with MiniBrowser in
    automation mode on `display`. Ends both."""
    port = _free_port()
    env = {**os.environ, "DISPLAY": display, **(environment or {})}
    env.pop("WAYLAND_DISPLAY", None)
    driver = subprocess.Popen(
        [WEBDRIVER, f"--port={port}", "--host=127.0.0.1"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.get("/status").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if driver.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("WebKitWebDriver did not start")
            time.sleep(0.05)
        capabilities = {"capabilities": {"alwaysMatch": {
            "webkitgtk:browserOptions": {"binary": str(MINIBROWSER), "args": ["--automation"]},
        }}}
        answer = client.post("/session", json=capabilities).json()["value"]
        if "sessionId" not in answer:
            raise WebDriverError(f"no session: {answer}")
        session = Session(client, answer["sessionId"])
        try:
            yield session
        finally:
            try:
                client.delete(f"/session/{session.id}")
            except httpx.HTTPError:
                pass
    finally:
        client.close()
        _stop(driver)


VIEW = Path(__file__).with_name("webkitview.py")


class View:
    """tests/webkitview.py, a WebKitGTK window of our own, driven line by line."""

    def __init__(self, process: subprocess.Popen[str]):
        self._process = process

    def _ask(self, **command: Any) -> Any:
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        # An answer within two minutes (loading Pyodide under load is the longest), or fail.
        ready, _, _ = select.select([self._process.stdout], [], [], 120)
        line = self._process.stdout.readline() if ready else ""
        if not line:
            raise WebDriverError(f"the WebKit view stopped (asked {command})")
        answer = json.loads(line)
        if "error" in answer:
            raise WebDriverError(f"{answer['error']} (asked {command})")
        return answer["value"]

    def load(self, url: str) -> None:
        self._ask(load=url)

    def run(self, body: str) -> Any:
        """The value of `body`, the body of an async function run in the page."""
        return self._ask(js=body)

    def click(self, css: str) -> None:
        self.run(f"document.querySelector({json.dumps(css)}).click()")

    def choose(self, *paths: Path) -> None:
        """The next file chooser the page opens is answered with these: a folder, or files."""
        self._ask(choose=[str(p) for p in paths])

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._ask(shot=str(path))

    def wait(self, css: str, timeout: float = 60) -> None:
        """Until an element matches `css` (any of a selector list)."""
        deadline = time.monotonic() + timeout
        while not self.run(f"return document.querySelector({json.dumps(css)}) !== null"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing matched {css} in {timeout} s")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self._process.pid


@contextmanager
def view(display: str, home: Path) -> Iterator[View]:
    """A WebKitGTK window of our own on `display` (Debian's python3 with its GTK bindings),
    keeping what the page stores in `home`."""
    env = {**os.environ, "DISPLAY": display}
    env.pop("WAYLAND_DISPLAY", None)
    process = subprocess.Popen(
        ["/usr/bin/python3", str(VIEW), str(home)], env=env, text=True, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, start_new_session=True,
    )
    try:
        yield View(process)
    finally:
        if process.stdin:
            process.stdin.close()
        _stop(process)


DRAG_SOURCE = Path(__file__).with_name("dragsource.py")


def drag_folder(display: str, folder: Path, to: tuple[int, int]) -> None:
    """Drag `folder` with the X server's own pointer from a GTK drag source (as from a file
    manager) and drop it at screen point `to`: a drag session the engines themselves handle."""
    env = {**os.environ, "DISPLAY": display}
    source = subprocess.Popen(
        ["/usr/bin/python3", str(DRAG_SOURCE), str(folder), str(SCREEN[0] - 140), str(SCREEN[1] - 140)],
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        assert source.stdout and source.stdout.readline().strip() == "ready", "no drag source"

        def pointer(*args: str) -> None:
            subprocess.run(["xdotool", *args], env=env, check=True, timeout=10)

        x, y = SCREEN[0] - 80, SCREEN[1] - 80
        pointer("mousemove", str(x), str(y))
        pointer("mousedown", "1")
        # GTK starts a drag only after the pointer has moved past its threshold, and the
        # target sees it only on motion: move there in steps.
        for step in range(1, 11):
            pointer("mousemove", str(x + (to[0] - x) * step // 10), str(y + (to[1] - y) * step // 10))
            time.sleep(0.05)
        time.sleep(0.3)
        pointer("mouseup", "1")
        assert source.stdout.readline().strip() == "sent", "the drop target did not take the folder"
    finally:
        _stop(source)


def processes(root: int) -> list[int]:
    """`root` and all its descendants (WebKit's web, network and GPU processes, under bwrap)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pss(pids: list[int]) -> int:
    """Bytes of proportional set size of these processes together (shared pages split)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total
