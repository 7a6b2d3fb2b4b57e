"""Unpacking as jobs on a queue: RQ on Redis, one job per completed upload, its id the upload id.

`enqueue` lists the store's completed uploads and adds a job for each one the queue has never
seen (RQ's unique enqueue, atomic in Redis: a second enqueue, from anywhere, adds nothing;
a finished job is kept, so it is not added again either). Any number of workers, on any
machines, take jobs from the queue; each attempt unpacks into a scratch folder of its own in
OUT and moves the contribution into place by one rename (unpack.py). What is true is in the
store (the upload) and in OUT (the delivery records): Redis only says what to do next, so a
job whose worker died is simply run again, and a run of a delivered upload does nothing.

A worker sends a heartbeat every `heartbeat` seconds while its job runs; a job whose worker
misses two in a row counts as abandoned, and the next worker's maintenance (every
`heartbeat` seconds, one worker at a time) puts it back on the queue. RQ's own margin is a
fixed minute; here it is the heartbeat, so a dead machine's job is taken up again within
seconds (docs/SCALING.md).

De-identification follows as a job of its own, on its own queue, when the workers are given
`--deidentify-out` and `--secret`: an unpack job, once its upload is delivered (now or by an
earlier attempt), adds `deidentify-<contribution id>` (unique, as above), so a job lost
between delivery and that step is added by the unpack job's rerun. Workers take these
first, finishing contributions before opening more. Each attempt de-identifies in a scratch
folder of its own and moves the result into place only when whole (deidentify/run.py);
what is true is `DEIDENTIFY_OUT/.done/<contribution id>` and the files, so this job too is
simply run again when its worker dies.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue, Retry, Worker, get_current_job
from rq.exceptions import DuplicateJobError
from rq.job import Job

from pcir_upload.repository.completed import Source
from pcir_upload.repository.deidentify.run import deidentify_contribution
from pcir_upload.repository.keys import PrivateKeys
from pcir_upload.repository.unpack import UnpackError, delivered, describe, unpack_upload

QUEUE = "pcir-unpack"
DEIDENTIFY_QUEUE = "pcir-deidentify"
DEIDENTIFY_PREFIX = "deidentify-"  # job ids share one namespace in Redis with the upload ids
RETRIES = 2  # after a worker died, or a failure (a refused upload fails the same way each time)
HEARTBEAT = 10  # seconds
READERS = 8  # uploads `enqueue` reads from the store at once
# A job may take this long plus a second per 2 MB before RQ stops it: no disc unpacks slower.
BASE_TIMEOUT, TIMEOUT_BYTES_PER_SECOND = 600, 2_000_000
# De-identification reads images (OCR of every frame that may carry text): slower per byte.
DEIDENTIFY_BYTES_PER_SECOND = 500_000

log = logging.getLogger("pcir_upload.jobs")


@dataclass(frozen=True)
class Deidentify:
    """Where de-identified contributions go, and the repository's secret (made elsewhere)."""

    out: Path
    secret: bytes


@dataclass(frozen=True)
class Setup:
    """What a worker's jobs need: set before the worker starts; its forked work horses inherit it."""

    source: Source
    keys: PrivateKeys
    out: Path
    deidentify: Deidentify | None = None


_setup: Setup | None = None


def _current() -> Setup:
    if _setup is None:
        raise RuntimeError("jobs run only in `pcir-upload worker`")
    return _setup


def unpack_job(upload_id: str) -> str:
    """Unpack one upload (the job RQ runs); returns the line `unpack` would print."""
    setup = _current()
    out = setup.out
    done = delivered(upload_id, out)
    if done is None:
        upload = setup.source.get(upload_id)
        if upload is None:
            raise UnpackError(f"upload {upload_id} is not complete in {setup.source} (or has expired)")
        done = unpack_upload(upload_id, upload, setup.keys, out, log.info, attempt=f"-{secrets.token_hex(6)}")
    _remove_attempts(out, upload_id)
    if setup.deidentify is not None:
        job = get_current_job()
        assert job is not None
        _enqueue_deidentify(Queue(DEIDENTIFY_QUEUE, connection=job.connection), done.contribution_id, done.bytes)
    log.info("%s", describe(done))
    return describe(done)


def _enqueue_deidentify(queue: Queue, contribution_id: str, size: int) -> None:
    try:
        queue.enqueue_call(
            deidentify_job, args=(contribution_id,), job_id=DEIDENTIFY_PREFIX + contribution_id, unique=True,
            timeout=BASE_TIMEOUT + size // DEIDENTIFY_BYTES_PER_SECOND, result_ttl=-1,
            retry=Retry(max=RETRIES), description=f"deidentify {contribution_id} ({size} bytes)",
        )
    except DuplicateJobError:  # an earlier attempt of the unpack job added it
        pass


def deidentify_job(contribution_id: str) -> str:
    """De-identify one unpacked contribution (the job RQ runs); returns the line `deidentify` prints."""
    setup = _current()
    if setup.deidentify is None:
        raise RuntimeError("this worker was started without --deidentify-out")
    line = f"{contribution_id}: " + deidentify_contribution(setup.out / contribution_id, setup.deidentify.out,
                                                           setup.deidentify.secret)
    log.info("deidentified     %s", line)
    return line


def _remove_attempts(out: Path, upload_id: str) -> None:
    """Scratch folders of this upload's other attempts (a worker that died leaves one): once it
    is delivered none is worth keeping; one still running finds its work gone, fails, and its
    retry finds the upload delivered."""
    for scratch in out.glob(f".unpacking-{upload_id}-*"):
        shutil.rmtree(scratch, ignore_errors=True)


def job_timeout(size: int) -> int:
    return BASE_TIMEOUT + size // TIMEOUT_BYTES_PER_SECOND


@dataclass
class Enqueued:
    added: int = 0
    known: int = 0  # already queued, running, finished or failed
    gone: int = 0  # listed, but not (or no longer) complete when read by its key


def enqueue(source: Source, redis: Redis) -> Enqueued:
    """One job per completed upload the queue has not seen; safe to run often and from anywhere."""
    queue, counts = Queue(QUEUE, connection=redis), Enqueued()
    new = []
    for upload_id in source.ids():
        if Job.exists(upload_id, connection=redis):
            counts.known += 1
        else:
            new.append(upload_id)
    # By key, as a listing may show what is gone; a few at once, as each is two round trips.
    with ThreadPoolExecutor(READERS) as pool:
        uploads = list(pool.map(source.get, new))
    for upload_id, upload in zip(new, uploads):
        if upload is None:
            counts.gone += 1
            continue
        try:
            queue.enqueue_call(
                unpack_job, args=(upload_id,), job_id=upload_id, unique=True,
                timeout=job_timeout(upload.size), result_ttl=-1, retry=Retry(max=RETRIES),
                description=f"unpack {upload_id} ({upload.size} bytes)",
            )
            counts.added += 1
        except DuplicateJobError:  # another enqueue was quicker
            counts.known += 1
    return counts


class UnpackWorker(Worker):
    """RQ's forking worker; a job counts as abandoned one heartbeat after a missed one, not a minute."""

    def get_heartbeat_ttl(self, job: Job) -> int:
        return 2 * self.job_monitoring_interval


def run_worker(setup: Setup, redis: Redis, *, heartbeat: int = HEARTBEAT, burst: bool = False,
               name: str | None = None) -> bool:
    """Take jobs until stopped (SIGTERM: after the current one), or until the queue is empty with `burst`."""
    global _setup
    _setup = setup
    if not log.handlers:  # what the jobs say, beside RQ's own lines
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    setup.out.mkdir(parents=True, exist_ok=True)
    queues = [Queue(QUEUE, connection=redis)]
    if setup.deidentify is not None:
        setup.deidentify.out.mkdir(parents=True, exist_ok=True)
        queues.insert(0, Queue(DEIDENTIFY_QUEUE, connection=redis))  # the first queue is asked first
    worker = UnpackWorker(
        queues, connection=redis, name=name,
        job_monitoring_interval=heartbeat, maintenance_interval=heartbeat,
        # The wait for a job is worker_ttl - 15 s, and maintenance runs between waits.
        worker_ttl=heartbeat + 15,
    )
    return worker.work(burst=burst, logging_level="INFO", with_scheduler=False)


def status(redis: Redis, name: str = QUEUE) -> dict[str, Any]:
    """How many jobs of a queue wait, run, finished and failed (the bench and the tests read it)."""
    queue = Queue(name, connection=redis)
    return {"queued": queue.count, "started": queue.started_job_registry.count,
            "finished": queue.finished_job_registry.count, "failed": queue.failed_job_registry.count}
