"""`pcir-upload serve` as a real process on 127.0.0.1, for tests that kill it or need
exactly what an operator runs (uvicorn's options from `run()`, the CLI, the log).

    with ReceiverProcess(data_dir, site_dir, public_key_file) as server:
        httpx.head(server.url + "/files/...")
        server.kill()          # SIGKILL: no shutdown, no flushing, as a power cut to the process
        server.start()         # again, on the same data folder (a new port)
        server.log             # what it printed, line by line
        server.rss()           # its resident memory, in bytes

`files` runs it with that open-file limit (soft and hard, so it can't raise it).
`serve(tmp_path, site, keys, *options)` runs one on tmp_path/"data" with the test's keys.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from pcir_upload.repository.keys import PUBLIC_KEY_NAME

READY = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class ReceiverProcess:
    def __init__(self, data_dir: Path, site_dir: Path, public_key: Path, *options: str, files: int | None = None) -> None:
        self.command = [
            sys.executable, "-m", "pcir_upload.cli", "serve", "--data", str(data_dir),
            "--host", "127.0.0.1", "--port", "0", "--public-key", str(public_key), *options,
        ]
        self.env = {**os.environ, "PCIR_SITE": str(site_dir), "PYTHONUNBUFFERED": "1"}
        self.files = files
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.log: list[str] = []

    def start(self, timeout: float = 20) -> str:
        """Start the server; returns its base URL once it accepts connections."""
        assert self.process is None, "already running"
        process = subprocess.Popen(
            self.command, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, preexec_fn=self._limit_files if self.files else None,
        )
        self.process = process
        port: list[int] = []
        ready = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.log.append(line.rstrip("\n"))
                match = READY.search(line)
                if match and not port:
                    port.append(int(match.group(1)))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or not port:
            self.kill()
            raise RuntimeError("the receiver did not start:\n" + "\n".join(self.log))
        self.url = f"http://127.0.0.1:{port[0]}"
        return self.url

    def _limit_files(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.files, self.files))

    def rss(self) -> int:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024  # type: ignore[union-attr]

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        """SIGINT, as Ctrl+C: uvicorn shuts down in order."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
            self.process = None

    def wait_for_log(self, pattern: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.log):
                if re.search(pattern, line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no log line matches {pattern!r}:\n" + "\n".join(self.log))

    def __enter__(self) -> ReceiverProcess:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def serve(tmp_path: Path, site: Path, keys: Any, *options: str, files: int | None = None) -> Iterator[ReceiverProcess]:
    """`pcir-upload serve *options` on tmp_path/"data", serving `site`, with the public key of
    `keys` (conftest's fixture)."""
    process = ReceiverProcess(tmp_path / "data", site, keys.folder / PUBLIC_KEY_NAME, *options, files=files)
    process.start()
    try:
        yield process
    finally:
        process.stop()
