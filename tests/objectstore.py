"""A real S3-compatible object store for the tests: OpenStack Swift with its s3api middleware,
four servers (proxy, account, container, object) on free 127.0.0.1 ports, everything under one
temporary folder, from .venv-swift (./dev makes it from requirements-swift.txt). Healthy in
about 2 s, about 230 MB; stopped and reaped when the test ends.
(The recipe of shared/notes/object-store.md.)"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from redisproc import free_port

ROOT = Path(__file__).resolve().parent.parent
SWIFT_BIN = ROOT / ".venv-swift" / "bin"
ACCESS_KEY, SECRET_KEY, REGION = "test:tester", "testing", "us-east-1"
_FILTERS = {  # pipeline name: egg entry point
    "catch_errors": "catch_errors", "gatekeeper": "gatekeeper", "healthcheck": "healthcheck",
    "proxy-logging": "proxy_logging", "cache": "memcache", "listing_formats": "listing_formats",
    "s3api": "s3api", "tempauth": "tempauth", "copy": "copy", "slo": "slo", "dlo": "dlo",
}
_PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api "
             "tempauth copy slo dlo proxy-logging proxy-server")


# `swift-ring-builder NAME.builder create 6 1 1; add r1z1-127.0.0.1:PORT/d1 1; rebalance`, per ring.
_RINGS = """
import sys
from swift.common.ring import RingBuilder
for ring in sys.argv[2:]:
    name, port = ring.split(":")
    builder = RingBuilder(6, 1, 1)
    builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port),
                     "device": "d1", "weight": 1})
    builder.rebalance()
    builder.get_ring().save(f"{sys.argv[1]}/{name}.ring.gz")
"""


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    def environment(self) -> dict[str, str]:
        """What a process (a receiver, a worker) needs in its environment to reach the store."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": self.region,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region,
                            config=Config(s3={"addressing_style": "path"}))


def _conf(folder: Path, etc: Path, name: str, port: int) -> Path:
    path = etc / f"{name}-server.conf"
    path.write_text(
        f"[DEFAULT]\ndevices = {folder / 'srv' / 'node'}\nmount_check = false\nbind_ip = 127.0.0.1\n"
        f"bind_port = {port}\nworkers = 0\nswift_dir = {etc}\nlog_name = {name}\n"
        f"[pipeline:main]\npipeline = {name}-server\n[app:{name}-server]\nuse = egg:swift#{name}\n"
    )
    return path


def _proxy_conf(etc: Path, port: int) -> Path:
    filters = "".join(f"[filter:{name}]\nuse = egg:swift#{egg}\n" for name, egg in _FILTERS.items())
    path = etc / "proxy-server.conf"
    path.write_text(
        f"[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {port}\nworkers = 0\nswift_dir = {etc}\n"
        f"[pipeline:main]\npipeline = {_PIPELINE}\n"
        "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n"
        + filters.replace("use = egg:swift#tempauth\n", "use = egg:swift#tempauth\nuser_test_tester = testing .admin\n")
        .replace("use = egg:swift#s3api\n", "use = egg:swift#s3api\nmax_upload_part_num = 10000\n")
        .replace("use = egg:swift#slo\n", "use = egg:swift#slo\nmax_manifest_segments = 10000\n")
    )
    return path


@contextmanager
def swift(folder: Path) -> Iterator[ObjectStore]:
    """Start Swift in `folder`; yields the store once its proxy's /healthcheck answers."""
    if not (SWIFT_BIN / "swift-proxy-server").exists():
        raise RuntimeError(f"{SWIFT_BIN} has no Swift: run ./dev test, or make .venv-swift from requirements-swift.txt")
    etc = folder / "etc"
    etc.mkdir(parents=True)
    (folder / "srv" / "node" / "d1").mkdir(parents=True)
    (etc / "swift.conf").write_text(
        "[swift-hash]\nswift_hash_path_suffix = pcir\nswift_hash_path_prefix = pcir\n"
        "[storage-policy:0]\nname = gold\ndefault = yes\n"
    )
    ports = {name: free_port() for name in ("account", "container", "object", "proxy")}
    configs = [_conf(folder, etc, name, ports[name]) for name in ("account", "container", "object")]
    # The three rings in one process: swift-ring-builder nine times costs seconds of imports.
    subprocess.run([str(SWIFT_BIN / "python"), "-c", _RINGS, str(etc), *(
        f"{name}:{ports[name]}" for name in ("account", "container", "object"))], check=True)
    configs.append(_proxy_conf(etc, ports["proxy"]))
    with ExitStack() as stack:
        log = stack.enter_context(open(folder / "swift.log", "wb"))
        for config in configs:
            name = config.name.removesuffix("-server.conf")
            process = subprocess.Popen([str(SWIFT_BIN / f"swift-{name}-server"), str(config)],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            stack.callback(_stop, process)
        endpoint = f"http://127.0.0.1:{ports['proxy']}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/healthcheck", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Swift did not start: {(folder / 'swift.log').read_text()[-3000:]}")
            time.sleep(0.05)
        yield ObjectStore(endpoint)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
