"""What a packer worker runs (web/packer.mjs): one piece of a file at a time, read, hashed and
compressed on a core of its own, for the page's Python worker (`packers`).

Only pure work happens here, the same `Encoders` that `LocalPacker` uses on CPython, so a
piece comes out byte for byte as it would anywhere else. The encoders of files still in
progress are the only state; `reset` drops them between contributions.
"""

from __future__ import annotations

import json
from typing import Any

from pcir_upload.page.session.leftovers import large_buffers
from pcir_upload.page.package.package import Encoders, PieceRequest
from pcir_upload.page.browser._js import from_js, js_object, uint8array
from pcir_upload.page.browser.files import read_error

_encoders = Encoders()


def pack(message: Any, data: Any, error: str | None, hashed: bool) -> Any:
    """The answer to a piece message: {kind, id, data (Uint8Array), and the Piece's fields}.
    `hashed`: the file is in this one piece and packer.mjs hashes it natively."""
    request = PieceRequest(
        int(message.index), str(message.path), int(message.size), int(message.offset),
        int(message.length), int(message.level), bool(message.first), bool(message.last),
    )
    failure = str(read_error(error)) if isinstance(error, str) else None
    piece = _encoders.piece(request, from_js(data) if data is not None else b"", failure, bool(hashed))
    answer = {
        "kind": "piece", "id": message.id, "data": uint8array(piece.data), "method": piece.method,
        "end": piece.end, "skipped": piece.skipped, "crc": piece.crc, "size": piece.size,
        "sha256": piece.sha256,
    }
    if piece.error is not None:
        answer["error"] = piece.error
    return js_object(answer)


def reset() -> None:
    _encoders.clear()


def report() -> str:
    """What this worker still holds: for the tests that check nothing of a disc lingers."""
    return json.dumps({"files_in_progress": len(_encoders), "large_buffers": large_buffers()})
