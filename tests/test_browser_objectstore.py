"""Issue 15's done-when: a contribution from the page in Chromium, through two receivers behind
a round-robin balancer, onto a real Swift, finishes and unpacks byte-identical while one
receiver is killed (SIGKILL) and restarted mid-upload. The page is not told anything."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from browsing import DIST, arrived, begin, finished
from faultproxy import FaultProxy
from objectstore import Swift, free_port
from pcir_upload.repository.receive.s3keys import completed_info_key, completed_key, completed_prefix
from receiverproc import ReceiverProcess
from roundrobin import RoundRobin


def incompressible_disc(root: Path, files: int = 7, size: int = 3 * 1024 * 1024) -> Path:
    """About 21 MiB that does not compress: three chunks of 8 MiB or so."""
    for i in range(files):
        (root / "SERIES").mkdir(parents=True, exist_ok=True)
        (root / "SERIES" / f"IMG{i:04d}.raw").write_bytes(os.urandom(size))
    return root


def fetch_completed(swift: Swift, bucket: str, prefix: str, data: Path) -> list[str]:
    """Each completed upload on the store (s3keys.py), as a local data folder holds it, to be
    unpacked as `pcir-upload unpack` does: the .json as info.json, the object as data."""
    s3 = swift.client()
    ids = [o["Key"].rsplit("/", 1)[1][:-5] for o in s3.list_objects_v2(Bucket=bucket, Prefix=completed_prefix(prefix))
           .get("Contents", ()) if o["Key"].endswith(".json")]
    for upload_id in ids:
        folder = data / "uploads" / upload_id
        folder.mkdir(parents=True)
        info = s3.get_object(Bucket=bucket, Key=completed_info_key(prefix, upload_id))["Body"].read()
        (folder / "info.json").write_bytes(info)
        s3.download_file(bucket, completed_key(prefix, upload_id), str(folder / "data"))
        assert (folder / "data").stat().st_size == json.loads(info)["length"]
    return ids


def progress(page) -> float:
    return page.evaluate("document.getElementById('progress').value")


def test_two_receivers_one_killed_mid_upload(browser, keys, swift, redis_server, bucket, tmp_path) -> None:
    disc = incompressible_disc(tmp_path / "disc")
    ports = [free_port(), free_port()]
    options = ["--store", f"s3://{bucket}/repo", "--s3-endpoint", swift.endpoint, "--redis", redis_server.url]
    servers = [ReceiverProcess(tmp_path / f"node{n}", DIST, keys.folder / "public_key.pem", *options,
                               "--port", str(port)) for n, port in enumerate(ports)]
    for server in servers:
        server.env.update(swift.env)
        server.start()
    try:
        with RoundRobin([("127.0.0.1", p) for p in ports]) as balancer, FaultProxy(balancer.url) as link:
            page = begin(browser, link.url, disc)
            link.throttle(3_000_000)  # a home uplink, so the kill lands mid-upload
            page.click("#upload")
            backends = [("127.0.0.1", p) for p in ports]
            deadline = time.monotonic() + 60
            # The receiver to kill is the one that holds a share of the upload: a chunk
            # confirmed, and 4 MB of the contribution sent to it (far more than the page's own
            # requests). Which one that is depends on how Chromium spread its connections.
            while progress(page) <= 0 or max(balancer.sent_up[b] for b in backends) < 4_000_000:
                assert time.monotonic() < deadline, f"no upload through the receivers: {balancer.sent_up}"
                time.sleep(0.05)
            to_victim = max(backends, key=lambda b: balancer.sent_up[b])
            (to_other,) = set(backends) - {to_victim}
            victim = servers[backends.index(to_victim)]
            assert page.is_hidden("#step-done")
            other_before = balancer.sent_up[to_other]
            victim.kill()  # SIGKILL: its requests in flight break, its leases are left to expire
            link.throttle(300_000)  # slow while it is down, so it is back well before the end
            victim.start()
            assert page.is_hidden("#step-done")
            before = balancer.connections[to_victim], balancer.sent_up[to_victim]
            balancer.next_to(to_victim)  # back in service: the next connection goes to it
            link.drop_connections()
            link.throttle(3_000_000)
            code = finished(page, timeout=120)
            # The other one carried on, and the killed one served again after its restart.
            # How much it carried depends on how Chromium spreads its connections once the
            # killed one is back (it may keep them all there): what counts is that it served
            # the contribution after the kill.
            assert balancer.sent_up[to_other] > other_before, balancer.sent_up
            assert balancer.connections[to_victim] > before[0] and balancer.sent_up[to_victim] > before[1]
            page.close()
    finally:
        for server in servers:
            server.kill()
    data = tmp_path / "fetched"
    assert len(fetch_completed(swift, bucket, "repo", data)) == 1
    arrived(data, keys, tmp_path, disc, code)
