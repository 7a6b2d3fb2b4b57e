"""De-identification as queued jobs (repository/jobs.py, deidentify/run.py) on a real
redis-server and real RQ workers (`pcir-upload worker --deidentify-out`), contributions made
by the page's core from discs of pydicom's data and received by a real receiver: the queue
makes what `pcir-upload unpack` and `pcir-upload deidentify` make, byte for byte, and a
worker killed mid-job leaves nothing that counts, its job redone whole by another."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from redis import Redis
from rq.job import Job

from objectstore import Redis as RedisServer
from pcir_upload.repository.jobs import DEIDENTIFY_PREFIX, DEIDENTIFY_QUEUE, RETRIES, status
from queueing import children, cli, contribute_discs, start_worker
from support import files_of

# Pixel data of these is read by OCR (about a second each): the job lasts long enough to be
# killed in the middle, and what it finds sends each to released/ or review/ as it decides.
ULTRASOUND = ("examples_rgb_color.dcm", "US1_UNCR.dcm")


def dicom_disc(root: Path, seed: int, slices: int, ultrasounds: int) -> Path:
    """One patient's disc: CT slices (released at once), ultrasound images (read by OCR), a README."""
    study = f"1.2.826.0.1.3680043.8.498.{seed}"
    made = [("CT", get_testdata_file("CT_small.dcm"))] * slices
    made += [("US", get_testdata_file(ULTRASOUND[n % len(ULTRASOUND)])) for n in range(ultrasounds)]
    for n, (kind, source) in enumerate(made):
        ds = pydicom.dcmread(source)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Quorbel^Anwen", f"QP{seed}", "19610822", "F"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID, ds.SOPInstanceUID = f"{study}.{1 + (kind == 'US')}", f"{study}.9.{n + 1}"
        target = root / "DICOM" / kind / f"IM{n:04d}"  # CT first: the disc's order is the job's
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=kind == "CT")
    (root / "README.TXT").write_text(f"Disc of Quorbel Anwen, {seed}.\n")
    return root


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def plain(data: Path, key: Path, secret: Path, folder: Path) -> tuple[Path, Path]:
    """`unpack` then `deidentify`, as without a queue; makes the secret. Returns (unpacked, deidentified)."""
    unpacked, deidentified = folder / "unpacked", folder / "deidentified"
    unpack = cli("unpack", "--data", str(data), "--private-key", str(key), "--out", str(unpacked), env={})
    assert unpack.returncode == 0, unpack.stdout + unpack.stderr
    deid = cli("deidentify", "--in", str(unpacked), "--out", str(deidentified), "--secret", str(secret), env={})
    assert deid.returncode == 0, deid.stdout + deid.stderr
    return unpacked, deidentified


def no_scratch(deidentified: Path) -> bool:
    return not any(p.is_file() for p in (deidentified / ".scratch").rglob("*"))


def test_the_queue_unpacks_and_deidentifies_as_the_plain_commands_do(tmp_path: Path, keys) -> None:
    data, made = contribute_discs(tmp_path, tmp_path, keys, [dicom_disc(tmp_path / "discs" / "d0", 1, 6, 0)], scan=True)
    key, secret = keys.folder / "private_key.pem", tmp_path / "secret"
    unpacked, deidentified = plain(data, key, secret, tmp_path / "plain")
    out, deid = tmp_path / "queued" / "unpacked", tmp_path / "queued" / "deidentified"
    with RedisServer(tmp_path / "redis") as redis_server:
        redis_url = redis_server.url
        common = ("--store", str(data), "--redis", redis_url, "--private-key", str(key), "--out", str(out))
        # A worker never makes the secret: on another machine it would be another one.
        missing = cli("worker", *common, "--deidentify-out", str(deid), "--secret", str(tmp_path / "none"),
                      "--burst", env={})
        assert missing.returncode == 1 and "never makes one" in missing.stderr and not (tmp_path / "none").exists()
        assert cli("enqueue", "--store", str(data), "--redis", redis_url, env={}).stdout.startswith("1 job(s) added")
        worker = cli("worker", *common, "--deidentify-out", str(deid), "--secret", str(secret), "--burst", env={})
        assert worker.returncode == 0, worker.stdout + worker.stderr
        redis = Redis.from_url(redis_url)
        assert status(redis, DEIDENTIFY_QUEUE) == {"queued": 0, "started": 0, "finished": 1, "failed": 0}
        cid = made[0].contribution_id
        line = Job.fetch(DEIDENTIFY_PREFIX + cid, connection=redis).return_value()
        assert line.startswith(f"{cid}: ") and "released" in line and "deidentified     " + line in worker.stderr
    assert files_of(out / cid / "files") == files_of(unpacked / cid / "files") == files_of(made[0].disc)
    released = [p for p in (deid / "released").rglob("*.dcm")]
    assert len(released) >= 6 and (deid / "review" / cid / "files" / "README.TXT").is_file()
    assert snapshot(deid) == snapshot(deidentified)
    assert no_scratch(deid)


def test_a_worker_killed_mid_deidentify_job_is_redone_by_another_whole_and_once(tmp_path: Path, keys) -> None:
    data, made = contribute_discs(tmp_path, tmp_path, keys, [dicom_disc(tmp_path / "discs" / "d0", 2, 12, 1)], scan=True)
    key, secret = keys.folder / "private_key.pem", tmp_path / "secret"
    _, deidentified = plain(data, key, secret, tmp_path / "plain")
    cid = made[0].contribution_id
    out, deid = tmp_path / "queued" / "unpacked", tmp_path / "queued" / "deidentified"
    extra = ("--deidentify-out", str(deid), "--secret", str(secret), "--heartbeat", "2")
    with RedisServer(tmp_path / "redis") as redis_server:
        redis_url = redis_server.url
        assert cli("enqueue", "--store", str(data), "--redis", redis_url, env={}).stdout.startswith("1 job(s) added")
        a = start_worker(str(data), redis_url, key, out, tmp_path / "a.log", {}, *extra, "--name", "a")
        b = None
        try:
            def attempt_files() -> list[Path]:
                return [p for p in (deid / ".scratch" / cid).rglob("*") if p.is_file()]

            deadline = time.monotonic() + 60
            while not attempt_files():  # worker a has unpacked, and is de-identifying
                assert time.monotonic() < deadline and a.poll() is None, (tmp_path / "a.log").read_text()
                time.sleep(0.01)
            horses = children(a.pid)
            assert len(horses) == 1, "worker a is not mid-job"
            # The machine dies: worker, work horse and the OCR it runs.
            for pid in (a.pid, *horses, *children(horses[0])):
                os.kill(pid, signal.SIGKILL)
            a.wait()
            killed = {p.relative_to(deid).parts[2] for p in attempt_files()}
            assert len(killed) == 1 and not (deid / ".done" / cid).exists(), "worker a was not mid-job"
            assert not (deid / "review" / cid).exists()  # nothing of it counts as a result

            b = start_worker(str(data), redis_url, key, out, tmp_path / "b.log", {}, *extra, "--name", "b")
            deadline = time.monotonic() + 90
            while not (deid / ".done" / cid).exists():
                assert time.monotonic() < deadline and b.poll() is None, (tmp_path / "b.log").read_text()
                time.sleep(0.05)
            while status(Redis.from_url(redis_url), DEIDENTIFY_QUEUE)["finished"] == 0:  # its bookkeeping
                assert time.monotonic() < deadline, (tmp_path / "b.log").read_text()
                time.sleep(0.05)
        finally:
            for worker in (a, b):
                if worker is not None and worker.poll() is None:
                    worker.terminate()  # RQ's warm shutdown: the queue is empty, it stops at once
                    worker.wait(20)
        redis = Redis.from_url(redis_url)
        assert status(redis, DEIDENTIFY_QUEUE) == {"queued": 0, "started": 0, "finished": 1, "failed": 0}
        redone = Job.fetch(DEIDENTIFY_PREFIX + cid, connection=redis)
        assert redone.worker_name == "b" and redone.retries_left == RETRIES - 1
    # Whole and once: exactly the files the plain command makes, byte for byte, and the
    # killed attempt's scratch folder removed.
    assert snapshot(deid) == snapshot(deidentified)
    assert no_scratch(deid) and not (deid / ".scratch" / cid).exists()
    log_a, log_b = (tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text()
    assert "deidentified     " not in log_a and log_b.count("deidentified     ") == 1, log_b[-3000:]
