"""Unpacking as queued jobs (repository/jobs.py) on the real engines: redis-server (a fresh one
per test: the tests flush it and count its jobs) and OpenStack Swift with s3api (the session's,
tests/objectstore.py, a bucket per test); `pcir-upload enqueue` and `pcir-upload worker` run as
the operator runs them, in their own processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from redis import Redis
from rq.job import Job

from faultproxy import FaultProxy
from objectstore import Redis as RedisServer, Swift
from pcir_upload.repository.completed import S3Source
from pcir_upload.repository.receive.s3keys import s3_client
from pcir_upload.repository.jobs import RETRIES, status
from queueing import children, cli, completed_ids, contribute_many, contribute_to_store, start_worker
from support import files_of

PREFIX = "site-a"


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.02)


def delivered(out: Path, upload_id: str) -> bool:
    return (out / ".uploads" / upload_id).exists()


def stop(worker) -> None:
    worker.terminate()  # RQ's warm shutdown
    try:
        worker.wait(10)
    except Exception:
        worker.kill()
        worker.wait()


def test_two_workers_unpack_twenty_contributions_from_swift_once_each_though_one_is_killed(
    tmp_path: Path, keys, swift: Swift, bucket: str
) -> None:
    store = f"s3://{bucket}/{PREFIX}"
    key, out, env = keys.folder / "private_key.pem", tmp_path / "out", {**swift.env, "AWS_ENDPOINT_URL": swift.endpoint}
    with RedisServer(tmp_path / "redis") as redis_server:
        redis_url = redis_server.url
        # The contributions arrive as they do in production: the page's core, tus, a receiver
        # process on the store (its shared state in the same Redis as the queue).
        made = contribute_to_store(tmp_path, keys, 20, 150_000, store, swift.endpoint, redis_url, swift.env)
        ids = completed_ids(swift.client(), bucket, PREFIX)
        assert len(ids) == 20
        first = cli("enqueue", "--store", store, "--redis", redis_url, env=env)
        again = cli("enqueue", "--store", store, "--redis", redis_url, env=env)
        assert first.stdout.startswith("20 job(s) added, 0 known"), first.stdout + first.stderr
        assert again.stdout.startswith("0 job(s) added, 20 known"), again.stdout + again.stderr

        # Worker a reads the store through a slow link, so its first job lasts seconds however
        # fast the machine; it is killed (worker and work horse, as a machine dies) while that
        # job runs. Heartbeats every 2 s: a live worker starved of CPU on a loaded machine
        # still beats well within the 4 s after which its job counts as abandoned.
        with FaultProxy(swift.endpoint) as slow:
            slow.throttle(50_000)
            a = start_worker(store, redis_url, key, out, tmp_path / "a.log",
                             {**env, "AWS_ENDPOINT_URL": slow.url}, "--heartbeat", "2", "--name", "a")
            b = None
            try:
                def victim() -> str | None:
                    paths = [path for method, path in slow.requests if method == "GET"]
                    taken = [p.rsplit("/", 1)[1] for p in paths if "/completed/" in p and ".json" not in p]
                    return taken[0].split("?")[0] if taken else None

                wait_for(lambda: victim() is not None, 60, "worker a to start reading an upload")
                b = start_worker(store, redis_url, key, out, tmp_path / "b.log", env, "--heartbeat", "2", "--name", "b")
                time.sleep(0.5)
                killed = victim()
                horses = children(a.pid)
                assert len(horses) == 1 and not delivered(out, killed), "worker a is not mid-job"
                assert list(out.glob(f".unpacking-{killed}-*")), "worker a has no scratch folder"
                os.kill(a.pid, signal.SIGKILL)
                os.kill(horses[0], signal.SIGKILL)
                a.wait()

                wait_for(lambda: all(delivered(out, i) for i in ids), 120, "every upload to be delivered")
            finally:
                for worker in (a, b):
                    if worker is not None and worker.poll() is None:
                        stop(worker)

        redis = Redis.from_url(redis_url)
        assert status(redis) == {"queued": 0, "started": 0, "finished": 20, "failed": 0}
        redone = Job.fetch(killed, connection=redis)
        assert redone.worker_name == "b" and redone.retries_left == RETRIES - 1
        for upload_id in ids:
            job = Job.fetch(upload_id, connection=redis)
            assert job.return_value().startswith("unpacked "), (upload_id, job.return_value())
    # Exactly the twenty contributions, each byte-identical; no scratch folder is left behind.
    assert sorted(p.name for p in out.iterdir()) == sorted([".uploads", *(m.contribution_id for m in made)])
    for m in made:
        assert files_of(out / m.contribution_id / "files") == files_of(m.disc)
    # Worker b delivered all twenty, the killed job among them; worker a none.
    log_a, log_b = (tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text()
    assert log_b.count("unpacked         ") == 20 and "unpacked         " not in log_a, log_b[-3000:]


def test_jobs_over_the_data_folder_and_a_lost_queue_run_again_as_no_ops(tmp_path: Path, keys) -> None:
    data, made = contribute_many(tmp_path, tmp_path, keys, count=3, size=60_000)
    key, out = keys.folder / "private_key.pem", tmp_path / "out"
    with RedisServer(tmp_path / "redis") as redis_server:
        redis_url = redis_server.url
        assert cli("enqueue", "--store", str(data), "--redis", redis_url, env={}).stdout.startswith("3 job(s) added")
        worker = cli("worker", "--store", str(data), "--redis", redis_url, "--private-key", str(key),
                     "--out", str(out), "--burst", env={})
        assert worker.returncode == 0, worker.stdout + worker.stderr
        for m in made:
            assert files_of(out / m.contribution_id / "files") == files_of(m.disc)
        # A finished job is kept: enqueueing again adds nothing.
        assert cli("enqueue", "--store", str(data), "--redis", redis_url, env={}).stdout.startswith("0 job(s) added, 3 known")
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
        Redis.from_url(redis_url).flushall()  # the queue is lost: the store and OUT are the truth
        assert cli("enqueue", "--store", str(data), "--redis", redis_url, env={}).stdout.startswith("3 job(s) added")
        rerun = cli("worker", "--store", str(data), "--redis", redis_url, "--private-key", str(key),
                    "--out", str(out), "--burst", env={})
        assert rerun.returncode == 0 and rerun.stderr.count("already unpacked") == 3, rerun.stderr[-3000:]
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # `unpack` without a queue agrees: everything was delivered already.
    local = cli("unpack", "--data", str(data), "--private-key", str(key), "--out", str(out), env={})
    assert local.returncode == 0 and local.stdout.count("already unpacked") == 3, local.stdout


def test_an_object_reads_as_a_seekable_file_and_a_broken_stream_resumes(swift: Swift, bucket: str, monkeypatch) -> None:
    for name, value in swift.env.items():
        monkeypatch.setenv(name, value)
    body = os.urandom(2 * 1024 * 1024 + 17)
    upload_id = "R" * 32
    client = swift.client()
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/completed/{upload_id}", Body=body)
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/completed/{upload_id}.json",
                      Body=b'{"id": "%s", "length": %d, "created": "x", "completed": "y"}' % (upload_id.encode(), len(body)))
    with FaultProxy(swift.endpoint) as proxy:
        proxy.throttle(1_000_000)
        slow = s3_client(proxy.url)
        upload = S3Source(slow, bucket, PREFIX).get(upload_id)
        assert upload is not None and upload.size == len(body)
        with upload.open() as f:
            assert f.read(300_000) == body[:300_000]
            proxy.drop_connections()  # mid-stream: the reader opens another GET where it stopped
            rest = f.read()
            assert rest == body[300_000:]
            f.seek(-100, os.SEEK_END)
            assert f.read() == body[-100:] and f.tell() == len(body)
            f.seek(5)
            assert f.read(10) == body[5:15]
            assert f.raw.gets == 4  # the stream, its resumption, and one GET per seek
    assert S3Source(client, bucket, PREFIX).get("N" * 32) is None
