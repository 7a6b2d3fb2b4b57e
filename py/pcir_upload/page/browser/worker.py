"""What the page's Python worker offers the page: the session, scanning a disc, contributing it.

The page (main thread, JavaScript) lists the chosen folder as [{path, file}] and hands the
File objects over; only references cross, never contents. Progress goes back by messages
on the worker's port (`topage`). Answers are JSON; errors come back as plain words for the
patient plus the technical detail for whoever helps them, never as an exception the page
would have to interpret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import traceback
from datetime import datetime, timezone
from typing import Any

import js
from pyodide.ffi import create_once_callable, create_proxy

from pcir_upload.page.upload.contribution import Contribution, ContributionCancelled, Progress
from pcir_upload.page.package.package import LocalPacker, Packer
from pcir_upload.page.disc.disc import DiscFile, make_listing
from pcir_upload.page.disc.contents import ScannedDisc, assemble
from pcir_upload.page.disc.discovery import classify_document, scan_disc
from pcir_upload.page.seal.envelope import SUITE_HYBRID, SUITE_X25519, Recipient
from pcir_upload.page.session.leftovers import large_buffers
from pcir_upload.page.session.marker import SessionMarker, agreed_again, contributed, parse_marker, still_agreed
from pcir_upload.page.upload.tus import UploadError
from pcir_upload.page.browser import storage
from pcir_upload.page.browser.topage import tell_page
from pcir_upload.page.browser._js import js_object
from pcir_upload.page.browser.fetch import FetchTransport
from pcir_upload.page.browser.files import BrowserDisc
from pcir_upload.page.browser.packers import PackerPool
from pcir_upload.page.browser.webcrypto import WebCrypto


class _Disc:
    """A disc in hand: its listing, its File objects (by the disc's own paths), the scan."""

    def __init__(self, listing: list[DiscFile], files: dict[str, Any], summary: dict[str, Any]):
        self.listing = listing
        self.files = files
        self.summary = summary


class _Document:
    def __init__(self, name: str, size: int, file: Any, kind: str | None):
        self.name, self.size, self.file, self.kind = name, size, file, kind


class _Session:
    """Who is contributing on this visit, and what they agreed to."""

    def __init__(self, marker: SessionMarker | None, keep: bool):
        self.marker = marker
        self.keep = keep  # False for "someone else": the previous person's marker stays as it is
        self.terms: dict[str, Any] | None = None
        self.reason = ""

    def store(self) -> None:
        if self.keep and self.marker is not None:
            storage.save(self.marker.dumps())


_discs: list[_Disc] = []
_documents: list[_Document] = []
_session = _Session(None, keep=True)
_contribution: Contribution | None = None  # the one being sent, for pause, resume and cancel
# Pause pressed while the contribution is still being set up (config, packers, key): it
# takes effect the moment the contribution exists, rather than being lost.
_pause_wanted = False
_packers: PackerPool | None = None
_wheels: list[str] = []  # the wheels this worker loaded, by URL
_ONLINE_PATIENCE = 30  # seconds of "offline" before trying the network anyway


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _failure(message: str) -> str:
    return json.dumps({"error": message, "detail": traceback.format_exc()})


def configure(wheels: list[str]) -> None:
    """The wheels web/worker.py loaded: the packers need ours too."""
    _wheels[:] = wheels


_channel: Any = None  # where the page sends listings (app.js, callWithListing)


def listen(name: str) -> str:
    """Open our end of the page's listing channel and say so on it. The page posts no listing
    before it hears us there: a message posted before an end is open never reaches it, and an
    end is open only once the browser has registered it, which in Firefox happens after the
    constructor returns (the hello arrives after the registration, so the page's listings do
    too)."""
    global _channel
    if _channel is None:
        _channel = js.BroadcastChannel.new(name)
        _channel.addEventListener("message", create_proxy(_message))
    _channel.postMessage(js_object({"pcirListening": True}))
    return json.dumps({})


def from_page(event: Any) -> None:
    """What the page posts on this worker's own port (app.js, startPackers): the ends of its
    channels to the packers it started, and which of them failed."""
    global _packers
    data = event.data
    ports = getattr(data, "pcirPackers", None)
    if ports is not None and _packers is None:
        ours = [url for url in _wheels if "/pcir_upload-" in url]
        _packers = PackerPool(ours)
        asyncio.ensure_future(_packers.start(list(ports)))
    failed = getattr(data, "pcirPackerFailed", None)
    if isinstance(failed, str) and _packers is not None:
        _packers.failed(failed)


def session(options: str) -> str:
    """Start this visit's session: has this person agreed to these terms recently?

    With `fresh` (someone else is using the computer) the stored marker is neither used nor
    touched, and nothing is stored for the new person.
    """
    global _session
    chosen = json.loads(options)
    fresh = bool(chosen.get("fresh"))
    storage.seed(chosen.get("stored") or {})
    marker = None if fresh else parse_marker(storage.load())
    _session = _Session(marker, keep=not fresh)
    returning = still_agreed(marker, chosen["terms_version"], _now(), int(chosen["reconfirm_days"]))
    answer: dict[str, Any] = {"returning": returning, "unfinished": bool(_resume_record())}
    if returning and marker is not None:
        answer["agreed"] = marker.agreed
        _session.terms = {"version": marker.terms_version, "agreed": marker.agreed,
                          "confirmations": chosen["confirmations"]}
    return json.dumps(answer)


def agree(options: str) -> str:
    """The contributor confirmed every point and agreed to the terms, now."""
    chosen = json.loads(options)
    marker = agreed_again(_session.marker, chosen["terms_version"], _now())
    _session.marker = marker
    _session.terms = {"version": marker.terms_version, "agreed": marker.agreed,
                      "confirmations": chosen["confirmations"]}
    _session.store()
    return json.dumps({"agreed": marker.agreed})


def forget() -> str:
    """The page is about to erase its storage: store nothing more on this visit."""
    _session.keep = False
    storage.seed({})
    return json.dumps({})


def _resume_record() -> dict[str, Any] | None:
    """An unfinished contribution's record, if this session keeps things and one is stored."""
    if not _session.keep:
        return None
    try:
        record = json.loads(storage.load(storage.RESUME_KEY) or "null")
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _save_record(record: dict[str, Any] | None) -> None:
    if _session.keep:
        storage.save(None if record is None else json.dumps(record), storage.RESUME_KEY)


async def _wait_online() -> None:
    """Returns once the browser says it is online again (at once if it is), or after a while
    in any case: a worker is not always told when the network comes back, so ask again."""
    if js.navigator.onLine:
        return
    back = asyncio.get_running_loop().create_future()

    def online(*_: Any) -> None:
        if not back.done():
            back.set_result(None)

    js.addEventListener("online", create_once_callable(online), js_object({"once": True}))
    for _ in range(_ONLINE_PATIENCE):
        if back.done() or js.navigator.onLine:
            return
        await asyncio.wait([back], timeout=1.0)


def pause() -> str:
    global _pause_wanted
    _pause_wanted = True
    if _contribution is not None:
        _contribution.pause()
    return json.dumps({})


def resume() -> str:
    global _pause_wanted
    _pause_wanted = False
    if _contribution is not None:
        _contribution.resume()
    return json.dumps({})


async def cancel() -> str:
    """Stop sending and ask the repository to delete what it holds of this contribution."""
    if _contribution is not None:
        await _contribution.cancel()
    return json.dumps({})


_listings: dict[int, _Listing] = {}
_LISTING_PATIENCE = 60.0  # seconds without a part of a listing the page is sending


class _Listing:
    """A listing the page sends in parts (app.js, callWithListing), in any order."""

    def __init__(self) -> None:
        self.parts: dict[int, Any] = {}
        self.count: int | None = None
        self.arrived = asyncio.Event()

    def add(self, part: int, count: int, entries: Any) -> None:
        self.parts[part], self.count = entries, count
        self.arrived.set()

    async def entries(self) -> list[Any]:
        while self.count is None or len(self.parts) < self.count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), _LISTING_PATIENCE)
        return [part[i] for _, part in sorted(self.parts.items()) for i in range(part.length)]


def _message(event: Any) -> None:
    data = event.data
    ident = getattr(data, "pcirListing", None)
    if isinstance(ident, int):
        _listings.setdefault(ident, _Listing()).add(int(data.part), int(data.parts), data.entries)


async def _listed(ident: int) -> tuple[list[DiscFile], dict[str, Any]]:
    """The page's listing `ident` as a listing and the File objects by package path."""
    try:
        chosen = await _listings.setdefault(int(ident), _Listing()).entries()
    finally:
        _listings.pop(int(ident), None)
    indexed = make_listing([(str(e.path), int(e.file.size)) for e in chosen])
    return [f for _, f in indexed], {f.path: chosen[i].file for i, f in indexed}


async def scan(listing_id: int) -> str:
    """Add a disc: take the page's listing of the chosen folder; answer with its summary."""
    try:
        listing, files = await _listed(listing_id)
        summary = (await scan_disc(listing, BrowserDisc(files))).to_json()
    except Exception:
        return _failure("The folder could not be read. Please try choosing it again.")
    _discs.append(_Disc(listing, files, summary))
    shown = {k: v for k, v in summary.items() if k != "roles"}  # the page needs no per-file list
    viewer = [f for f in listing if summary["roles"].get(f.path) == "viewer"]
    shown["viewer"] = {"files": len(viewer), "bytes": sum(f.size for f in viewer)}
    return json.dumps({"disc": len(_discs) - 1, "summary": shown})


def remove_disc(index: int) -> str:
    del _discs[int(index)]
    return json.dumps({"discs": len(_discs)})


async def add_documents(listing_id: int) -> str:
    """Add scanned documents (PDF, JPEG, PNG; anything else is carried too, as it is)."""
    try:
        listing, files = await _listed(listing_id)
        heads = await BrowserDisc(files).read_heads([f.path for f in listing], 16)
    except Exception:
        return _failure("The documents could not be read. Please try adding them again.")
    for f, head in zip(listing, heads):
        kind = classify_document(f.path, head) if isinstance(head, bytes) else None
        _documents.append(_Document(f.path, f.size, files[f.path], kind))
    return json.dumps({"documents": [{"name": d.name, "size": d.size, "kind": d.kind} for d in _documents]})


def remove_document(index: int) -> str:
    del _documents[int(index)]
    return json.dumps({"documents": len(_documents)})


async def _recipient(config: dict[str, Any], crypto: WebCrypto) -> Recipient:
    """The hybrid post-quantum suite where the browser can, the classical one where not."""
    def key(name: str) -> bytes:
        return base64.urlsafe_b64decode(config[name] + "=" * (-len(config[name]) % 4))

    if config.get("hybrid_public_key") and await crypto.supports_mlkem768():
        return Recipient(SUITE_HYBRID, key("hybrid_public_key"))
    return Recipient(SUITE_X25519, key("public_key"))


def _report(progress: Progress) -> None:
    tell_page({"kind": "progress", "progress": json.dumps(progress.to_json())})


async def contribute_disc(options: str) -> str:
    """Package, seal and upload the discs and documents in hand; answer with the receipt."""
    global _contribution, _pause_wanted
    _pause_wanted = False
    if not _discs and not _documents:
        return json.dumps({"error": "Please choose the disc first."})
    if _session.terms is None or _session.marker is None:
        return json.dumps({"error": "Please agree to the terms first."})
    try:
        chosen = json.loads(options)
        documents = make_listing([(d.name, d.size) for d in _documents])
        contents = assemble(
            [ScannedDisc(d.listing, d.summary) for d in _discs],
            [f for _, f in documents],
            [bool(v) for v in chosen.get("include_viewer", [])],
        )
        by_name = {f.path: _documents[i].file for i, f in documents}
        files = {path: (_discs[disc].files[own] if disc is not None else by_name[own])
                 for path, (disc, own) in contents.sources.items()}
        origin = str(js.location.origin)
        response = await js.fetch(origin + "/api/config", js.Object.fromEntries([["cache", "no-store"]]))
        if not response.ok:
            return json.dumps({"error": "The repository is not answering right now. Please try again later."})
        config = json.loads(await response.text())
        crypto = WebCrypto()
        manifest: dict[str, Any] = {
            "contributor_id": _session.marker.contributor_id,
            "terms": _session.terms,
            **contents.manifest,
        }
        reason = str(chosen.get("reason") or "").strip()
        if reason:
            manifest["reason"] = reason[:2000]
        _contribution = Contribution(
            listing=contents.listing,
            packer=await _packer(files),
            manifest=manifest,
            recipient=await _recipient(config, crypto),
            primitives=crypto,
            transport=FetchTransport(),
            digest=crypto.sha256,
            endpoint=origin + config["upload_endpoint"],
            on_progress=_report,
            save_record=_save_record,
            resume=_resume_record(),
            wait_online=_wait_online,
            on_notice=lambda text: tell_page({"kind": "notice", "text": text}),
        )
        if _pause_wanted:
            _contribution.pause()
        receipt = await _contribution.run()
    except ContributionCancelled as exc:
        _forget_contents()
        return json.dumps({"cancelled": str(exc)})
    except UploadError as exc:
        return _failure(str(exc))
    except Exception:
        return _failure("Something went wrong while sending. Nothing was lost; please try again.")
    finally:
        if _packers is not None:
            _packers.forget()
    # Done: drop every reference to the files, so nothing of them lingers in the worker.
    # After a failure they stay in hand, so that "try again" needs no new choice.
    del files, by_name
    _forget_contents()
    _session.marker = contributed(_session.marker, _now())
    _session.store()
    return json.dumps({"receipt": receipt.to_json()})


def _forget_contents() -> None:
    global _contribution
    _discs.clear()
    _documents.clear()
    _contribution = None


async def _packer(files: dict[str, Any]) -> Packer:
    """The packers when they could start (waiting for them if they are still loading: half
    the speed for the whole disc would cost more), else this worker packs."""
    if _packers is None:
        return LocalPacker(BrowserDisc(files))
    await asyncio.shield(_packers.ready)
    return _packers.packer(files)


async def memory_report() -> str:
    """What the worker and its packers still hold of a disc: for the tests that check nothing
    lingers."""
    packers = await _packers.report() if _packers is not None and _packers.ready.done() else []
    return json.dumps({"disc_in_hand": bool(_discs or _documents), "large_buffers": large_buffers(),
                       "packers": packers})
