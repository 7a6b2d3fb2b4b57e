"""Closing the page is recoverable: a contribution stopped as a closed page stops it (its task
cancelled) leaves a resumption record; a new session with the same disc and the record sends
only what the server does not hold yet. A different disc, a changed file, partials gone or
expired: a new contribution, said plainly, the old partials deleted. And the record holds
nothing readable: no names, no keys."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from contributing import (
    CHUNK, MANIFEST, CountingTransport, Run, arrived_intact, contribute_through, finish,
    interrupted, make_disc, orphans, prepare, upload_id,
)
from faultproxy import FaultProxy
from pcir_upload.page.upload.contribution import ContributionCancelled, Progress
from pcir_upload.page.disc.disc import DiscFile
from pcir_upload.page.package.levels import HIGHEST, LOWEST, Levels
from pcir_upload.page.seal.envelope import HEADER_SIZE, SUITE_HYBRID, message_overhead
from pcir_upload.page.package.package import AHEAD_BYTES, LocalPacker, Packager
from pcir_upload.page.upload.resumption import (
    CONTINUING, DIFFERENT_DISC, DISC_CHANGED, KEY_CHANGED, PARTS_GONE, UNUSABLE, Other, Record,
    RecordError, disc_fingerprint, new_secret,
)
from pcir_upload.repository.receive.store import all_uploads
from support import FolderDisc, receiver


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_disc(tmp_path / "disc")


@pytest.fixture
def server(tmp_path: Path, keys):
    """The receiver behind the fault proxy (which counts the requests): (endpoint, data, proxy)."""
    data = tmp_path / "data"
    with receiver(data, tmp_path, keys.public) as url, FaultProxy(url) as proxy:
        yield proxy.url + "/files/", data, proxy


def after_chunks(n: int):
    return lambda run: run.record is not None and run.record["chunks"] >= n


def partial_posts(proxy: FaultProxy, since: int = 0) -> int:
    """Creations seen by the proxy: POSTs to the endpoint, less the one final."""
    return sum(1 for m, path in proxy.requests[since:] if m == "POST" and path == "/files/")


def recorded(record: dict[str, Any]) -> list[str]:
    return record["parts"].split() + [o[1] for o in record["others"]]


def held(data: Path) -> set[str]:
    return {u.id for u in all_uploads(data)}


def unknown_to(record: dict[str, Any], endpoint: str, data: Path) -> set[str]:
    """Partials the server holds that the record does not name: a request in flight when the
    page closed may have been stored without its answer arriving. Nobody knows of such a
    partial, and the server expires it."""
    time.sleep(0.5)  # the server finishes storing what arrived whole
    return held(data) - {upload_id(endpoint + r) for r in recorded(record)}


# --- a new session continues


def test_a_new_session_sends_only_the_missing_chunks(server, folder, keys, tmp_path) -> None:
    endpoint, data, proxy = server
    first = interrupted(endpoint, FolderDisc(folder), keys, after_chunks(20))
    record = first.record
    assert record is not None and record["chunks"] >= 20
    have = len(recorded(record))
    assert set(map(upload_id, [endpoint + r for r in recorded(record)])) <= held(data)

    mark = len(proxy.requests)
    second = contribute_through(endpoint, FolderDisc(folder), keys, resume=record)
    manifest = arrived_intact(data, keys, tmp_path / "out", second, folder)
    assert second.notices == [CONTINUING]
    assert second.receipt.contribution_id == record["contribution_id"] == manifest["contribution_id"]
    assert second.receipt.resumed_chunks == have
    assert partial_posts(proxy, mark) - 1 == second.receipt.chunks - have  # only the missing ones
    assert second.transport.count("HEAD") == have  # each recorded partial asked about, once
    assert second.records[-1] is None
    # The manifest is what the first session would have written: same id, same time.
    assert manifest["created"] == record["created"]
    assert manifest["terms"] == MANIFEST["terms"]
    done = [p.disc_bytes_done for p in second.progress]
    assert done == sorted(done)


def compressible_disc(root: Path, files: int = 16, size: int = 400_000) -> Path:
    """Files that Zstandard shrinks by about half, differently at each level."""
    rng = random.Random(3)
    root.mkdir(parents=True)
    for n in range(files):
        (root / f"IM{n:04d}").write_bytes(bytes(rng.choice(b"abcdefghijklmnop") for _ in range(size)))
    return root


def test_a_resume_across_a_level_change_regenerates_the_same_bytes(server, keys, tmp_path, monkeypatch) -> None:
    """The first session's levels change from file to file; the second's controller would
    choose others. The record's levels rule the files it covers, so the chunks sent match."""
    endpoint, data, _ = server
    folder = compressible_disc(tmp_path / "disc")

    def stepping(self: Levels) -> None:  # every file a level up: a link that is ever slower
        self._level = min(self._level + 1, HIGHEST)

    monkeypatch.setattr(Levels, "_adjust", stepping)
    first = interrupted(endpoint, FolderDisc(folder), keys, after_chunks(12))
    record = first.record
    assert record is not None and len(record["levels"]["runs"]) >= 3, record["levels"]

    def falling(self: Levels) -> None:  # every file a level down: packers that are ever slower
        self._level = max(self._level - 1, LOWEST)

    monkeypatch.setattr(Levels, "_adjust", falling)
    second = contribute_through(endpoint, FolderDisc(folder), keys, resume=record)
    arrived_intact(data, keys, tmp_path / "out", second, folder)
    assert second.notices == [CONTINUING]
    assert second.receipt.resumed_chunks == len(recorded(record))


def test_a_record_after_every_confirmed_chunk_and_nothing_readable_in_it(server, folder, keys) -> None:
    endpoint, data, _ = server
    run = interrupted(endpoint, FolderDisc(folder), keys, after_chunks(12))
    saved = [r for r in run.records if r is not None]
    record = run.record
    assert len(saved) == len(recorded(record)) >= 12  # one record per confirmed chunk
    assert set(record) == {
        "format", "version", "contribution_id", "secret", "created", "endpoint", "recipient",
        "chunk_size", "levels", "disc", "chunks", "sha256", "parts", "others",
    }
    text = json.dumps(record)
    for f in FolderDisc(folder).listing:  # no file name, no folder name
        assert f.path not in text and f.path.rsplit("/", 1)[-1] not in text
    assert keys.public.hybrid.hex() not in text and "PRIVATE" not in text
    assert len(record["secret"]) == 43 and record["chunk_size"] == CHUNK
    Record.from_json(json.loads(text))  # it survives storage as text


def test_the_record_is_saved_before_the_page_shows_a_chunk_as_sent(server, folder, keys, tmp_path) -> None:
    """A page closed the moment it shows progress has the record of every chunk it showed."""
    endpoint, data, _ = server
    sealed = CHUNK + HEADER_SIZE + message_overhead(SUITE_HYBRID)
    behind: list[tuple[int, int]] = []

    def check(run: Run, p: Progress) -> None:
        held = set(range(run.record["chunks"])) | {o[0] for o in run.record["others"]} if run.record else set()
        chunks = next(n for n in range(len(held) + 1) if n not in held)  # the recorded prefix
        if not p.done and chunks * sealed < p.bytes_sent:
            behind.append((chunks, p.bytes_sent))

    run = contribute_through(endpoint, FolderDisc(folder), keys, on_progress=check)
    arrived_intact(data, keys, tmp_path / "out", run, folder)
    assert not behind, f"progress shown before its record was saved: {behind[:3]}"


def test_the_record_of_a_dvd_stays_small() -> None:
    """4.7 GB of incompressible images in 8 MiB chunks: 561 partials."""
    n = -(-4_700_000_000 // (8 * 1024 * 1024))
    endpoint = "https://repository.example/files/"
    record = Record(
        os.urandom(16), new_secret(), "2026-12-01T09:41:07Z", endpoint, "ab" * 16, 8 * 1024 * 1024,
        os.urandom(16), disc_fingerprint(b"salt", [DiscFile("a", 1)]),
        levels=[(0, 4), (500, 2), (900, 3), (1400, 2)], leveled=2000, prefix_sha256="cd" * 32,
        prefix=[endpoint + os.urandom(24).hex()[:32] for _ in range(n - 1)],
        others=[Other(n - 1, endpoint + "x" * 32, "ef" * 32, True)],
    )
    size = len(json.dumps(record.to_json(), separators=(",", ":")))
    assert size < 20_000, size
    assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_records_this_code_did_not_write_are_refused() -> None:
    good = Record(
        os.urandom(16), new_secret(), "2026-12-01T09:41:07Z", "http://h/files/", "ab" * 16,
        65536, os.urandom(16), "hmac", levels=[(0, 2), (3, 4)], leveled=5, prefix_sha256="cd" * 32,
        prefix=["http://h/files/a"],
    ).to_json()
    Record.from_json(good)
    for field, value in [
        ("version", 1), ("version", 3), ("secret", "short"), ("chunks", 5), ("contribution_id", "xyz"),
        ("created", "yesterday"), ("chunk_size", -1), ("parts", 7),
        ("levels", {"runs": [[0, 12]], "files": 1}), ("levels", {"runs": [[0, 1]], "files": 1}), ("levels", {"runs": [[3, 1], [0, 2]], "files": 4}),
        ("levels", {"runs": [[0, 1, 2]], "files": 1}), ("levels", [[0, 1]]),
        ("others", [[0, "a", "cd" * 32, True]]), ("sha256", None),
    ]:
        with pytest.raises(RecordError):
            Record.from_json({**good, field: value})
    with pytest.raises(RecordError):
        Record.from_json("not a record")


def test_a_damaged_record_starts_a_new_contribution(server, folder, keys, tmp_path) -> None:
    endpoint, data, _ = server
    run = contribute_through(endpoint, FolderDisc(folder), keys, resume={"format": "pcir-resume", "version": 2})
    arrived_intact(data, keys, tmp_path / "out", run, folder)
    assert run.notices == [UNUSABLE]


# --- or starts again, saying why


def test_a_different_disc_starts_a_new_contribution(server, folder, keys, tmp_path) -> None:
    endpoint, data, _ = server
    first = interrupted(endpoint, FolderDisc(folder), keys, after_chunks(8))
    other = make_disc(tmp_path / "other", size=1_000_000, seed=99)
    second = contribute_through(endpoint, FolderDisc(other), keys, resume=first.record)
    arrived_intact(data, keys, tmp_path / "out", second, other)
    assert second.notices == [DIFFERENT_DISC]
    assert second.receipt.contribution_id != first.record["contribution_id"]
    assert second.receipt.resumed_chunks == 0
    gone = {upload_id(endpoint + r) for r in recorded(first.record)}
    assert not gone & held(data)  # the abandoned partials were deleted


@pytest.mark.parametrize("where", ["early", "late"])
def test_a_changed_file(server, folder, keys, tmp_path, where) -> None:
    """Changed where chunks were already sent: a new contribution, the old one deleted.
    Changed only past them: the same contribution goes on, and carries the file as it is now."""
    endpoint, data, _ = server
    first = interrupted(endpoint, FolderDisc(folder), keys, after_chunks(8), parallel=1)
    listing = [f for f in FolderDisc(folder).listing if f.size]
    target = folder / (listing[0].path if where == "early" else listing[-1].path)
    body = bytearray(target.read_bytes())
    body[len(body) // 2] ^= 0xFF  # same size: the listing (and so the fingerprint) is unchanged
    target.write_bytes(bytes(body))

    second = contribute_through(endpoint, FolderDisc(folder), keys, resume=first.record)
    arrived_intact(data, keys, tmp_path / "out", second, folder)
    old = {upload_id(endpoint + r) for r in recorded(first.record)}
    if where == "early":
        assert second.notices == [DISC_CHANGED]
        assert second.receipt.contribution_id != first.record["contribution_id"]
        assert not old & held(data)
    else:
        assert second.notices == [CONTINUING]
        assert second.receipt.contribution_id == first.record["contribution_id"]
        assert second.receipt.resumed_chunks == first.record["chunks"]


@pytest.mark.parametrize("how", ["missing", "expired"])
def test_partials_gone_or_expired_start_a_new_contribution(server, folder, keys, tmp_path, how) -> None:
    endpoint, data, _ = server
    first = interrupted(endpoint, FolderDisc(folder), keys, after_chunks(8))
    ids = [upload_id(endpoint + r) for r in recorded(first.record)]
    if how == "missing":
        victim = data / "uploads" / ids[3]
        (victim / "info.json").unlink()
        for f in victim.iterdir():
            f.unlink()
        victim.rmdir()
    else:
        week_ago = time.time() - 8 * 24 * 3600
        for i in ids:
            os.utime(data / "uploads" / i / "data", (week_ago, week_ago))
    second = contribute_through(endpoint, FolderDisc(folder), keys, resume=first.record)
    arrived_intact(data, keys, tmp_path / "out", second, folder)
    assert second.notices == [PARTS_GONE]
    assert second.receipt.contribution_id != first.record["contribution_id"]
    if how == "missing":
        assert not set(ids) & held(data)  # the rest was deleted


def test_a_changed_repository_key_starts_a_new_contribution(server, folder, keys, tmp_path) -> None:
    endpoint, data, _ = server
    first = interrupted(endpoint, FolderDisc(folder), keys, after_chunks(4))
    record = dict(first.record, recipient="00" * 16)
    second = contribute_through(endpoint, FolderDisc(folder), keys, resume=record)
    arrived_intact(data, keys, tmp_path / "out", second, folder)
    assert second.notices == [KEY_CHANGED]


# --- closed while finishing


@pytest.mark.parametrize("when", ["before-the-final", "final-answer-lost"])
def test_closed_while_joining(server, folder, keys, tmp_path, when) -> None:
    """Every chunk confirmed; the page closed before the final was asked for, or after the
    server made it but before its answer came. The next session joins (or learns it was
    joined) and sends no chunk again."""
    endpoint, data, _ = server
    small = make_disc(tmp_path / "small", size=400_000)

    class Closing(CountingTransport):
        async def request(self, method, url, headers, body=None):
            if headers.get("Upload-Concat", "").startswith("final;"):
                if when == "final-answer-lost":
                    await super().request(method, url, headers, body)
                self.joining = True
                await asyncio.sleep(3600)  # the page is closed while this waits
            return await super().request(method, url, headers, body)

    transport = Closing()
    transport.joining = False
    first = interrupted(endpoint, FolderDisc(small), keys, lambda run: transport.joining, transport=transport)
    assert first.record is not None
    second = contribute_through(endpoint, FolderDisc(small), keys, resume=first.record)
    arrived_intact(data, keys, tmp_path / "out", second, small)
    assert second.receipt.contribution_id == first.record["contribution_id"]
    assert second.transport.count("partial") == 0
    assert second.transport.count("final") == 1
    assert second.receipt.resumed_chunks == second.receipt.chunks


# --- the manifest is rebuilt


def big_summary() -> dict[str, Any]:
    rng = random.Random(5)
    return {"files": 9, "notes": [rng.randbytes(32).hex() for _ in range(1500)]}  # ~100 KB


@pytest.mark.parametrize("reason_again", [False, True])
def test_the_manifest_is_rebuilt_and_a_reason_is_sent_only_if_given_again(server, keys, tmp_path, reason_again) -> None:
    """The chunks holding the manifest were confirmed in the first session; the reason is not
    kept by the browser, so unless it is given again those chunks are sealed afresh."""
    endpoint, data, proxy = server
    small = make_disc(tmp_path / "small", size=300_000)
    # The reason first, so that the manifest differs from its first byte on (with it last,
    # the chunks before it would match, and be kept: also right, but not what this tests).
    with_reason = {"reason": "For research on my condition.", **MANIFEST, "summary": big_summary()}
    without = {k: v for k, v in with_reason.items() if k != "reason"}
    first = interrupted(
        endpoint, FolderDisc(small), keys, lambda run: run.record is not None and len(run.record["others"]) >= 2,
        manifest=with_reason, chunk_size=8 * 1024, parallel=1,
    )
    manifest_chunks = [o for o in first.record["others"]]
    assert all(not o[3] for o in manifest_chunks)  # not the final one yet
    unknown = unknown_to(first.record, endpoint, data)

    mark = len(proxy.requests)
    second = contribute_through(endpoint, FolderDisc(small), keys, resume=first.record,
                                manifest=with_reason if reason_again else without, chunk_size=8 * 1024)
    manifest = arrived_intact(data, keys, tmp_path / "out", second, small)
    assert second.notices == [CONTINUING]
    assert ("reason" in manifest) == reason_again
    assert manifest["summary"] == with_reason["summary"]
    have = second.receipt.resumed_chunks
    if reason_again:
        assert have == first.record["chunks"] + len(manifest_chunks)
    else:
        assert have == first.record["chunks"]  # every manifest chunk sealed afresh
    assert partial_posts(proxy, mark) - 1 == second.receipt.chunks - have
    assert {u.id for u in orphans(data)} <= unknown  # replaced ones were deleted, reused ones joined


# --- pause, cancel and the record


def test_cancelling_a_resumed_contribution_deletes_the_first_sessions_part_too(server, folder, keys) -> None:
    endpoint, data, proxy = server
    first = interrupted(endpoint, FolderDisc(folder), keys, after_chunks(10))
    unknown = unknown_to(first.record, endpoint, data)
    assert len(unknown) <= 2  # at most the two in flight
    proxy.throttle(1_000_000)

    async def go() -> Run:
        run = prepare(endpoint, FolderDisc(folder), keys, resume=first.record)
        sending = asyncio.Event()

        def on_progress(p: Progress) -> None:
            run.progress.append(p)
            if run.records and run.records[-1] is not None:
                sending.set()

        run.contribution._on_progress = on_progress
        task = asyncio.ensure_future(finish(run))
        await sending.wait()
        await run.contribution.cancel()
        return await task

    second = asyncio.run(go())
    assert isinstance(second.error, ContributionCancelled)
    assert second.records[-1] is None
    assert held(data) <= unknown


def test_pause_and_resume_keep_the_record_going(server, folder, keys, tmp_path) -> None:
    endpoint, data, proxy = server
    proxy.throttle(3_000_000)

    async def go() -> Run:
        run = prepare(endpoint, FolderDisc(folder), keys)
        paused = asyncio.Event()

        def on_progress(p: Progress) -> None:
            run.progress.append(p)
            if p.bytes_sent > 10 * CHUNK and not paused.is_set():
                paused.set()
                run.contribution.pause()

        run.contribution._on_progress = on_progress
        task = asyncio.ensure_future(finish(run))
        await paused.wait()
        await asyncio.sleep(0.3)
        saved = len(run.records)
        await asyncio.sleep(0.3)
        assert len(run.records) == saved and run.record["chunks"] >= 10
        run.contribution.resume()
        return await task

    run = asyncio.run(go())
    arrived_intact(data, keys, tmp_path / "out", run, folder)


# --- the package regenerates byte for byte


class ChoppyDisc(FolderDisc):
    """Answers every read with a random part of what was asked, as a slow drive may."""

    def __init__(self, root: Path, seed: int):
        super().__init__(root)
        self.rng = random.Random(seed)

    async def read(self, path: str, offset: int, length: int) -> bytes:
        return await super().read(path, offset, max(1, self.rng.randint(1, length)))


@pytest.mark.parametrize("level", [LOWEST, HIGHEST])
def test_the_package_does_not_depend_on_how_the_disc_is_read(tmp_path, level) -> None:
    """What makes resuming possible: the same disc gives the same package bytes, however the
    reads are split (Zstandard's output does not depend on how its input is fed in), and whether
    the pieces were packed ahead or one at a time."""
    folder = make_disc(tmp_path / "disc", size=1_500_000)
    (folder / "TEXT.TXT").write_text("the same words again and again\n" * 300_000)  # 3 pieces

    def package(disc: FolderDisc, ahead: int) -> bytes:
        async def go() -> bytes:
            packager = Packager(disc.listing, LocalPacker(disc), {"contribution_id": "x"},
                                levels=Levels([(0, level)], len(disc.listing)), ahead=ahead)
            return b"".join([piece async for piece in packager.stream()])

        return asyncio.run(go())

    reference = package(FolderDisc(folder), AHEAD_BYTES)
    assert package(FolderDisc(folder), 0) == reference
    assert package(ChoppyDisc(folder, 1), AHEAD_BYTES) == reference
    assert package(ChoppyDisc(folder, 2), 1 << 20) == reference


def test_the_fingerprint_recognises_the_same_listing_only() -> None:
    listing = [DiscFile("DICOMDIR", 300), DiscFile("IMAGES/IM0001", 1024)]
    salt = b"s" * 16
    assert disc_fingerprint(salt, listing) == disc_fingerprint(salt, list(listing))
    assert disc_fingerprint(salt, listing) != disc_fingerprint(b"t" * 16, listing)
    assert disc_fingerprint(salt, listing) != disc_fingerprint(salt, [listing[0], DiscFile("IMAGES/IM0001", 1025)])
    assert disc_fingerprint(salt, listing) != disc_fingerprint(salt, [listing[0], DiscFile("IMAGES/IM0002", 1024)])
    assert disc_fingerprint(salt, listing) != disc_fingerprint(salt, listing[:1])
