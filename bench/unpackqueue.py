"""Unpack throughput as queued jobs: 1 and 2 `pcir-upload worker`s reading from Swift, beside
`pcir-upload unpack` over the receiver's local folder, in the same run on the same uploads.

    .venv/bin/python bench/unpackqueue.py [--count 24] [--size-mib 4]

1. Makes --count discs of --size-mib MiB of random bytes (incompressible, as images) and
   contributes them at once through a real receiver with the page's own Python core
   (tests/queueing.py), then puts the completed uploads into Swift (tests/objectstore.py) as
   the S3 receiver keeps them (receive/s3keys.py).
2. Baseline: `pcir-upload unpack` over the local data folder, timed.
3. For 1 and 2 workers: a fresh redis-server and OUT, the workers started and idle first, then
   `pcir-upload enqueue` and the time until every upload's delivery record is in OUT.
4. Prints MB/s (10^6 bytes of upload per second) and checks every contribution byte for byte.
Everything runs on this machine: Swift, Redis and the workers share its cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "py"), str(ROOT / "tests")]

from objectstore import Redis as RedisServer, Swift  # noqa: E402
from pcir_upload.repository.keys import keygen, load_public_keys  # noqa: E402
from pcir_upload.repository.receive.store import completed_uploads  # noqa: E402
from queueing import cli, contribute_many, put_completed, start_worker  # noqa: E402
from support import files_of  # noqa: E402

BUCKET, PREFIX = "bench", "unpack"
STORE = f"s3://{BUCKET}/{PREFIX}"


def wait_all(out: Path, ids: list[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not all((out / ".uploads" / i).exists() for i in ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"not every upload was delivered within {seconds} s")
        time.sleep(0.02)


def check(out: Path, made) -> None:
    for m in made:
        if files_of(out / m.contribution_id / "files") != files_of(m.disc):
            raise SystemExit(f"{m.contribution_id} is not byte-identical")


def queued(workers: int, folder: Path, redis_env: dict, key: Path, ids: list[str], made) -> float:
    out = folder / f"out-{workers}"
    with RedisServer(folder / f"redis-{workers}") as redis_server:
        redis_url = redis_server.url
        from redis import Redis
        from rq import Worker

        procs = [start_worker(STORE, redis_url, key, out, folder / f"worker-{workers}-{n}.log", redis_env,
                              "--name", f"w{n}") for n in range(workers)]
        try:
            redis = Redis.from_url(redis_url)
            deadline = time.monotonic() + 30
            while Worker.count(connection=redis) < workers:
                if time.monotonic() > deadline:
                    raise SystemExit("the workers did not start")
                time.sleep(0.05)
            start = time.monotonic()
            enqueued = cli("enqueue", "--store", STORE, "--redis", redis_url, env=redis_env)
            if not enqueued.stdout.startswith(f"{len(ids)} job(s) added"):
                raise SystemExit(enqueued.stdout + enqueued.stderr)
            wait_all(out, ids, 600)
            seconds = time.monotonic() - start
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
    check(out, made)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--size-mib", type=float, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="unpackqueue-"))
    try:
        private_path, public_path = keygen(folder / "keys")
        keys = SimpleNamespace(public=load_public_keys(public_path))
        began = time.monotonic()
        data, made = contribute_many(folder, folder, keys, args.count, int(args.size_mib * 1024 * 1024))
        total = sum(u.length for u in completed_uploads(data))
        print(f"{args.count} contributions, {total / 1e6:.1f} MB of uploads, made in {time.monotonic() - began:.1f} s")
        (folder / "swift").mkdir()
        with Swift(folder / "swift") as store:
            client = store.client()
            client.create_bucket(Bucket=BUCKET)
            began = time.monotonic()
            ids = put_completed(data, client, BUCKET, PREFIX)
            print(f"put into Swift in {time.monotonic() - began:.1f} s")

            began = time.monotonic()
            local = subprocess.run([sys.executable, "-m", "pcir_upload.cli", "unpack", "--data", str(data),
                                    "--private-key", str(private_path), "--out", str(folder / "out-local")],
                                   env={"PYTHONPATH": str(ROOT / "py"), "PATH": "/usr/bin:/bin"},
                                   capture_output=True, text=True)
            baseline = time.monotonic() - began
            if local.returncode:
                raise SystemExit(local.stdout + local.stderr)
            check(folder / "out-local", made)

            env = {**store.env, "AWS_ENDPOINT_URL": store.endpoint}
            one = queued(1, folder, env, private_path, ids, made)
            two = queued(2, folder, env, private_path, ids, made)
        figures = {"count": args.count, "upload_mb": round(total / 1e6, 1),
                   "unpack_local_s": round(baseline, 2), "unpack_local_mb_s": round(total / 1e6 / baseline, 1),
                   "workers_1_s": round(one, 2), "workers_1_mb_s": round(total / 1e6 / one, 1),
                   "workers_2_s": round(two, 2), "workers_2_mb_s": round(total / 1e6 / two, 1)}
        print(f"{'':34s} {'seconds':>8s} {'MB/s':>7s}")
        print(f"{'unpack, local folder (no queue)':34s} {baseline:8.2f} {total / 1e6 / baseline:7.1f}")
        print(f"{'1 worker, from Swift':34s} {one:8.2f} {total / 1e6 / one:7.1f}")
        print(f"{'2 workers, from Swift':34s} {two:8.2f} {total / 1e6 / two:7.1f}")
        print(json.dumps(figures))
        return 0
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
