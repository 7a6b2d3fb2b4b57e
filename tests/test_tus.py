"""The upload state machines against the real receiver, with faults put between them: lost
answers, lost requests, bodies cut halfway, temporary refusals, stalls, a network that goes
away, a patient who pauses. Whatever happens, the stored upload must hold every byte once,
in order. Time is simulated (sleeps advance a clock), so the patience rules are exact."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest

from pcir_upload.repository.receive.store import all_uploads, completed_uploads
from pcir_upload.page.upload.tus import (
    Link, Pace, Partial, PartialState, Response, Retry, Server, State, Target, TransportError, Upload,
    UploadError, concatenate, discover,
)
from support import HttpxTransport, receiver

SECRET = "s" * 43


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data = tmp_path / "data"
    with receiver(data, tmp_path, bytes(32), max_upload_size=10_000_000) as url:
        yield url + "/files/", data


Fault = Callable[[str, Mapping[str, str], bytes | None, int], str | None]


class FaultyTransport(HttpxTransport):
    """The real transport, with a fault chosen per request: what the network might do."""

    def __init__(self, fault: Fault):
        super().__init__()
        self.fault = fault
        self.count = 0
        self.log: list[tuple[str, int]] = []

    async def request(self, method, url, headers, body=None) -> Response:
        self.count += 1
        self.log.append((method, len(body or b"")))
        what = self.fault(method, headers, body, self.count)
        if what == "drop-request":
            raise TransportError("connection refused")
        if what == "cut-body":  # half the body arrives, then the connection breaks
            await super().request(method, url, headers, body[: len(body) // 2])
            raise TransportError("connection reset")
        if what == "busy":
            return Response(503, {"retry-after": "0"})
        if what == "stall":
            await asyncio.sleep(3600)
        response = await super().request(method, url, headers, body)
        if what == "drop-answer":
            raise TransportError("timed out")
        return response


class FakeTime:
    """A clock that sleeps advance, so that minutes of backoff take no time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


CHUNKS = [os.urandom(50_000) for _ in range(4)]
PLAIN = Server(frozenset({"creation", "creation-defer-length", "termination"}))
CHECKSUMMED = Server(frozenset({"creation", "creation-defer-length", "checksum"}), frozenset({"sha256"}))


def make_link(transport, time: FakeTime, **options) -> Link:
    return Link(transport, sleep=time.sleep, clock=time.clock, **options)


def upload_all(endpoint: str, fault: Fault, server: Server = PLAIN, **options) -> tuple[Upload, FaultyTransport, FakeTime]:
    transport = FaultyTransport(fault)
    time = FakeTime()
    upload = Upload(make_link(transport, time, **options), Target(endpoint, server))

    async def run() -> None:
        try:
            await upload.create()
            for i, chunk in enumerate(CHUNKS):
                await upload.append(chunk, final=i == len(CHUNKS) - 1)
        finally:
            await transport.close()

    asyncio.run(run())
    return upload, transport, time


def stored(data: Path) -> bytes:
    (upload,) = completed_uploads(data)
    return upload.data_path.read_bytes()


def on(method: str, numbers: set[int], what: str) -> Fault:
    seen = 0

    def fault(m, headers, body, count):
        nonlocal seen
        if m != method:
            return None
        seen += 1
        return what if seen in numbers else None

    return fault


# --- one upload, appended in order (servers without concatenation)


def test_a_clean_upload(endpoint) -> None:
    url, data = endpoint
    upload, transport, _ = upload_all(url, lambda *a: None)
    assert upload.state is State.DONE and upload.offset == sum(map(len, CHUNKS))
    assert stored(data) == b"".join(CHUNKS)
    assert [m for m, _ in transport.log] == ["POST"] + ["PATCH"] * 4


@pytest.mark.parametrize("server", [PLAIN, CHECKSUMMED], ids=["plain", "checksummed"])
@pytest.mark.parametrize("what", ["drop-answer", "drop-request", "cut-body", "busy"])
def test_faults_lose_and_duplicate_nothing(endpoint, what, server) -> None:
    url, data = endpoint
    upload, transport, _ = upload_all(url, on("PATCH", {2, 4}, what), server)
    assert upload.state is State.DONE
    assert stored(data) == b"".join(CHUNKS)
    assert upload.retries == 2
    resent = sum(n for m, n in transport.log if m == "PATCH") - sum(map(len, CHUNKS))
    if what == "drop-answer":
        assert resent == 0  # the server had it all: HEAD said so, nothing was sent again
        assert [m for m, _ in transport.log].count("HEAD") == 2
    # (The log counts a cut request's whole body; half of it arrived.)
    if what == "cut-body" and server is PLAIN:
        assert resent == len(CHUNKS[1]) // 2 + len(CHUNKS[3]) // 2  # only the missing halves
    if what == "cut-body" and server is CHECKSUMMED:
        # A checksummed body that did not arrive whole is not kept: the whole of it again.
        assert resent == len(CHUNKS[1]) + len(CHUNKS[3])


def test_retry_after_is_respected_in_seconds_and_as_a_date(endpoint) -> None:
    url, _ = endpoint
    _, _, time = upload_all(url, on("PATCH", {1}, "busy"))
    assert time.sleeps == [0.0]

    calls = 0

    def busy_until(method, headers, body, count):
        nonlocal calls
        return "date" if method == "PATCH" and (calls := calls + 1) == 1 else None

    class DatedBusy(FaultyTransport):
        async def request(self, method, url, headers, body=None) -> Response:
            if self.fault(method, headers, body, 0) == "date":
                return Response(429, {"retry-after": formatdate(__import__("time").time() + 120, usegmt=True)})
            return await super().request(method, url, headers, body)

    transport = DatedBusy(busy_until)
    fake = FakeTime()
    upload = Upload(make_link(transport, fake), Target(url, PLAIN))

    async def run() -> None:
        await upload.create()
        await upload.append(b"x" * 10, final=True)
        await transport.close()

    asyncio.run(run())
    assert len(fake.sleeps) == 1 and 115 < fake.sleeps[0] <= 120


def test_backoff_grows_with_jitter_and_then_gives_up_in_plain_words(endpoint) -> None:
    url, _ = endpoint
    with pytest.raises(UploadError, match="kept failing") as failure:
        upload_all(url, on("PATCH", set(range(1, 1000)), "drop-request"),
                   retry=Retry(first_delay=1.0, max_delay=30.0, give_up_after=300.0))
    assert "HTTP" not in str(failure.value)


def test_backoff_delays(endpoint) -> None:
    url, _ = endpoint
    transport = FaultyTransport(on("PATCH", set(range(1, 1000)), "drop-request"))
    fake = FakeTime()
    link = make_link(transport, fake, retry=Retry(1.0, 30.0, 300.0), jitter=lambda: 0.5)
    upload = Upload(link, Target(url, PLAIN))

    async def run() -> None:
        await upload.create()
        with pytest.raises(UploadError, match="kept failing"):
            await upload.append(b"x" * 10, final=True)
        await transport.close()

    asyncio.run(run())
    assert fake.sleeps[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]  # doubling, capped
    assert 300.0 <= sum(fake.sleeps) <= 330.0  # gave up once patience ran out


def test_jitter_spreads_the_delays(endpoint) -> None:
    url, _ = endpoint
    transport = FaultyTransport(on("PATCH", set(range(1, 5)), "drop-request"))
    fake = FakeTime()
    upload = Upload(make_link(transport, fake, retry=Retry(at_once=0)), Target(url, PLAIN))

    async def run() -> None:
        await upload.create()
        await upload.append(b"x" * 10, final=True)
        await transport.close()

    asyncio.run(run())
    bases = [1.0, 2.0, 4.0, 8.0]
    assert all(0.5 * b <= s <= 1.5 * b for s, b in zip(fake.sleeps, bases))
    assert [s / b for s, b in zip(fake.sleeps, bases)] != [1.0] * 4


def test_progress_restores_patience(endpoint) -> None:
    """Failures spread over a long upload are not added up: each confirmed byte starts over."""
    url, data = endpoint
    chunks = [os.urandom(1000) for _ in range(30)]
    transport = FaultyTransport(on("PATCH", set(range(1, 200, 2)), "drop-request"))
    fake = FakeTime()
    upload = Upload(make_link(transport, fake, retry=Retry(10.0, 10.0, 25.0, at_once=0), jitter=lambda: 0.5),
                    Target(url, PLAIN))

    async def run() -> None:
        await upload.create()
        for i, chunk in enumerate(chunks):
            await upload.append(chunk, final=i == len(chunks) - 1)
        await transport.close()

    asyncio.run(run())
    assert stored(data) == b"".join(chunks)
    assert fake.now == 300.0  # 30 failures of 10 s: far beyond 25 s, but never in a row


def test_a_server_that_lost_confirmed_bytes_is_an_error(endpoint) -> None:
    url, data = endpoint

    def truncate_after_second_chunk(method, headers, body, count):
        if method == "PATCH" and headers["Upload-Offset"] == str(2 * len(CHUNKS[0])):
            (folder,) = (data / "uploads").iterdir()
            with open(folder / "data", "r+b") as f:
                f.truncate(10)  # the server lost what it had confirmed
            return "drop-answer"
        return None

    with pytest.raises(UploadError, match="lost part of the upload"):
        upload_all(url, truncate_after_second_chunk)


def test_too_large_is_said_plainly(tmp_path) -> None:
    data = tmp_path / "data"
    with receiver(data, tmp_path, bytes(32), max_upload_size=120_000) as url:
        with pytest.raises(UploadError, match="cannot accept a contribution this large"):
            upload_all(url + "/files/", lambda *a: None)


def test_a_stalled_request_times_out_and_is_retried(endpoint) -> None:
    url, data = endpoint
    transport = FaultyTransport(on("PATCH", {2}, "stall"))
    fake = FakeTime()
    upload = Upload(make_link(transport, fake, timeout=lambda size: 0.3), Target(url, PLAIN))

    async def run() -> None:
        await upload.create()
        for i, chunk in enumerate(CHUNKS):
            await upload.append(chunk, final=i == len(CHUNKS) - 1)
        await transport.close()

    asyncio.run(asyncio.wait_for(run(), 20))
    assert stored(data) == b"".join(CHUNKS) and upload.retries == 1


def test_offline_waits_for_the_network_instead_of_spending_retries(endpoint) -> None:
    url, data = endpoint
    online = False
    waits: list[tuple[bool, float | None]] = []
    transport = FaultyTransport(lambda m, h, b, c: "drop-request" if not online else None)
    fake = FakeTime()

    async def run() -> None:
        nonlocal online
        back = asyncio.Event()

        async def wait_online() -> None:
            if not online:
                await back.wait()

        link = make_link(transport, fake, wait_online=wait_online, retry=Retry(1.0, 30.0, 10.0),
                         on_wait=lambda waiting, seconds: waits.append((waiting, seconds)))
        upload = Upload(link, Target(url, PLAIN))
        task = asyncio.ensure_future(upload.create())
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert not task.done() and waits == [(True, None)]  # waiting for the network, not retrying
        assert transport.count == 1
        fake.now += 3600  # an hour offline is no reason to give up
        online = True
        back.set()
        await task
        await upload.append(b"data", final=True)
        await transport.close()

    asyncio.run(run())
    assert waits == [(True, None), (False, None)]
    assert stored(data) == b"data"


# --- partial uploads (concatenation)


def partials(endpoint: str, fault: Fault, server: Server | None = None, chunks=CHUNKS, **options):
    transport = FaultyTransport(fault)
    time = FakeTime()
    link = make_link(transport, time, **options)

    async def run() -> tuple[list[Partial], str]:
        try:
            target = Target(endpoint, server or await discover(link, endpoint), SECRET)
            parts = [Partial(i, chunk) for i, chunk in enumerate(chunks)]
            for part in parts:
                await part.store(link, target)
            return parts, await concatenate(link, target, [p.url for p in parts])
        finally:
            await transport.close()

    parts, final = asyncio.run(run())
    return parts, final, transport


CONCAT = Server(frozenset({"creation", "creation-with-upload", "concatenation", "termination"}))
CONCAT_NO_BODY = Server(frozenset({"creation", "concatenation", "termination"}))


def test_partials_joined_in_order(endpoint) -> None:
    url, data = endpoint
    parts, final, transport = partials(url, lambda *a: None)
    assert all(p.state is PartialState.COMPLETE and p.data is None for p in parts)
    assert stored(data) == b"".join(CHUNKS)
    # Each partial is created empty, so its URL is known before any of its bytes travel.
    assert transport.log == [("OPTIONS", 0)] + [
        entry for chunk in CHUNKS for entry in (("POST", 0), ("PATCH", len(chunk)))] + [("POST", 0)]
    assert [u.id for u in all_uploads(data)] == [final.rsplit("/", 1)[1]]  # partials consumed


@pytest.mark.parametrize("what", ["drop-answer", "drop-request", "busy"])
def test_partial_faults(endpoint, what) -> None:
    url, data = endpoint
    creations = 0

    def fault(method, headers, body, count):
        nonlocal creations
        if method == "POST" and headers.get("Upload-Concat") == "partial":
            creations += 1
            return what if creations in (2, 4) else None
        return None

    parts, _, transport = partials(url, fault)
    assert stored(data) == b"".join(CHUNKS)
    assert creations == len(CHUNKS) + 2  # a lost creation is a new partial: no Location to ask
    assert sum(n for m, n in transport.log if m == "PATCH") == sum(map(len, CHUNKS))  # and costs no byte
    assert "HEAD" not in [m for m, _ in transport.log]
    orphans = [u for u in all_uploads(data) if u.partial]
    assert len(orphans) == (2 if what == "drop-answer" else 0)  # left for the server to expire


@pytest.mark.parametrize("checksum", [False, True])
def test_a_cut_patch_into_a_partial_resends_only_what_is_missing(endpoint, checksum) -> None:
    url, data = endpoint
    server = Server(CONCAT_NO_BODY.extensions | ({"checksum"} if checksum else set()),
                    frozenset({"sha256"}) if checksum else frozenset())
    parts, _, transport = partials(url, on("PATCH", {2}, "cut-body"), server)
    assert stored(data) == b"".join(CHUNKS)
    methods = [m for m, _ in transport.log]
    assert methods.count("HEAD") == 1  # asked before sending again
    resent = sum(n for m, n in transport.log if m == "PATCH") - sum(map(len, CHUNKS))
    half = len(CHUNKS[1]) // 2  # the log counts the cut request's whole body
    assert resent == (len(CHUNKS[1]) if checksum else half)


KiB = 1024


def test_pieces_grow_while_they_arrive_and_shrink_after_cuts() -> None:
    pace = Pace()
    sizes = [pace.size]
    for _ in range(8):
        pace.carried(pace.size, 0.0)
        sizes.append(pace.size)
    assert sizes == [256 * KiB * 2**i for i in range(7)] + [16 * 1024 * KiB] * 2  # up to a chunk
    pace.cut()
    assert pace.size <= 8 * 1024 * KiB  # halved (or an eighth of what came before the cut)
    for _ in range(10):
        pace.cut()
    assert pace.size == 64 * KiB  # never below the floor
    # A link that drops after every megabyte or so: pieces stay at an eighth of what got through.
    for _ in range(5):
        while True:
            pace.carried(pace.size, 0.0)
            if pace._since_cut >= 1024 * KiB:
                break
        pace.cut()
    pace.carried(pace.size, 0.0)
    assert pace.size <= 256 * KiB
    # A slow link: a piece takes no more than a few seconds at the speed pieces arrive.
    slow = Pace()
    slow.carried(256 * KiB, 1.0)  # 256 KiB/s: a second of it
    assert slow.size == 256 * KiB


def test_a_chunk_goes_in_growing_pieces_and_a_cut_costs_only_its_piece(endpoint) -> None:
    url, data = endpoint
    chunk = os.urandom(1_500_000)
    server = Server(CONCAT_NO_BODY.extensions | {"checksum"}, frozenset({"sha256"}))
    parts, _, transport = partials(url, on("PATCH", {3}, "cut-body"), server, chunks=[chunk])
    assert stored(data) == chunk
    patches = [n for m, n in transport.log if m == "PATCH"]
    assert patches[:2] == [256 * KiB, 512 * KiB]
    # The third piece was cut: it is sent again (smaller), nothing before it is.
    assert sum(patches) - len(chunk) == patches[2]
    assert [m for m, _ in transport.log].count("HEAD") == 1


def test_a_cut_on_a_link_that_answers_again_is_tried_again_at_once(endpoint) -> None:
    url, data = endpoint
    waits: list[tuple[bool, float | None]] = []
    upload, transport, time = upload_all(
        url, on("PATCH", {1, 2, 4, 6}, "cut-body"), CHECKSUMMED,
        on_wait=lambda waiting, seconds: waits.append((waiting, seconds)))
    assert stored(data) == b"".join(CHUNKS)
    assert time.sleeps == [] and waits == []  # never "trying again in N s"
    assert upload.retries == 4


def test_backoff_only_while_the_server_stays_away(endpoint) -> None:
    url, data = endpoint
    upload, transport, time = upload_all(url, on("PATCH", set(range(1, 7)), "drop-request"),
                                         jitter=lambda: 0.5)
    assert stored(data) == b"".join(CHUNKS)
    assert time.sleeps == [1.0, 2.0, 4.0]  # three at once, then waits that grow


def test_a_conflict_is_resolved_by_asking_at_once(endpoint) -> None:
    """409: our idea of the offset is wrong (here: the same bytes arrived by another way)."""
    url, data = endpoint
    transport = FaultyTransport(lambda *a: None)
    fake = FakeTime()
    upload = Upload(make_link(transport, fake), Target(url, PLAIN))

    async def run() -> None:
        await upload.create()
        await upload.append(CHUNKS[0], final=False)
        httpx.patch(upload.url, content=CHUNKS[1][:100], headers={
            "Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(len(CHUNKS[0]))})
        await upload.append(CHUNKS[1], final=True)
        await transport.close()

    asyncio.run(run())
    assert stored(data) == CHUNKS[0] + CHUNKS[1]
    assert [m for m, _ in transport.log] == ["POST", "PATCH", "PATCH", "HEAD", "PATCH"]
    assert transport.log[-1] == ("PATCH", len(CHUNKS[1]) - 100)
    assert fake.sleeps == []  # no waiting: a conflict is news, not a failure


def test_a_partial_gone_before_it_was_complete_is_sent_again(endpoint) -> None:
    url, data = endpoint
    transport = FaultyTransport(lambda *a: None)
    fake = FakeTime()

    async def run() -> None:
        link = make_link(transport, fake)
        target = Target(url, CONCAT_NO_BODY, SECRET)
        part = Partial(0, CHUNKS[0])
        answer = await link.request("POST", url, target.headers(**{"Upload-Concat": "partial", "Upload-Length": str(len(CHUNKS[0]))}))
        part.url = target.resolve(answer.headers["location"])
        part.state = PartialState.STORING
        assert httpx.delete(part.url, headers=target.headers()).status_code == 204  # expired, say
        await part.store(link, target)
        assert await concatenate(link, target, [part.url])
        await transport.close()

    asyncio.run(run())
    assert stored(data) == CHUNKS[0]
    assert [m for m, _ in transport.log] == ["POST", "HEAD", "POST", "PATCH", "POST"], transport.log  # asked, then anew


def test_partials_carry_the_secret_and_answer_only_to_it(endpoint) -> None:
    url, data = endpoint
    seen: list[str | None] = []
    parts, final, _ = partials(url, lambda m, h, b, c: seen.append(h.get("Pcir-Upload-Secret")))
    assert set(seen[1:]) == {SECRET}  # every request after OPTIONS
    assert httpx.head(final, headers={"Tus-Resumable": "1.0.0"}).status_code == 404
    assert httpx.head(final, headers={"Tus-Resumable": "1.0.0", "Pcir-Upload-Secret": SECRET}).status_code == 200


def test_a_lost_final_answer_is_asked_again_with_the_same_list(endpoint) -> None:
    url, data = endpoint

    def fault(method, headers, body, count):
        return "drop-answer" if headers.get("Upload-Concat", "").startswith("final;") and not fault.done else None

    fault.done = False  # type: ignore[attr-defined]
    transport = FaultyTransport(fault)
    fake = FakeTime()

    async def run() -> str:
        link = make_link(transport, fake)
        target = Target(url, CONCAT, SECRET)
        parts = [Partial(i, c) for i, c in enumerate(CHUNKS)]
        for p in parts:
            await p.store(link, target)
        original = transport.fault

        def once(method, headers, body, count):
            what = original(method, headers, body, count)
            if what:
                fault.done = True  # type: ignore[attr-defined]
            return what

        transport.fault = once
        final = await concatenate(link, target, [p.url for p in parts])
        await transport.close()
        return final

    final = asyncio.run(run())
    finals = [u for u in all_uploads(data)]
    assert [u.id for u in finals] == [final.rsplit("/", 1)[1]]  # one final upload, not two
    assert stored(data) == b"".join(CHUNKS)


def test_pause_aborts_the_request_in_flight_and_sends_nothing_until_resumed(endpoint) -> None:
    url, data = endpoint

    class Slow(HttpxTransport):
        def __init__(self) -> None:
            super().__init__()
            self.log: list[str] = []
            self.aborted = 0

        async def request(self, method, url, headers, body=None):
            self.log.append(method)
            if method == "POST" and len(self.log) == 2:
                try:
                    await asyncio.sleep(3600)  # a slow link: the POST is still going
                except asyncio.CancelledError:
                    self.aborted += 1
                    raise
            return await super().request(method, url, headers, body)

    transport = Slow()

    async def run() -> None:
        link = Link(transport)
        target = Target(url, await discover(link, url), SECRET)
        part = Partial(0, CHUNKS[0])
        task = asyncio.ensure_future(part.store(link, target))
        await asyncio.sleep(0.1)
        link.pause()
        await asyncio.sleep(0.2)
        assert transport.aborted == 1 and transport.log == ["OPTIONS", "POST"] and not task.done()
        link.resume()
        await asyncio.wait_for(task, 10)
        await concatenate(link, target, [part.url])
        await transport.close()

    asyncio.run(run())
    assert stored(data) == CHUNKS[0]
