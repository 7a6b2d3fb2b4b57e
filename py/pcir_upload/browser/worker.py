"""What the page's Python worker offers the page: scan a disc, contribute it, forget it.

The page (main thread, JavaScript) lists the chosen folder as [{path, file}] and hands the
File objects over; only references cross, never contents. Progress goes back through
`window.pcirProgress`. Errors come back as plain words for the patient plus the technical
detail for whoever helps them, never as an exception the page would have to interpret.
"""

from __future__ import annotations

import base64
import json
import traceback
from typing import Any

import js
from pyscript import window

from ..contribution import Progress, contribute
from ..disc import DiscFile, make_listing
from ..discovery import scan_disc
from ..envelope import SUITE_HYBRID, SUITE_X25519, Recipient
from ..tus import UploadError
from .fetch import FetchTransport
from .files import BrowserDisc
from .webcrypto import WebCrypto

class _Disc:
    """The disc in hand: its listing, its File objects and what the scan found."""

    def __init__(self, listing: list[DiscFile], files: dict[str, Any], summary: dict[str, Any]):
        self.listing = listing
        self.files = files
        self.summary = summary


_disc: _Disc | None = None


def _failure(message: str) -> str:
    return json.dumps({"error": message, "detail": traceback.format_exc()})


async def scan(entries: Any) -> str:
    """Take the page's listing of the chosen folder; answer with the summary as JSON."""
    global _disc
    _disc = None
    try:
        chosen = [entries[i] for i in range(entries.length)]
        indexed = make_listing([(str(e.path), int(e.file.size)) for e in chosen])
        listing = [disc_file for _, disc_file in indexed]
        files = {disc_file.path: chosen[i].file for i, disc_file in indexed}
        summary = (await scan_disc(listing, BrowserDisc(files))).to_json()
    except Exception:
        return _failure("The folder could not be read. Please try choosing it again.")
    _disc = _Disc(listing, files, summary)
    return json.dumps({"summary": summary})


async def _recipient(config: dict[str, Any], crypto: WebCrypto) -> Recipient:
    """The hybrid post-quantum suite where the browser can, the classical one where not."""
    def key(name: str) -> bytes:
        return base64.urlsafe_b64decode(config[name] + "=" * (-len(config[name]) % 4))

    if config.get("hybrid_public_key") and await crypto.supports_mlkem768():
        return Recipient(SUITE_HYBRID, key("hybrid_public_key"))
    return Recipient(SUITE_X25519, key("public_key"))


def _report(progress: Progress) -> None:
    window.pcirProgress(json.dumps(progress.to_json()))


async def contribute_disc(options: str) -> str:
    """Package, seal and upload the scanned disc; answer with the receipt as JSON."""
    global _disc
    disc = _disc
    if disc is None:
        return json.dumps({"error": "Please choose the disc first."})
    try:
        chosen = json.loads(options)
        origin = str(js.location.origin)
        response = await js.fetch(origin + "/api/config", js.Object.fromEntries([["cache", "no-store"]]))
        if not response.ok:
            return json.dumps({"error": "The repository is not answering right now. Please try again later."})
        config = json.loads(await response.text())
        crypto = WebCrypto()
        receipt = await contribute(
            listing=disc.listing,
            reader=BrowserDisc(disc.files),
            manifest={"terms": chosen["terms"], "summary": disc.summary},
            recipient=await _recipient(config, crypto),
            primitives=crypto,
            transport=FetchTransport(),
            endpoint=origin + config["upload_endpoint"],
            on_progress=_report,
        )
    except UploadError as exc:
        return _failure(str(exc))
    except Exception:
        return _failure("Something went wrong while sending. Nothing was lost; please try again.")
    # Done: drop every reference to the disc's files, so nothing of it lingers in the worker.
    # After a failure the disc stays in hand, so that "try again" needs no new choice.
    _disc = None
    return json.dumps({"receipt": receipt.to_json()})
