"""WebKitGTK (Safari's engine) for tests and benchmarks: an X server of our own (Xvfb), a
WebKitGTK window of our own in it (tests/webkitview.py, driven line by line), a real drag of a
folder onto it, and the memory of its processes. Everything is local (no TCP for X) and
stopped on exit.

Why not W3C WebDriver (WebKitWebDriver with MiniBrowser works here): in automation mode
WebKit answers every file chooser itself, and WebDriver's send-keys of a folder's path to
<input webkitdirectory> gives one empty file, so the folder a patient chooses cannot be given.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

XVFB = "/usr/bin/Xvfb"
TYPELIB = "/usr/lib/x86_64-linux-gnu/girepository-1.0/WebKit2-4.1.typelib"
SCREEN = (1366, 768)


def missing() -> str | None:
    """What of WebKitGTK's parts is not installed, in words for a failing test."""
    for path, package in ((XVFB, "xvfb"), (TYPELIB, "gir1.2-webkit2-4.1"), ("/usr/bin/xdotool", "xdotool")):
        if not Path(path).exists():
            return f"{path} is missing: install Debian's {package} (./dev test does)"
    return None


def _ends_with_us() -> None:
    """In the child before it runs: it gets SIGTERM when we end, even if we are killed before
    we can stop it (a test run cut short leaves no X server or browser behind)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(process: subprocess.Popen[Any]) -> None:
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
        start_new_session=True, preexec_fn=_ends_with_us,
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


class ViewError(RuntimeError):
    """The WebKit window failed a command, or stopped."""


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
            raise ViewError(f"the WebKit view stopped (asked {command})")
        answer = json.loads(line)
        if "error" in answer:
            raise ViewError(f"{answer['error']} (asked {command})")
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
        stdout=subprocess.PIPE, start_new_session=True, preexec_fn=_ends_with_us,
    )
    try:
        yield View(process)
    finally:
        if process.stdin:
            process.stdin.close()
        _stop(process)


DRAG_SOURCE = Path(__file__).with_name("dragsource.py")


def drag_folder(display: str, folder: Path, to: tuple[int, int], over: Callable[[], bool]) -> None:
    """Drag `folder` with the X server's own pointer from a GTK drag source (as from a file
    manager) and drop it at screen point `to`: a drag session the engines themselves handle.
    The button is let go only once `over()` says the page has seen the drag over it: WebKit
    fetches the dragged data first, and a drop before that reaches the page as nothing."""
    env = {**os.environ, "DISPLAY": display}
    source = subprocess.Popen(
        ["/usr/bin/python3", str(DRAG_SOURCE), str(folder), str(SCREEN[0] - 140), str(SCREEN[1] - 140)],
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True, preexec_fn=_ends_with_us,
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
        deadline = time.monotonic() + 30
        wiggle = 1
        while not over():  # the target is told of the drag on motion: keep moving a little
            assert time.monotonic() < deadline, "the page never saw the drag over it"
            wiggle = -wiggle
            pointer("mousemove", str(to[0] + wiggle), str(to[1]))
            time.sleep(0.1)
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
