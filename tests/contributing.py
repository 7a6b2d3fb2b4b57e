"""What the fault and resumption tests share: a generated disc of a few MiB that makes many
small chunks, a transport that counts what it sends (and can lose answers), and running one
`Contribution` to the end or to wherever a test stops it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pcir_upload.page.upload.contribution import Contribution, Progress, Receipt
from pcir_upload.page.seal.envelope import SUITE_HYBRID, Recipient
from pcir_upload.page.package.package import LocalPacker
from pcir_upload.repository.receive.store import all_uploads
from pcir_upload.page.upload.tus import Response, Retry, TransportError
from pcir_upload.repository.unpack import unpack_all
from support import FolderDisc, HttpxTransport, PycaPrimitives, files_of

CHUNK = 64 * 1024
QUICK = Retry(first_delay=0.05, max_delay=0.5, give_up_after=60.0)
MANIFEST = {"terms": {"version": "test", "agreed": "2026-11-25T00:00:00Z"}, "summary": {"files": 0}}


def make_disc(root: Path, size: int = 3 * 1024 * 1024, seed: int = 7) -> Path:
    """A folder like a small disc: mostly incompressible image data, some text, an empty file,
    nested folders. `size` bytes of images, cut into files of uneven sizes."""
    rng = random.Random(seed)
    (root / "IMAGES" / "SER1").mkdir(parents=True)
    (root / "IMAGES" / "SER2").mkdir(parents=True)
    left, n = size, 0
    while left > 0:
        take = min(left, rng.randint(50_000, 700_000))
        (root / "IMAGES" / f"SER{1 + n % 2}" / f"IM{n:04d}").write_bytes(rng.randbytes(take))
        left -= take
        n += 1
    (root / "README.TXT").write_text("Viewer instructions.\n" * 2000)
    (root / "EMPTY").write_bytes(b"")
    return root


@dataclass
class Sent:
    method: str
    url: str
    headers: Mapping[str, str]
    body: int
    start: float
    end: float = 0.0


class CountingTransport(HttpxTransport):
    """httpx, counting every request and how many are in flight; `lose(method, headers)`
    chooses requests whose answer is lost after the server acted on them."""

    def __init__(self, lose: Callable[[str, Mapping[str, str]], bool] = lambda m, h: False):
        super().__init__(timeout=30.0)
        self.lose = lose
        self.sent: list[Sent] = []
        self.in_flight: dict[str, int] = {}
        self.most_in_flight: dict[str, int] = {}
        self.lost = 0

    async def request(self, method, url, headers, body=None) -> Response:
        record = Sent(method, url, dict(headers), len(body or b""), time.monotonic())
        self.sent.append(record)
        kind = _kind(method, headers)
        self.in_flight[kind] = self.in_flight.get(kind, 0) + 1
        self.most_in_flight[kind] = max(self.most_in_flight.get(kind, 0), self.in_flight[kind])
        try:
            response = await super().request(method, url, headers, body)
            if self.lose(method, headers):
                self.lost += 1
                raise TransportError("the answer was lost")
            return response
        finally:
            record.end = time.monotonic()
            self.in_flight[kind] -= 1

    def count(self, kind: str) -> int:
        return sum(1 for s in self.sent if _kind(s.method, s.headers) == kind)


def _kind(method: str, headers: Mapping[str, str]) -> str:
    """"partial" and "final" for the two kinds of creation, else the method."""
    concat = headers.get("Upload-Concat", "")
    if method == "POST" and concat == "partial":
        return "partial"
    if method == "POST" and concat.startswith("final;"):
        return "final"
    return method


@dataclass
class Run:
    """One contribution as a test sees it."""

    contribution: Contribution
    transport: CountingTransport
    progress: list[Progress] = field(default_factory=list)
    records: list[dict[str, Any] | None] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    receipt: Receipt | None = None
    error: BaseException | None = None

    @property
    def record(self) -> dict[str, Any] | None:
        return self.records[-1] if self.records else None

    def states(self) -> list[str]:
        return [p.state for p in self.progress]


def prepare(
    endpoint: str,
    disc: FolderDisc,
    keys: Any,
    *,
    transport: CountingTransport | None = None,
    manifest: dict[str, Any] | None = None,
    on_progress: Callable[[Run, Progress], None] | None = None,
    **options: Any,
) -> Run:
    """A Contribution wired to record everything; call inside the event loop."""
    transport = transport or CountingTransport()
    run = Run(None, transport)  # type: ignore[arg-type]

    def progressed(p: Progress) -> None:
        run.progress.append(p)
        if on_progress is not None:
            on_progress(run, p)

    def save(record: dict[str, Any] | None) -> None:
        if record is not None:
            json.dumps(record)  # JSON-serialisable, as localStorage needs
        run.records.append(record)

    options.setdefault("chunk_size", CHUNK)
    options.setdefault("retry", QUICK)
    run.contribution = Contribution(
        listing=disc.listing, packer=LocalPacker(disc), manifest=manifest if manifest is not None else MANIFEST,
        recipient=Recipient(SUITE_HYBRID, keys.public.hybrid), primitives=PycaPrimitives(),
        transport=transport, endpoint=endpoint, on_progress=progressed, save_record=save,
        on_notice=run.notices.append, **options,
    )
    return run


async def finish(run: Run) -> Run:
    """Run to the end; a failure is kept in run.error rather than raised."""
    try:
        run.receipt = await run.contribution.run()
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        run.error = exc
    finally:
        await run.transport.close()
    return run


def contribute_through(endpoint: str, disc: FolderDisc, keys: Any, **options: Any) -> Run:
    """One whole contribution in its own event loop."""

    async def go() -> Run:
        return await finish(prepare(endpoint, disc, keys, **options))

    return asyncio.run(go())


def arrived_intact(data: Path, keys: Any, out: Path, run: Run, source: Path) -> dict[str, Any]:
    """Unpack everything the receiver completed: exactly this one contribution, every file
    byte for byte. Returns its manifest."""
    assert run.error is None, run.error
    assert run.receipt is not None
    reports: list[str] = []
    assert unpack_all(data, keys.private, out, reports.append), reports
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == [run.receipt.contribution_id]
    contribution = out / run.receipt.contribution_id
    assert files_of(contribution / "files") == files_of(source)
    complete = [u for u in all_uploads(data) if u.finished]
    assert len(complete) == 1
    assert complete[0].length == run.receipt.bytes_sent
    return json.loads((contribution / "manifest.json").read_text())


def orphans(data: Path) -> list[Any]:
    """Partial uploads the server still holds (left to expire: their creation answer was lost)."""
    return [u for u in all_uploads(data) if u.partial]


def interrupted(endpoint: str, disc: FolderDisc, keys: Any, when: Callable[[Run], bool], **options: Any) -> Run:
    """A contribution stopped as a closed page stops it: its task cancelled, no goodbye, as
    soon as `when(run)` holds (checked on every progress report, and every few ms). The
    record saved by then is kept."""

    async def go() -> Run:
        stop = asyncio.Event()
        run = prepare(endpoint, disc, keys, on_progress=lambda run, p: when(run) and stop.set(), **options)
        task = asyncio.ensure_future(finish(run))
        while not (stop.is_set() or task.done() or when(run)):
            await asyncio.wait({task, asyncio.ensure_future(stop.wait())}, timeout=0.005)
        assert not task.done(), "the contribution finished before it could be interrupted"
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return run

    return asyncio.run(go())


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]
