"""The receiver against anyone with its address (issue 12, findings 4 to 7): what one client,
one contribution or everyone together may hold, how long anything is kept, how long a
connection may take, and numbers too long for Python. Mostly `pcir-upload serve` as an
operator runs it (tests/receiverproc.py), over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import statistics
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from conftest import Keys
from contributing import QUICK, CountingTransport, arrived_intact, finish, make_disc, prepare
from pcir_upload.repository.receive import admission as admission_module
from pcir_upload.repository.receive import store as store_module
from pcir_upload.repository.receive.limits import Limits, MiB
from pcir_upload.repository.receive.store import UploadStore, secret_owner
from misbehaving import UNDER_LOAD, Misbehaving
from misbehaving import secret as new_secret
from receiverproc import serve
from support import FolderDisc, make_uploads, receiver

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>Contribute</title>")
    return site


def eventually(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def closed_within(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the receiver sends until it closes the connection, and when it did."""
    start = time.monotonic()
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"still open after {timeout} s") from None
        except ConnectionResetError:
            break
        if not data:
            break
        received += data
    return received, time.monotonic() - start


def connect(url: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))


# --- 7: numbers too long for Python's int()


def test_numbers_of_thousands_of_digits_are_400_and_leave_no_traceback(tmp_path: Path, site: Path, keys: Keys) -> None:
    huge = "9" * 5000  # past Python's 4,300-digit limit for int(str)
    with serve(tmp_path, site, keys) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        for name in ("Upload-Length", "Upload-Offset"):
            r = client.post("/files/", headers={**TUS, name: huge})
            assert r.status_code == 400, r.text
        r = client.post("/files/", headers={**TUS, "Upload-Length": "9" * 20})  # absurd, not even int64
        assert r.status_code == 400 and "byte count" in r.text
        assert client.post("/files/", headers={**TUS, "Upload-Length": str(2**62)}).status_code == 413
        location = client.post("/files/", headers={**TUS, "Upload-Defer-Length": "1"}).headers["Location"]
        assert client.patch(location, content=b"x", headers={**CHUNK, "Upload-Offset": huge}).status_code == 400
        r = client.patch(location, content=b"x", headers={**CHUNK, "Upload-Offset": "0", "Upload-Length": huge})
        assert r.status_code == 400
        assert client.head(location, headers=TUS).headers["Upload-Offset"] == "0"
    assert not [line for line in server.log if "Traceback" in line or "Exception" in line]


# --- 4: quota, disk reserve, per-client and per-contribution limits, expiry of completed uploads


def test_the_quota_is_refused_with_507_before_it_is_passed(tmp_path: Path, site: Path, keys: Keys) -> None:
    with serve(tmp_path, site, keys, "--quota", "1M") as server, httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.post("/files/", headers={**TUS, "Upload-Length": str(2 * MiB)})
        assert r.status_code == 507 and "1M" in r.text and r.headers["Tus-Resumable"] == "1.0.0"
        first = client.post("/files/", headers={**TUS, "Upload-Length": "600000"})
        assert first.status_code == 201  # its length counts from now on, written or not
        assert client.post("/files/", headers={**TUS, "Upload-Length": "600000"}).status_code == 507
        assert client.delete(first.headers["Location"], headers=TUS).status_code == 204

        # A deferred length counts as it grows: bytes past the quota are refused, none kept.
        location = client.post("/files/", headers={**TUS, "Upload-Defer-Length": "1"}).headers["Location"]
        assert client.patch(location, content=os.urandom(500_000), headers={**CHUNK, "Upload-Offset": "0"}).status_code == 204
        r = client.patch(location, content=os.urandom(600_000), headers={**CHUNK, "Upload-Offset": "500000"})
        assert r.status_code == 507
        assert client.head(location, headers=TUS).headers["Upload-Offset"] == "500000"
        r = client.patch(location, content=os.urandom(10), headers={**CHUNK, "Upload-Offset": "500000", "Upload-Length": "500010"})
        assert r.status_code == 204


def test_the_disk_keeps_its_reserve(tmp_path: Path, site: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 40 MiB disk, as in the review: junk stops at the reserve, not at 100 %."""
    data = tmp_path / "data"
    disk = 40 * MiB

    def used() -> int:
        return sum(f.stat().st_size for f in (data / "uploads").rglob("*") if f.is_file())

    monkeypatch.setattr(admission_module, "disk_free", lambda path: (disk - used(), 100_000))
    with receiver(data, site, keys.public, limits=Limits(reserve=8 * MiB)) as url, httpx.Client(base_url=url, timeout=10) as client:
        statuses = []
        for _ in range(40):
            body = os.urandom(MiB)
            r = client.post("/files/", content=body, headers={**CHUNK, "Upload-Length": str(len(body))})
            statuses.append(r.status_code)
        assert set(statuses) == {201, 507} and statuses.index(507) >= 20
        assert "disk is nearly full" in client.post("/files/", headers={**TUS, "Upload-Length": str(MiB)}).text
        assert disk - used() >= 8 * MiB
        assert client.post("/files/", headers={**TUS, "Upload-Length": "1000"}).status_code == 201


def test_one_client_may_start_only_so_many_uploads_a_minute(tmp_path: Path, site: Path, keys: Keys) -> None:
    with serve(tmp_path, site, keys, "--client-creations", "30") as server, httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(30):
            assert client.post("/files/", headers={**TUS, "Upload-Length": "0"}).status_code == 201
        r = client.post("/files/", headers={**TUS, "Upload-Length": "0"})
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 2
        # No trusted proxy: what X-Forwarded-For says is nobody's business.
        r = client.post("/files/", headers={**TUS, "Upload-Length": "0", "X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(tmp_path: Path, site: Path, keys: Keys) -> None:
    options = ("--client-creations", "5", "--trusted-proxy", "127.0.0.1")
    with serve(tmp_path, site, keys, *options) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        def create(address: str) -> int:
            return client.post("/files/", headers={**TUS, "Upload-Length": "0", "X-Forwarded-For": address}).status_code

        assert [create("203.0.113.1") for _ in range(6)] == [201] * 5 + [429]
        assert create("203.0.113.2") == 201
        assert create("198.51.100.1, 203.0.113.1") == 429  # the proxy's own entry is the last one


def test_unfinished_uploads_are_limited_per_client_and_per_contribution(tmp_path: Path, site: Path, keys: Keys) -> None:
    options = ("--client-uploads", "3", "--secret-uploads", "2")
    with serve(tmp_path, site, keys, *options) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        a, b, c = new_secret(), new_secret(), new_secret()

        def partial(secret: str, body: bytes = b"") -> httpx.Response:
            headers = {**CHUNK, "Upload-Length": "4", "Upload-Concat": "partial", "Pcir-Upload-Secret": secret}
            return client.post("/files/", content=body, headers=headers)

        first = partial(a)
        assert [first.status_code, partial(a).status_code] == [201, 201]
        r = partial(a)
        assert r.status_code == 429 and "contribution" in r.text and r.headers["Retry-After"]
        assert partial(b).status_code == 201
        r = partial(c)
        assert r.status_code == 429 and "address" in r.text
        # A partial written in full waits for its final: it no longer counts.
        r = client.patch(first.headers["Location"], content=b"done",
                         headers={**CHUNK, "Upload-Offset": "0", "Pcir-Upload-Secret": a})
        assert r.status_code == 204
        assert partial(c).status_code == 201
        assert partial(a, b"full").status_code == 429  # the address has three unfinished again


def complete_at(data: Path, location: str, when: datetime) -> None:
    """Make a completed upload look as if it completed at `when`."""
    path = data / "uploads" / location.rsplit("/", 1)[1] / "info.json"
    info = json.loads(path.read_text())
    info["completed"] = when.isoformat(timespec="seconds")
    path.write_text(json.dumps(info))


def test_completed_uploads_nobody_collected_are_removed(tmp_path: Path, site: Path, keys: Keys) -> None:
    data = tmp_path / "data"
    old = datetime.now(timezone.utc) - timedelta(hours=2)
    with receiver(data, site, keys.public, limits=Limits(keep_completed=3600), expire_every=0.2) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            stale, fresh = (client.post("/files/", content=b"abc", headers={**CHUNK, "Upload-Length": "3"})
                            .headers["Location"] for _ in range(2))
            complete_at(data, stale, old)
            eventually(lambda: client.head(stale, headers=TUS).status_code == 404)
            assert client.head(fresh, headers=TUS).status_code == 200
    # With --keep-completed 0 the operator keeps them, however old.
    complete_at(data, fresh, old - timedelta(days=3650))
    with receiver(data, site, keys.public, limits=Limits(keep_completed=0), expire_every=0.1) as url:
        time.sleep(1)
        assert httpx.head(url + fresh, headers=TUS).status_code == 200


# --- 5: no request reads every upload


def test_deleting_contributions_does_not_slow_everyone_else(tmp_path: Path, site: Path, keys: Keys) -> None:
    """2,000 uploads and eight clients terminating contributions as fast as they can: before,
    everyone else waited 1.9 s (median) for an answer."""
    make_uploads(tmp_path / "data", 2000, owner=secret_owner(new_secret()))
    with serve(tmp_path, site, keys) as server:
        location = httpx.post(server.url + "/files/", headers={**TUS, "Upload-Length": "10"}).headers["Location"]
        stop = threading.Event()
        deletes = [0] * 8

        def hammer(n: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                while not stop.is_set():
                    client.delete("/files/", headers={**TUS, "Pcir-Upload-Secret": new_secret()})
                    deletes[n] += 1

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        latencies = []
        try:
            time.sleep(0.5)
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for _ in range(60):
                    start = time.monotonic()
                    assert client.head(location, headers=TUS).status_code == 200
                    latencies.append(time.monotonic() - start)
                    time.sleep(0.02)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
    latencies.sort()
    median, p95 = statistics.median(latencies), latencies[int(len(latencies) * 0.95)]
    print(f"HEAD under {sum(deletes)} DELETEs: median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")
    assert sum(deletes) >= 200
    assert median < 0.25 and p95 < 1.0


def test_what_the_store_remembers_of_terminated_and_joined_contributions_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "TERMINATED_CAP", 100)
    monkeypatch.setattr(store_module, "CONSUMED_CAP", 10)

    async def go() -> None:
        store = UploadStore(tmp_path / "data")
        await store.recover()
        for n in range(1000):
            await store.delete_owned(f"{n:064x}", wait=0)
        assert len(store._terminated) == 100 and f"{999:064x}" in store._terminated

        owner = secret_owner(new_secret())
        finals = []
        for n in range(5):
            parts = []
            for i in range(4):
                body = bytes([n, i])
                parts.append((await store.create(2, partial=True, owner=owner, body=_chunks(body))).id)
            finals.append((parts, (await store.concatenate(parts, owner)).id))
        assert len(store._consumed) <= 10
        parts, final = finals[-1]
        assert (await store.concatenate(parts, owner)).id == final  # the newest is remembered

    asyncio.run(go())


async def _chunks(body: bytes):  # type: ignore[no-untyped-def]
    yield body


# --- 6: connections: idle, slow heads, stalled bodies, pending heads, open files

QUICK_TIMEOUTS = ("--idle-timeout", "2", "--header-timeout", "3", "--body-timeout", "2")


def test_idle_connections_and_slow_heads_are_closed(tmp_path: Path, site: Path, keys: Keys) -> None:
    with serve(tmp_path, site, keys, *QUICK_TIMEOUTS) as server:
        idle = [connect(server.url) for _ in range(3)]
        for sock in idle:
            received, after = closed_within(sock, 10)
            assert received == b"" and after < 10
            sock.close()

        slow = connect(server.url)
        slow.sendall(b"POST /files/ HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        for byte in b"Tus-Resumable: 1.0.0\r\nUpload-Length: 10\r\n":  # a byte every 0.25 s, until answered
            if select.select([slow], [], [], 0.25)[0]:
                break
            slow.sendall(bytes([byte]))
        received, _ = closed_within(slow, 10)
        assert received.startswith(b"HTTP/1.1 408 ")
        assert 2.5 < time.monotonic() - start < 10


def test_a_stalled_patch_body_is_cut_and_what_arrived_is_kept(tmp_path: Path, site: Path, keys: Keys) -> None:
    with serve(tmp_path, site, keys, *QUICK_TIMEOUTS) as server:
        location = httpx.post(server.url + "/files/", headers={**TUS, "Upload-Length": str(MiB)}).headers["Location"]
        sock = connect(server.url)
        body = os.urandom(MiB)
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: {MiB}\r\n\r\n".encode()
            + body[:300_000]
        )
        _, after = closed_within(sock, 15)  # two seconds without a byte, then cut
        assert after < 15
        sock.close()
        r = httpx.head(server.url + location, headers=TUS)
        assert r.headers["Upload-Offset"] == "300000"
        r = httpx.patch(server.url + location, content=body[300_000:], headers={**CHUNK, "Upload-Offset": "300000"})
        assert r.status_code == 204
        [upload] = store_module.completed_uploads(tmp_path / "data")
        assert upload.data_path.read_bytes() == body


def test_pending_heads_are_bounded_and_a_final_of_8000_partials_still_fits(tmp_path: Path, site: Path, keys: Keys) -> None:
    """Sixty heads of a megabyte that never end held 61 MB before; now 8 MiB beyond 16 KiB each,
    the rest get 503. And a final naming 8,000 partials (~330 KB of head) still goes through."""
    secret = new_secret()
    parts = make_uploads(tmp_path / "data", 8000, owner=secret_owner(secret), partial=True, size=8)
    with serve(tmp_path, site, keys, "--head-memory", "8M") as server:
        httpx.get(server.url + "/api/config")
        before = server.rss()
        pending = []
        for _ in range(60):
            sock = connect(server.url)
            sock.sendall(b"POST /files/ HTTP/1.1\r\nHost: x\r\nX-Pad: ")
            try:
                sock.sendall(b"a" * 1_000_000)
            except OSError:
                pass  # refused already
            pending.append(sock)
        time.sleep(1)
        grown = server.rss() - before
        refused = 0  # answered 503 and closed (the answer may be lost to the reset of what we sent)
        for sock in pending:
            sock.settimeout(0.2)
            try:
                answer = sock.recv(100)
                refused += answer == b"" or answer.startswith(b"HTTP/1.1 503 ")
            except ConnectionResetError:
                refused += 1
            except socket.timeout:
                pass
        print(f"60 pending heads of 1 MB: the receiver grew {grown / MiB:.1f} MiB, {refused} refused with 503")
        assert grown < 30 * MiB and refused >= 40
        for sock in pending:
            sock.close()
        time.sleep(1)  # the receiver notices they are gone, and lets go of their heads

        head = f"final;{' '.join('/files/' + p for p in parts)}"
        assert len(head) > 300_000
        r = httpx.post(server.url + "/files/", timeout=60,
                       headers={**TUS, "Pcir-Upload-Secret": secret, "Upload-Concat": head})
        assert r.status_code == 201, r.text
        assert r.headers["Upload-Length"] == str(8 * 8000)


def test_idle_sockets_beyond_the_open_file_limit_lock_nobody_out(tmp_path: Path, site: Path, keys: Keys) -> None:
    """200 open files, 220 idle sockets: before, every other request timed out and the log grew
    by megabytes of "Too many open files"."""
    with serve(tmp_path, site, keys, files=200) as server:
        assert any("At most 68 connections" in line for line in server.log)
        idle = [connect(server.url) for _ in range(220)]
        try:
            for _ in range(20):
                assert httpx.get(server.url + "/api/config", timeout=5).status_code == 200
        finally:
            for sock in idle:
                sock.close()
        log = list(server.log)
    assert not [line for line in log if "open files" in line.lower()]
    assert len(log) < 40


# --- all of it at once


class Forwarded(CountingTransport):
    """A well-behaved patient behind the same (trusted) proxy as the misbehaving clients."""

    async def request(self, method, url, headers, body=None):  # type: ignore[no-untyped-def]
        return await super().request(method, url, {**headers, "X-Forwarded-For": "198.51.100.7"}, body)


def test_a_contribution_finishes_while_fifty_clients_misbehave(tmp_path: Path, site: Path, keys: Keys) -> None:
    """A contribution (CPython, the page's own tus client over httpx) through a receiver that
    fifty clients misbehave toward at the same time (tests/misbehaving.py): it finishes, unpacks
    byte-identical, and its requests are answered about as fast as when alone."""
    folder = make_disc(tmp_path / "disc")
    with serve(tmp_path, site, keys, *UNDER_LOAD) as server, Misbehaving(server.url, 30) as load:
        time.sleep(3)  # let them get going
        probes: list[float] = []

        async def contribute() -> object:
            run = prepare(server.url + "/files/", FolderDisc(folder), keys, transport=Forwarded(), retry=QUICK)
            task = asyncio.ensure_future(finish(run))
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                while not task.done():
                    start = time.monotonic()
                    r = await client.options("/files/", headers={**TUS, "X-Forwarded-For": "198.51.100.8"})
                    assert r.status_code == 204
                    probes.append(time.monotonic() - start)
                    await asyncio.sleep(0.05)
            return await task

        started = time.monotonic()
        run = asyncio.run(contribute())
        took = time.monotonic() - started
        summary = load.wait(timeout=45)
    arrived_intact(tmp_path / "data", keys, tmp_path / "out", run, folder)  # type: ignore[arg-type]
    answers = [s.end - s.start for s in run.transport.sent if s.method != "PATCH"]  # type: ignore[attr-defined]
    for name, values in (("probe", probes), ("contribution", answers)):
        values.sort()
        print(f"{name}: {len(values)} requests, median {statistics.median(values) * 1000:.1f} ms, "
              f"p95 {values[int(len(values) * 0.95)] * 1000:.1f} ms")
    print(f"the contribution took {took:.1f} s; the misbehaving clients got: {json.dumps(summary)}")
    probes.sort()
    assert statistics.median(probes) < 0.25 and probes[int(len(probes) * 0.95)] < 1.5
    assert summary["junk"].get("429", 0) > 0  # their limits held
    assert summary["idle"]["closed by the receiver"] > 0 and summary["slowloris"]["closed by the receiver"] > 0
