"""A real OpenStack Swift (SAIO: one proxy, account, container and object server) with its
s3api middleware, and a real redis-server, each on 127.0.0.1 in a temp folder, started and
stopped by the tests (shared/notes/object-store.md's recipe, measured healthy in about 2 s).

    with Swift(tmp) as swift:               # waits for /healthcheck
        swift.client()                      # a boto3 S3 client on it (path-style, test:tester)
        swift.endpoint, swift.env           # for `serve --s3-endpoint` and AWS_* variables
    with Redis(tmp) as redis:
        redis.url                           # redis://127.0.0.1:<port>/0

Swift runs from its own venv (.venv-swift, requirements-swift.txt, made by ./dev test): its
dependencies (eventlet and friends) must not move the receiver's pins. SWIFT_VENV overrides.
Limits are raised as a 64 GiB contribution in 8 MiB pieces needs: max_upload_part_num and
max_manifest_segments 10,000 (Swift's defaults are 1,000).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SWIFT_VENV = Path(os.environ.get("SWIFT_VENV", ROOT / ".venv-swift"))
ACCESS_KEY, SECRET_KEY, REGION = "test:tester", "testing", "us-east-1"
SERVERS = ("account", "container", "object")
PROXY_FILTERS = {
    "catch_errors": "catch_errors", "gatekeeper": "gatekeeper", "healthcheck": "healthcheck",
    "proxy-logging": "proxy_logging", "cache": "memcache", "listing_formats": "listing_formats",
    "s3api": "s3api", "tempauth": "tempauth", "copy": "copy", "slo": "slo", "dlo": "dlo",
}
PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth "
            "copy slo dlo proxy-logging proxy-server")
FILTER_OPTIONS = {
    "tempauth": f"user_test_tester = testing .admin\n",
    "s3api": "max_upload_part_num = 10000\nmax_parts_listing = 10000\n",
    "slo": "max_manifest_segments = 10000\n",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    processes.clear()


class Swift:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.port = 0
        self.endpoint = ""

    @property
    def env(self) -> dict[str, str]:
        """What an S3 client needs beside the endpoint, as the usual environment variables."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name=REGION, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def _configure(self) -> dict[str, Path]:
        etc, node = self.folder / "etc", self.folder / "srv" / "node"
        (node / "d1").mkdir(parents=True, exist_ok=True)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "swift.conf").write_text(
            "[swift-hash]\nswift_hash_path_suffix = pcir\nswift_hash_path_prefix = pcir\n"
            "[storage-policy:0]\nname = gold\ndefault = yes\n"
        )
        ports = {name: free_port() for name in SERVERS}
        self.port = free_port()
        confs = {}
        for name in SERVERS:
            confs[name] = etc / f"{name}-server.conf"
            confs[name].write_text(
                f"[DEFAULT]\ndevices = {node}\nmount_check = false\nbind_ip = 127.0.0.1\n"
                f"bind_port = {ports[name]}\nworkers = 0\nswift_dir = {etc}\nlog_level = WARNING\n"
                f"[pipeline:main]\npipeline = {name}-server\n[app:{name}-server]\nuse = egg:swift#{name}\n"
            )
        filters = "".join(
            f"[filter:{name}]\nuse = egg:swift#{egg}\n{FILTER_OPTIONS.get(name, '')}"
            for name, egg in PROXY_FILTERS.items()
        )
        confs["proxy"] = etc / "proxy-server.conf"
        confs["proxy"].write_text(
            f"[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {self.port}\nworkers = 0\nswift_dir = {etc}\n"
            f"log_level = WARNING\n[pipeline:main]\npipeline = {PIPELINE}\n"
            f"[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n{filters}"
        )
        # One Python for the three rings (swift-ring-builder would start nine).
        rings = "; ".join(
            f"b = RingBuilder(6, 1, 1); b.add_dev({{'region': 1, 'zone': 1, 'ip': '127.0.0.1', "
            f"'port': {ports[name]}, 'device': 'd1', 'weight': 1}}); b.rebalance(); "
            f"b.get_ring().save({str(etc / (name + '.ring.gz'))!r})"
            for name in SERVERS
        )
        subprocess.run([str(SWIFT_VENV / "bin" / "python"), "-c", "from swift.common.ring import RingBuilder; " + rings],
                       check=True, capture_output=True)
        return confs

    def start(self, timeout: float = 30) -> str:
        if not (SWIFT_VENV / "bin" / "swift-proxy-server").exists():
            raise RuntimeError(f"Swift is not installed in {SWIFT_VENV}: ./dev test makes it")
        confs = self._configure()
        log = open(self.folder / "swift.log", "ab")
        for name in (*SERVERS, "proxy"):
            self.processes.append(subprocess.Popen(
                [str(SWIFT_VENV / "bin" / f"swift-{name}-server"), str(confs[name])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            ))
        log.close()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.endpoint + "/healthcheck", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                self.stop()
                raise RuntimeError("Swift did not start:\n" + (self.folder / "swift.log").read_text()[-4000:])
            time.sleep(0.1)
        return self.endpoint

    def stop(self) -> None:
        _stop(self.processes)

    def __enter__(self) -> Swift:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Redis:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.port = 0
        self.url = ""

    def start(self, timeout: float = 10) -> str:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.processes.append(subprocess.Popen(
            [server, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.processes[0].poll() is not None:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        return self.url

    def stop(self) -> None:
        _stop(self.processes)

    def __enter__(self) -> Redis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- pytest fixtures (conftest.py imports them: one Swift and one Redis for the whole session)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def swift(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Swift(tmp_path_factory.mktemp("swift")) as running:
        yield running


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Redis(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture
def bucket(swift: Swift, request: pytest.FixtureRequest) -> str:
    """A fresh bucket for one test (S3 names: lower case, digits and '-')."""
    import re

    name = "t-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + os.urandom(3).hex()
    swift.client().create_bucket(Bucket=name)
    return name
