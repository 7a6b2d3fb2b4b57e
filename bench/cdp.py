"""A minimal Chrome DevTools Protocol client on the standard library alone.

Why not Playwright: Playwright always enables the Network domain, and Chromium then keeps a copy
of every request body for the inspector. Measured on this project, that slows a multi-hundred-MB
upload 20-40x. This client sends only the commands it is asked to, so a benchmark that never
enables Network sees the browser as a patient would. It speaks just enough WebSocket (RFC 6455)
for CDP: one client connection, masked text frames out, text/continuation/ping/close frames in.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class CDPError(Exception):
    """A CDP command answered with an error, or the browser went away."""


class WebSocket:
    """A blocking WebSocket client connection, text messages only."""

    def __init__(self, url: str, timeout: float = 30.0):
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self._buffer = b""
        head = self._read_until(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise CDPError(f"WebSocket handshake refused: {head[:200]!r}")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._fill()
        head, self._buffer = self._buffer.split(marker, 1)
        return head

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise CDPError("the browser closed the DevTools connection")
        self._buffer += data

    def _read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytearray([0x81])  # FIN + text
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        header += mask
        # Masking is required of clients; XOR through an int keeps it fast for large messages.
        repeated = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
        self.sock.sendall(bytes(header) + masked)

    def recv(self) -> str:
        """The next whole text message (answers pings, joins continuation frames)."""
        parts: list[bytes] = []
        while True:
            b0, b1 = self._read_exact(2)
            opcode, length = b0 & 0x0F, b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", self._read_exact(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", self._read_exact(8))
            if b1 & 0x80:  # servers do not mask, but tolerate it
                mask = self._read_exact(4)
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(self._read_exact(length)))
            else:
                data = self._read_exact(length)
            if opcode == 0x8:
                raise CDPError("the browser closed the DevTools connection")
            if opcode == 0x9:  # ping: answer with pong
                self.sock.sendall(bytes([0x8A, 0x80]) + os.urandom(4))
                continue
            if opcode in (0x1, 0x2, 0x0):
                parts.append(data)
                if b0 & 0x80:
                    return b"".join(parts).decode()

    def close(self) -> None:
        try:
            self.sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))
        except OSError:
            pass
        self.sock.close()


class CDP:
    """Commands and events over one browser-level connection, flat sessions (sessionId)."""

    TIMEOUT = 300.0

    def __init__(self, ws_url: str):
        self.ws = WebSocket(ws_url, timeout=self.TIMEOUT)
        self._next_id = 0
        self.events: deque[dict[str, Any]] = deque()

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its answer; events that arrive meanwhile are queued.

        A browser that does not answer at all makes the socket time out (CDP.TIMEOUT), which
        raises instead of hanging the benchmark."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            answer = json.loads(self.ws.recv())
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise CDPError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            if "method" in answer:
                self.events.append(answer)

    def pop_events(self, method: str) -> list[dict[str, Any]]:
        """Take the queued events of one kind, leaving the others."""
        taken = [e for e in self.events if e["method"] == method]
        self.events = deque(e for e in self.events if e["method"] != method)
        return taken

    def evaluate(self, expression: str, session: str, await_promise: bool = False) -> Any:
        """Evaluate JavaScript in a session's target and return its value (JSON-able)."""
        result = self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": await_promise,
        }, session)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"evaluation failed: {text}")
        return result["result"].get("value")

    def close(self) -> None:
        self.ws.close()


class Chromium:
    """A headless Chromium of its own profile, with remote debugging on a port it picks."""

    FLAGS = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--remote-debugging-port=0",
    ]

    def __init__(self, executable: str = "/usr/bin/chromium"):
        self.profile = tempfile.TemporaryDirectory(prefix="pcir-bench-chromium-", ignore_cleanup_errors=True)
        self.process = subprocess.Popen(
            [executable, *self.FLAGS, f"--user-data-dir={self.profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.ws_url = self._devtools_url()

    def _devtools_url(self, timeout: float = 30.0) -> str:
        """Chromium prints `DevTools listening on ws://...` on stderr once it is ready."""
        deadline = time.monotonic() + timeout
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                break
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                # Keep draining stderr so that Chromium never blocks on a full pipe.
                _drain(self.process.stderr)
                return found.group(1)
        self.close()
        raise CDPError("Chromium did not start (no DevTools URL on stderr)")

    def version(self) -> str:
        out = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True)
        return out.stdout.strip()

    def pids(self) -> list[int]:
        """The browser process and all its descendants (renderers, GPU, utility)."""
        return [self.process.pid, *_descendants(self.process.pid)]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.profile.cleanup()


def _drain(stream: Any) -> None:
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def memory_bytes(pids: list[int]) -> int:
    """Sum of proportional set sizes (PSS): shared pages are split between the processes that
    share them, so the sum is what the browser as a whole holds in RAM (RSS would overcount)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def process_kind(pid: int) -> str:
    """What a Chromium process is, from its command line: browser, renderer, gpu-process,
    zygote, or a utility's service (network, storage, audio...)."""
    try:
        # Chromium rewrites its process title: the arguments are joined by spaces, not NULs.
        args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
    except OSError:
        return "gone"
    flags = dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)
    kind = flags.get("--type", "browser")
    if kind == "utility":
        service = flags.get("--utility-sub-type", "")
        return "utility:" + service.split(".")[0]  # network.mojom.NetworkService -> network
    return kind


def memory_by_kind(pids: list[int]) -> dict[str, dict[str, int]]:
    """PSS by process kind (summed over processes of one kind), split into anonymous memory,
    file-backed pages (the binary, fonts, the cache) and shared memory (Mojo data pipes,
    shared buffers between processes), in bytes: to see which process holds what."""
    kinds: dict[str, dict[str, int]] = {}
    for pid in pids:
        kind = process_kind(pid)
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        entry = kinds.setdefault(kind, {"processes": 0, "pss": 0, "anon": 0, "file": 0, "shmem": 0})
        entry["processes"] += 1
        for line in lines:
            name, _, rest = line.partition(":")
            field = {"Pss": "pss", "Pss_Anon": "anon", "Pss_File": "file", "Pss_Shmem": "shmem"}.get(name)
            if field:
                entry[field] += int(rest.split()[0]) * 1024
    return kinds
