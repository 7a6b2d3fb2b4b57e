"""It finishes: whole contributions through a bad network (tests/faultproxy.py) to the real
receiver, each ending with every file unpacked byte for byte. Bodies cut halfway, answers
lost, 503 and 429 with Retry-After, refused connections, a throttled link, the receiver
killed and started again; pausing, resuming and cancelling; two chunks in flight."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contributing import (
    CHUNK, CountingTransport, Run, arrived_intact, contribute_through, finish, make_disc,
    orphans, prepare,
)
from faultproxy import FaultProxy
from pcir_upload.cli import main
from pcir_upload.page.upload.contribution import ContributionCancelled, Progress
from pcir_upload.repository.keys import PUBLIC_KEY_NAME
from pcir_upload.repository.receive.store import all_uploads
from receiverproc import ReceiverProcess
from support import FolderDisc, receiver


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_disc(tmp_path / "disc")


@pytest.fixture
def net(tmp_path: Path, keys) -> Iterator[tuple[FaultProxy, Path]]:
    """The receiver behind the fault proxy: (proxy, the receiver's data folder)."""
    data = tmp_path / "data"
    with receiver(data, tmp_path, keys.public) as url, FaultProxy(url) as proxy:
        yield proxy, data


def endpoint(proxy: FaultProxy) -> str:
    return proxy.url + "/files/"


def chunks_of(run: Run) -> int:
    assert run.receipt is not None
    return run.receipt.chunks


def test_a_clean_run_sends_each_chunk_once(net, folder, keys, tmp_path) -> None:
    proxy, data = net
    run = contribute_through(endpoint(proxy), FolderDisc(folder), keys)
    arrived_intact(data, keys, tmp_path / "out", run, folder)
    assert chunks_of(run) > 40  # many chunks: the interesting cases happen
    assert run.transport.count("partial") == chunks_of(run)
    assert run.transport.count("final") == 1
    assert orphans(data) == []
    assert run.records[-1] is None  # done: the record is forgotten
    sent = [p.bytes_sent for p in run.progress]
    assert sent == sorted(sent) and run.progress[-1].state == "done"


@pytest.mark.parametrize("checksum", [True, False], ids=["checksummed", "plain"])
def test_bodies_cut_mid_patch(net, folder, keys, tmp_path, checksum) -> None:
    """Each partial is created empty, then PATCHed in pieces. A piece cut halfway is followed
    by HEAD and the rest: what the server kept is not sent again (a checksummed piece is kept
    only whole, so all of it goes again)."""
    proxy, data = net
    if not checksum:
        proxy.answer(204, method="OPTIONS", headers={
            "Tus-Version": "1.0.0", "Tus-Extension": "creation,termination,concatenation"})
    proxy.cut_after(20_000, method="PATCH", count=3)
    run = contribute_through(endpoint(proxy), FolderDisc(folder), keys, parallel=1)
    arrived_intact(data, keys, tmp_path / "out", run, folder)
    assert proxy.faults_left() == 0
    creations = [s for s in run.transport.sent if s.headers.get("Upload-Concat") == "partial"]
    assert len(creations) == chunks_of(run) and all(s.body == 0 for s in creations)
    assert orphans(data) == []
    patches = [s for s in run.transport.sent if s.method == "PATCH"]
    assert all(("Upload-Checksum" in s.headers) == checksum for s in patches)
    # One chunk at a time, so a failed piece is the one a HEAD follows: the three cut, and any
    # refused with 423 because it came before the receiver had seen the cut one end.
    asked = [s for s in run.transport.sent if s.method in ("PATCH", "HEAD")]
    failed = [a for a, b in zip(asked, asked[1:]) if (a.method, b.method) == ("PATCH", "HEAD")]
    assert 3 <= len(failed) == run.transport.count("HEAD") <= 6

    def kept(piece) -> int:
        """What the server kept of a failed piece: where the next piece for its chunk began."""
        after = next(s for s in patches[patches.index(piece) + 1:] if s.url == piece.url)
        return int(after.headers["Upload-Offset"]) - int(piece.headers["Upload-Offset"])

    kept_of = [kept(piece) for piece in failed]
    if checksum:
        assert kept_of == [0] * len(failed)  # nothing unproven is kept
    else:
        assert sum(kept_of) > 0  # what came of a cut piece is kept
    # Nothing else is sent twice.
    assert sum(s.body for s in patches) - run.receipt.bytes_sent == sum(s.body for s in failed) - sum(kept_of)


def test_lost_answers(net, folder, keys, tmp_path) -> None:
    """The server acted, the answer never came: a partial's creation (a new partial is made;
    the orphan expires) and the final (asked again: the same final upload)."""
    proxy, data = net
    lost = {"partial": {5, 17}, "final": {1}}
    seen = {"partial": 0, "final": 0}

    def lose(method, headers) -> bool:
        concat = headers.get("Upload-Concat", "")
        kind = "final" if concat.startswith("final;") else "partial" if concat else None
        if kind is None:
            return False
        seen[kind] += 1
        return seen[kind] in lost[kind]

    transport = CountingTransport(lose)
    run = contribute_through(endpoint(proxy), FolderDisc(folder), keys, transport=transport)
    arrived_intact(data, keys, tmp_path / "out", run, folder)
    assert transport.lost == 3
    assert transport.count("partial") == chunks_of(run) + 2
    assert transport.count("final") == 2
    assert len(orphans(data)) == 2


@pytest.mark.parametrize("status", [503, 429])
def test_busy_answers_with_retry_after(net, folder, keys, tmp_path, status) -> None:
    proxy, data = net
    proxy.answer(status, count=2, retry_after=1, method="POST")
    started = time.monotonic()
    run = contribute_through(endpoint(proxy), FolderDisc(folder), keys)
    arrived_intact(data, keys, tmp_path / "out", run, folder)
    waits = [p.next_try for p in run.progress if p.state == "waiting"]
    # The server's word, not our own backoff, counting down from when the wait began.
    assert waits and max(waits) > 0.99 and all(0 <= wait <= 1.0 for wait in waits)
    assert time.monotonic() - started >= 1.0
    assert proxy.faults_left() == 0


def test_refused_connections_for_a_while(net, folder, keys, tmp_path) -> None:
    proxy, data = net
    refused_at: list[int] = []

    def on_progress(run: Run, p: Progress) -> None:
        if p.state == "sending" and p.bytes_sent > 10 * CHUNK and not refused_at:
            refused_at.append(p.bytes_sent)
            proxy.refuse(1.5)
            proxy.drop_connections()

    run = contribute_through(endpoint(proxy), FolderDisc(folder), keys, on_progress=on_progress)
    arrived_intact(data, keys, tmp_path / "out", run, folder)
    assert refused_at
    assert "waiting" in run.states()
    assert run.contribution._link.retries > 0


def test_a_throttled_link(net, tmp_path, keys) -> None:
    proxy, data = net
    folder = make_disc(tmp_path / "small", size=600_000)
    proxy.throttle(400_000)
    run = contribute_through(endpoint(proxy), FolderDisc(folder), keys)
    arrived_intact(data, keys, tmp_path / "out", run, folder)
    speeds = [p.speed for p in run.progress if p.speed]
    assert speeds and max(speeds) < 1_000_000  # honest: the link's speed, not the disc's
    assert any(p.seconds_left for p in run.progress)


@pytest.mark.parametrize("parallel", [1, 2])
def test_chunks_in_flight_overlap(net, tmp_path, keys, parallel) -> None:
    proxy, data = net
    folder = make_disc(tmp_path / "small", size=500_000)
    proxy.throttle(500_000)
    run = contribute_through(endpoint(proxy), FolderDisc(folder), keys, parallel=parallel)
    arrived_intact(data, keys, tmp_path / "out", run, folder)
    assert run.transport.most_in_flight["PATCH"] == parallel
    # Each chunk's time on the wire: from its first piece sent to its last piece answered.
    spans: dict[str, list[float]] = {}
    for s in run.transport.sent:
        if s.method == "PATCH":
            span = spans.setdefault(s.url, [s.start, s.end])
            span[1] = max(span[1], s.end)
    chunks = sorted(spans.values())
    overlapping = sum(1 for a, b in zip(chunks, chunks[1:]) if b[0] < a[1])
    if parallel == 1:
        assert overlapping == 0
    else:
        assert overlapping >= len(chunks) // 2  # the uplink is never left idle between chunks


def test_the_receiver_killed_and_started_again(tmp_path, keys, folder) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>Contribute</title>")
    data = tmp_path / "data"
    server = ReceiverProcess(data, site, keys.folder / PUBLIC_KEY_NAME)
    server.start()
    restarted = threading.Event()
    try:
        with FaultProxy(server.url) as proxy:
            killed: list[int] = []

            def restart() -> None:
                server.kill()  # SIGKILL, mid-upload: requests in flight die with it
                time.sleep(1.0)
                url = server.start()
                proxy.upstream = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
                restarted.set()

            def on_progress(run: Run, p: Progress) -> None:
                if p.bytes_sent > 15 * CHUNK and not killed:
                    killed.append(p.bytes_sent)
                    threading.Thread(target=restart, daemon=True).start()

            run = contribute_through(endpoint(proxy), FolderDisc(folder), keys, on_progress=on_progress)
        assert restarted.is_set()
        assert "waiting" in run.states()
        arrived_intact(data, keys, tmp_path / "out", run, folder)
    finally:
        restarted.wait(20)
        server.stop()


def test_pause_stops_sending_and_resume_goes_on(net, tmp_path, keys) -> None:
    proxy, data = net
    folder = make_disc(tmp_path / "small", size=800_000)
    proxy.throttle(300_000)
    quiet: list[int] = []

    async def go() -> Run:
        run = prepare(endpoint(proxy), FolderDisc(folder), keys)
        paused = asyncio.Event()

        def on_progress(p: Progress) -> None:
            if p.bytes_sent > 3 * CHUNK and not paused.is_set():
                paused.set()
                run.contribution.pause()

        run.contribution._on_progress = lambda p: (run.progress.append(p), on_progress(p))
        task = asyncio.ensure_future(finish(run))
        await paused.wait()
        await asyncio.sleep(0.3)  # aborted requests finish dying
        before = len(proxy.requests)
        await asyncio.sleep(1.0)
        quiet.append(len(proxy.requests) - before)
        assert run.contribution.state == "paused" and run.progress[-1].state == "paused"
        assert run.transport.in_flight.get("partial", 0) == 0  # aborted, not left to run
        run.contribution.resume()
        return await task

    run = asyncio.run(go())
    assert quiet == [0]  # not a single request while paused
    arrived_intact(data, keys, tmp_path / "out", run, folder)
    states = run.states()
    assert states.index("paused") < len(states) - 1 - states[::-1].index("sending")


def test_paused_before_it_starts_it_sends_nothing_until_resumed(net, tmp_path, keys) -> None:
    """The patient pressed Pause while the page was still starting: "Carry on" on screen
    must mean nothing is being sent."""
    proxy, data = net
    folder = make_disc(tmp_path / "small", size=300_000)

    async def go() -> tuple[Run, int]:
        run = prepare(endpoint(proxy), FolderDisc(folder), keys)
        run.contribution.pause()
        task = asyncio.ensure_future(finish(run))
        await asyncio.sleep(0.5)  # time for requests to go out, were any let through
        sent_while_paused = len(proxy.requests)
        assert run.progress and run.progress[-1].state == "paused"
        run.contribution.resume()
        return await task, sent_while_paused

    run, sent_while_paused = asyncio.run(go())
    assert sent_while_paused == 0
    arrived_intact(data, keys, tmp_path / "out", run, folder)


def test_cancel_deletes_everything_the_server_holds(net, tmp_path, keys, folder, capsys) -> None:
    proxy, data = net
    proxy.throttle(2_000_000)

    async def go() -> Run:
        run = prepare(endpoint(proxy), FolderDisc(folder), keys)
        halfway = asyncio.Event()

        def on_progress(p: Progress) -> None:
            run.progress.append(p)
            if p.bytes_sent > 8 * CHUNK:
                halfway.set()

        run.contribution._on_progress = on_progress
        task = asyncio.ensure_future(finish(run))
        await halfway.wait()
        assert len([u for u in all_uploads(data) if u.partial]) >= 8
        await run.contribution.cancel()
        return await task

    run = asyncio.run(go())
    assert isinstance(run.error, ContributionCancelled)
    assert "cancelled" in str(run.error) and "HTTP" not in str(run.error)
    assert run.records[-1] is None  # nothing to resume
    assert run.transport.count("DELETE") >= 8
    assert all_uploads(data) == []
    assert main(["list", "--data", str(data)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []  # `pcir-upload list`: nothing


def test_giving_up_is_said_plainly_and_keeps_the_record(net, folder, keys) -> None:
    proxy, data = net
    from pcir_upload.page.upload.tus import Retry

    def on_progress(run: Run, p: Progress) -> None:
        if p.bytes_sent > 5 * CHUNK:
            proxy.answer(503, count=10_000)

    run = contribute_through(endpoint(proxy), FolderDisc(folder), keys, on_progress=on_progress,
                             retry=Retry(first_delay=0.05, max_delay=0.2, give_up_after=1.5))
    assert run.error is not None and "kept failing" in str(run.error)
    assert "503" not in str(run.error)
    assert run.record is not None and run.record["chunks"] >= 5  # "try again" can resume
