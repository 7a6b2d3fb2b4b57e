"""Fifty clients that misbehave toward a receiver as the review of issue 12 did, for a bounded
time, on 127.0.0.1 only:

- junk: partial uploads started under fresh secrets and left half written;
- delete: `DELETE /files/` for secrets that own nothing, as fast as answers come;
- idle: connections that never send a byte (five each), opened again when closed;
- slowloris: request heads sent a byte every half second;
- stall: PATCHes that send a little of their body and then nothing;
- heads: request heads of 600 KB that never end.

Client n says `X-Forwarded-For: 203.0.113.n`, so a receiver that trusts 127.0.0.1 as its proxy
sees fifty clients; one that does not sees one.

    python tests/misbehaving.py URL SECONDS     # prints what the receiver answered, as JSON

SIGTERM ends it early, with the same summary. Tests run it with `Misbehaving(url, seconds)`,
against a receiver started with `UNDER_LOAD`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

MIX = {"junk": 12, "delete": 10, "idle": 10, "slowloris": 8, "stall": 6, "heads": 4}
TUS = "Tus-Resumable: 1.0.0\r\n"
# `pcir-upload serve`'s options for a test under this load: the forwarded addresses believed
# (fifty clients, not one), and timeouts short enough to act within the test.
UNDER_LOAD = ("--trusted-proxy", "127.0.0.1", "--client-uploads", "8",
              "--idle-timeout", "5", "--header-timeout", "5", "--body-timeout", "5")


def secret() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


class Load:
    def __init__(self, url: str, seconds: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.until = time.monotonic() + seconds
        self.answers: dict[str, Counter[str]] = {kind: Counter() for kind in MIX}
        self.held: dict[str, list[float]] = {kind: [] for kind in MIX}  # how long closed ones lasted

    def going(self) -> bool:
        return time.monotonic() < self.until

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    async def exchange(self, kind: str, head: str, body: bytes = b"") -> tuple[int, dict[str, str]]:
        """One request on a connection of its own; the status (0: no answer) and headers."""
        try:
            reader, writer = await self.connect()
        except OSError:
            self.answers[kind]["refused"] += 1
            await asyncio.sleep(0.05)
            return 0, {}
        try:
            writer.write(head.encode() + body)
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 30)
            headers: dict[str, str] = {}
            while (line := await asyncio.wait_for(reader.readline(), 30)) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            status = int(status_line.split()[1]) if status_line else 0
        except (OSError, asyncio.TimeoutError, ValueError, IndexError):
            status = 0
        finally:
            writer.close()
        self.answers[kind][str(status) if status else "no answer"] += 1
        return status, headers

    def head(self, n: int, method: str, path: str, extra: str = "") -> str:
        return (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{TUS}"
                f"X-Forwarded-For: 203.0.113.{n}\r\nConnection: close\r\n{extra}")

    async def partial(self, kind: str, n: int, length: int) -> tuple[str, str] | None:
        """A partial upload of `length` bytes under a fresh secret: its path and the secret."""
        own = secret()
        status, headers = await self.exchange(kind, self.head(
            n, "POST", "/files/", f"Upload-Length: {length}\r\nUpload-Concat: partial\r\nPcir-Upload-Secret: {own}\r\n\r\n"))
        if status != 201:
            await asyncio.sleep(0.2)
            return None
        return headers["location"], own

    def patch(self, n: int, made: tuple[str, str], length: int) -> str:
        location, own = made
        return self.head(n, "PATCH", location, f"Pcir-Upload-Secret: {own}\r\nContent-Type: application/offset+octet-stream\r\n"
                         f"Upload-Offset: 0\r\nContent-Length: {length}\r\n\r\n")

    async def junk(self, n: int) -> None:
        while self.going():
            made = await self.partial("junk", n, 262144)
            if made is not None:
                await self.exchange("junk", self.patch(n, made, 65536), os.urandom(65536))

    async def delete(self, n: int) -> None:
        while self.going():
            await self.exchange("delete", self.head(n, "DELETE", "/files/", f"Pcir-Upload-Secret: {secret()}\r\n\r\n"))

    async def hold(self, kind: str, first: bytes, drip: bytes = b"", every: float = 0.5) -> None:
        """One connection at a time, held as long as the receiver lets it; then again."""
        while self.going():
            await self.hold_once(kind, first, drip, every)
            await asyncio.sleep(0.05)

    async def hold_once(self, kind: str, first: bytes, drip: bytes = b"", every: float = 0.5) -> None:
        """Send `first`, then `drip` every `every` s, until the receiver closes the connection
        (or time is up)."""
        try:
            reader, writer = await self.connect()
        except OSError:
            self.answers[kind]["refused"] += 1
            await asyncio.sleep(0.1)
            return
        opened = time.monotonic()
        try:
            writer.write(first)
            while self.going():
                if drip:
                    writer.write(drip)
                    await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(65536), every)
                except asyncio.TimeoutError:
                    continue
                if not data:
                    self.answers[kind]["closed by the receiver"] += 1
                    self.held[kind].append(time.monotonic() - opened)
                    return
                self.answers[kind][data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "data"] += 1
        except OSError:
            self.answers[kind]["reset"] += 1
        finally:
            writer.close()

    async def idle(self, n: int) -> None:
        await asyncio.gather(*(self.hold("idle", b"", every=1.0) for _ in range(5)))

    async def slowloris(self, n: int) -> None:
        await self.hold("slowloris", self.head(n, "POST", "/files/").encode(), drip=b"X", every=0.5)

    async def stall(self, n: int) -> None:
        while self.going():
            made = await self.partial("stall", n, 1048576)
            if made is not None:
                await self.hold_once("stall", self.patch(n, made, 1048576).encode() + os.urandom(8192))

    async def heads(self, n: int) -> None:
        pad = b"X-Pad: " + b"a" * 600_000
        await self.hold("heads", self.head(n, "POST", "/files/").encode() + pad, every=0.5)

    async def run(self) -> dict[str, dict[str, float]]:
        tasks, n = [], 0
        for kind, count in MIX.items():
            for _ in range(count):
                n += 1
                tasks.append(getattr(self, kind)(n))
        await asyncio.gather(*tasks)
        summary: dict[str, dict[str, float]] = {}
        for kind, answers in self.answers.items():
            summary[kind] = dict(sorted(answers.items()))
            if self.held[kind]:
                summary[kind]["longest held, s"] = round(max(self.held[kind]), 1)
        return summary


class Misbehaving:
    """This script in a process of its own, against `url` for at most `seconds`:

        with Misbehaving(server.url, 30) as load:
            ...                      # the fifty misbehave meanwhile
            load.running()           # not yet stopped by itself
            summary = load.stop()    # what the receiver answered them (stops them first)
    """

    def __init__(self, url: str, seconds: float) -> None:
        self.command = [sys.executable, str(Path(__file__).resolve()), url, str(seconds)]
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Misbehaving:
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float) -> dict[str, dict[str, float]]:
        """Their summary once they stop by themselves."""
        assert self.process is not None
        return json.loads(self.process.communicate(timeout=timeout)[0])

    def stop(self, timeout: float = 45) -> dict[str, dict[str, float]]:
        """Stop them now; their summary."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait()


async def _until_stopped(load: Load) -> dict[str, dict[str, float]]:
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: setattr(load, "until", 0.0))
    return await load.run()


def main(argv: list[str]) -> int:
    url, seconds = argv[0], float(argv[1])
    print(json.dumps(asyncio.run(_until_stopped(Load(url, seconds))), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
