"""Upload throughput into OpenStack Swift (s3api) against the local folder, in one run.

    .venv/bin/python bench/objectstore.py [--size-mib 256] [--rounds 2]

Starts a Swift SAIO and a redis-server (tests/objectstore.py; Swift from .venv-swift, which
`./dev test` makes), then sends one contribution of SIZE MiB of random bytes as the page does:
8 MiB partial uploads, three at a time, each created empty and sent in one checksummed PATCH,
then the final upload that joins them. To each of:

1. **local**: one `pcir-upload serve` on a local data folder (the baseline);
2. **swift**: one `pcir-upload serve --store s3://...` on Swift;
3. **swift x2**: two of those behind a round-robin balancer (tests/roundrobin.py).

Time is from the first creation to the final's 201 (the join included: on Swift that is the
server-side UploadPartCopy of every piece). MB/s is 10^6 bytes per second of that time.
Each configuration runs `--rounds` times; the best is printed. Everything is on 127.0.0.1 and
one machine: the object store's disk is the local disk.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "py")]
import httpx  # noqa: E402
from objectstore import Redis, Swift, free_port  # noqa: E402
from pcir_upload.repository.keys import keygen  # noqa: E402
from receiverproc import ReceiverProcess  # noqa: E402
from roundrobin import RoundRobin  # noqa: E402

CHUNK = 8 * 1024 * 1024
AT_ONCE = 3
TUS = {"Tus-Resumable": "1.0.0"}


async def contribute(url: str, body: bytes) -> float:
    secret = {"Pcir-Upload-Secret": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()}
    chunks = [body[i:i + CHUNK] for i in range(0, len(body), CHUNK)]
    urls: list[str] = [""] * len(chunks)
    gate = asyncio.Semaphore(AT_ONCE)
    async with httpx.AsyncClient(timeout=120) as client:
        async def send(n: int, chunk: bytes) -> None:
            async with gate:
                r = await client.post(url + "/files/", headers={
                    **TUS, **secret, "Upload-Concat": "partial", "Upload-Length": str(len(chunk))})
                assert r.status_code == 201, r.text
                digest = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
                p = await client.patch(url + r.headers["Location"], content=chunk, headers={
                    **TUS, **secret, "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": "0", "Upload-Checksum": f"sha256 {digest}"})
                assert p.status_code == 204, p.text
                urls[n] = r.headers["Location"]

        start = time.perf_counter()
        await asyncio.gather(*(send(n, c) for n, c in enumerate(chunks)))
        r = await client.post(url + "/files/", headers={**TUS, **secret, "Upload-Concat": "final;" + " ".join(urls)})
        assert r.status_code == 201, r.text
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    body = os.urandom(args.size_mib * 1024 * 1024)
    site = ROOT / "dist"
    with tempfile.TemporaryDirectory(prefix="bench-objectstore-") as tmp_name:
        tmp = Path(tmp_name)
        keygen(tmp / "keys")
        key = tmp / "keys" / "public_key.pem"
        with Swift(tmp / "swift") as swift, Redis(tmp / "redis") as redis:
            s3 = swift.client()
            s3.create_bucket(Bucket="bench")
            store = ["--store", "s3://bench/repo", "--s3-endpoint", swift.endpoint, "--redis", redis.url]

            def node(name: str, *options: str) -> ReceiverProcess:
                process = ReceiverProcess(tmp / name, site, key, *options, "--port", str(free_port()),
                                          "--quota", "64G", "--reserve", "1M")
                process.env.update(swift.env)
                process.start()
                return process

            results: dict[str, float] = {}
            for name, count, options in (("local", 1, ()), ("swift", 1, store), ("swift x2", 2, store)):
                nodes = [node(f"{name}-{n}", *options) for n in range(count)]
                try:
                    with RoundRobin([("127.0.0.1", int(p.url.rsplit(":", 1)[1])) for p in nodes]) as balancer:
                        best = min(asyncio.run(contribute(balancer.url, body)) for _ in range(args.rounds))
                finally:
                    for process in nodes:
                        process.stop()
                results[name] = best
                print(f"{name:9} {args.size_mib} MiB in {best:6.2f} s: {len(body) / best / 1e6:6.1f} MB/s", flush=True)
            print(f"swift / local: {results['local'] / results['swift']:.2f} of the local folder's speed")


if __name__ == "__main__":
    main()
