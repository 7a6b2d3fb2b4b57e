"""The receiver under attack (issue 12): how fast a well-behaved contribution's requests are
answered while fifty clients misbehave, against the same with nobody else; what idle
sockets cost; and latency while eight clients flood `DELETE /files/` over 2,000 uploads.

    .venv/bin/python bench/hostile_load.py [--seconds 40] [--size-mib 64] [--idle 1000]

Everything runs on 127.0.0.1 and stops by itself. Each part starts its own
`pcir-upload serve` with `--trusted-proxy 127.0.0.1`, so that the misbehaving clients
(tests/misbehaving.py, one X-Forwarded-For address each) and the patient (another address)
are different clients, as behind a real proxy; limits and timeouts are the defaults.

1. **alone**: one contribution (CPython: the page's own tus client, `Contribution`, over
   httpx; a generated disc of --size-mib in 1 MiB chunks), and a probe (`OPTIONS /files/`
   every 50 ms) from 5 s before it until it ends. The contribution is unpacked and checked
   byte for byte.
2. **under load**: the same, started 5 s into --seconds of tests/misbehaving.py; the probe
   runs the whole time.
3. **idle sockets**: the receiver's resident memory before and after --idle connections that
   send nothing (with --idle-timeout 600, so they stay).
4. **DELETE flood**: 2,000 unfinished uploads on disk, eight clients sending `DELETE /files/`
   for new secrets as fast as answers come, and the latency of a HEAD meanwhile.

Prints one line per figure, and a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]
import httpx  # noqa: E402
from contributing import QUICK, CountingTransport, arrived_intact, finish, make_disc, prepare  # noqa: E402
from receiverproc import ReceiverProcess  # noqa: E402
from misbehaving import secret as new_secret  # noqa: E402
from support import FolderDisc, make_uploads  # noqa: E402

from pcir_upload.repository.keys import PUBLIC_KEY_NAME, keygen, load_private_keys, load_public_keys  # noqa: E402
from pcir_upload.repository.receive.store import secret_owner  # noqa: E402

TUS = {"Tus-Resumable": "1.0.0"}
PATIENT = "198.51.100.7"
FIGURES = ("probe", "creations (with their 1 MiB chunk)", "the final")


class Keys:
    def __init__(self, folder: Path) -> None:
        private, public = keygen(folder)
        self.private, self.public, self.folder = load_private_keys(private), load_public_keys(public), folder


class Patient(CountingTransport):
    async def request(self, method, url, headers, body=None):  # type: ignore[no-untyped-def]
        return await super().request(method, url, {**headers, "X-Forwarded-For": PATIENT}, body)


def spread(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "no requests"
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"median {statistics.median(values) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms (n={len(values)})"


def serve(work: Path, keys: Keys, *options: str) -> ReceiverProcess:
    site = work / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "index.html").write_text("<!doctype html><title>Contribute</title>")
    process = ReceiverProcess(work / "data", site, keys.folder / PUBLIC_KEY_NAME, "--trusted-proxy", "127.0.0.1", *options)
    process.start()
    return process


def contribution(work: Path, keys: Keys, size_mib: int, seconds: float) -> dict[str, object]:
    """One contribution; `seconds` > 0: under tests/misbehaving.py for that long."""
    folder = make_disc(work / "disc", size=size_mib * 1024 * 1024)
    server = serve(work, keys)
    load = None
    try:
        if seconds:
            load = subprocess.Popen([sys.executable, str(ROOT / "tests" / "misbehaving.py"), server.url, str(seconds)],
                                    stdout=subprocess.PIPE, text=True)
        probes: list[float] = []

        async def go() -> tuple[object, float]:
            stop = asyncio.Event()

            async def probe() -> None:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                    while not stop.is_set():
                        start = time.monotonic()
                        r = await client.options("/files/", headers={**TUS, "X-Forwarded-For": "198.51.100.8"})
                        assert r.status_code == 204, r.status_code
                        probes.append(time.monotonic() - start)
                        await asyncio.sleep(0.05)

            prober = asyncio.ensure_future(probe())
            await asyncio.sleep(5)  # the probe alone first (and, under load, the misbehaving get going)
            started = time.monotonic()
            run = await finish(prepare(server.url + "/files/", FolderDisc(folder), keys, transport=Patient(),
                                       retry=QUICK, chunk_size=1024 * 1024))
            took = time.monotonic() - started
            while load is not None and load.poll() is None:
                await asyncio.sleep(0.1)
            stop.set()
            await prober
            return run, took

        run, took = asyncio.run(go())
        summary = json.loads(load.communicate(timeout=60)[0]) if load else {}
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        server.stop()
    arrived_intact(work / "data", keys, work / "out", run, folder)  # type: ignore[arg-type]
    sent = run.transport.sent  # type: ignore[attr-defined]
    return {
        "took": took,
        "probe": spread(probes),
        "creations (with their 1 MiB chunk)": spread([s.end - s.start for s in sent if _kind(s) == "partial"]),
        "the final": spread([s.end - s.start for s in sent if _kind(s) == "final"]),
        "requests": len(sent),
        "misbehaving": summary,
    }


def _kind(sent: object) -> str:
    concat = sent.headers.get("Upload-Concat", "")  # type: ignore[attr-defined]
    return "final" if concat.startswith("final;") else "partial" if concat == "partial" else sent.method  # type: ignore[attr-defined]


def idle_sockets(work: Path, keys: Keys, count: int) -> tuple[int, int, int]:
    server = serve(work, keys, "--idle-timeout", "600")
    try:
        httpx.get(server.url + "/api/config")
        before = server.rss()
        port = int(server.url.rsplit(":", 1)[1])
        sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        time.sleep(2)
        after = server.rss()
        for sock in sockets:
            sock.close()
        return before, after, count
    finally:
        server.stop()


def delete_flood(work: Path, keys: Keys) -> tuple[str, int]:
    make_uploads(work / "data", 2000, owner=secret_owner(new_secret()))
    server = serve(work, keys)
    try:
        location = httpx.post(server.url + "/files/", headers={**TUS, "Upload-Length": "10"}).headers["Location"]
        stop, count = threading.Event(), [0]

        def hammer() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                while not stop.is_set():
                    client.delete("/files/", headers={**TUS, "Pcir-Upload-Secret": new_secret()})
                    count[0] += 1

        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for thread in threads:
            thread.start()
        latencies = []
        with httpx.Client(base_url=server.url, timeout=30) as client:
            time.sleep(0.5)
            for _ in range(200):
                start = time.monotonic()
                client.head(location, headers=TUS)
                latencies.append(time.monotonic() - start)
                time.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join()
        return spread(latencies), count[0]
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args(argv)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{when}, {platform.node()}: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="pcir-hostile-") as tmp:
        work = Path(tmp)
        keys = Keys(work / "keys")
        alone = contribution(work / "alone", keys, args.size_mib, 0)
        loaded = contribution(work / "loaded", keys, args.size_mib, args.seconds)
        before, after, count = idle_sockets(work / "idle", keys, args.idle)
        flood, deletes = delete_flood(work / "flood", keys)
    for name, figures in (("alone", alone), ("under load", loaded)):
        print(f"{name}: the contribution took {figures['took']:.1f} s in {figures['requests']} requests")
        for key in FIGURES:
            print(f"  {key}: {figures[key]}")
    print(f"misbehaving clients got: {json.dumps(loaded['misbehaving'])}")
    per = (after - before) / count
    print(f"{count} idle sockets: {before / 2**20:.1f} -> {after / 2**20:.1f} MiB ({per / 1024:.1f} KiB each)")
    print(f"HEAD during {deletes} DELETE /files/ over 2,000 uploads: {flood}")
    print("\n| | alone | under load |\n|---|---|---|")
    print(f"| the contribution ({args.size_mib} MiB disc) | {alone['took']:.1f} s | {loaded['took']:.1f} s |")
    for key in FIGURES:
        print(f"| {key} | {alone[key]} | {loaded[key]} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
