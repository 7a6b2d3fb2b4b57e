"""The receiver's uploads in memory: who made each, how many are still being written, how many
bytes they hold. Built from disk once at start-up (in a thread) and kept up to date by the
store, so that no request has to read every info.json: per-request work stays the same
whether the receiver holds ten uploads or a million.

The disk stays the truth. Anything decided from here that deletes bytes (expiry) reads the
upload's folder again first. The client address of an upload is kept here only, never on
disk (the receiver records no patient's address), so after a restart it is unknown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from pcir_upload.repository.receive.limits import RECORD_BYTES


@dataclass(frozen=True)
class Entry:
    """One upload as the index sees it. Times are POSIX seconds."""

    owner: str | None
    client: str | None
    length: int | None
    offset: int
    partial: bool
    completed: float | None  # when a plain or final upload got its last byte; never for partials
    modified: float  # the last write

    @property
    def finished(self) -> bool:
        return self.completed is not None

    @property
    def open(self) -> bool:
        """Still being written: what the per-client and per-secret limits count. A complete
        partial waiting for its final is not (a contribution has thousands of them)."""
        return self.completed is None and not (self.partial and self.length == self.offset)

    @property
    def charge(self) -> int:
        """What the upload counts against the quota: its declared length from the start."""
        return max(self.length or 0, self.offset) + RECORD_BYTES

    @property
    def pending(self) -> int:
        """Bytes declared but not yet on disk: the free space they will take is promised."""
        return self.length - self.offset if self.length is not None and self.length > self.offset else 0


def timestamp(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


class UploadIndex:
    def __init__(self, entries: Iterable[tuple[str, Entry]] = ()) -> None:
        self._entries: dict[str, Entry] = {}
        self._owned: dict[str, set[str]] = {}
        self._open_by_client: Counter[str] = Counter()
        self._open_by_owner: Counter[str] = Counter()
        self.held = 0
        self.pending = 0
        for upload_id, entry in entries:
            self.put(upload_id, entry)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, upload_id: str) -> Entry | None:
        return self._entries.get(upload_id)

    def put(self, upload_id: str, entry: Entry) -> None:
        self.remove(upload_id)
        self._entries[upload_id] = entry
        self.held += entry.charge
        self.pending += entry.pending
        if entry.owner is not None:
            self._owned.setdefault(entry.owner, set()).add(upload_id)
        if entry.open:
            if entry.client is not None:
                self._open_by_client[entry.client] += 1
            if entry.owner is not None:
                self._open_by_owner[entry.owner] += 1

    def update(self, upload_id: str, **changes: object) -> None:
        entry = self._entries.get(upload_id)
        if entry is not None:
            self.put(upload_id, replace(entry, **changes))  # type: ignore[arg-type]

    def remove(self, upload_id: str) -> None:
        entry = self._entries.pop(upload_id, None)
        if entry is None:
            return
        self.held -= entry.charge
        self.pending -= entry.pending
        if entry.owner is not None:
            owned = self._owned[entry.owner]
            owned.discard(upload_id)
            if not owned:
                del self._owned[entry.owner]
        if entry.open:
            if entry.client is not None:
                _decrement(self._open_by_client, entry.client)
            if entry.owner is not None:
                _decrement(self._open_by_owner, entry.owner)

    def owned(self, owner: str) -> list[str]:
        return list(self._owned.get(owner, ()))

    def open_for_client(self, client: str) -> int:
        return self._open_by_client.get(client, 0)

    def open_for_owner(self, owner: str) -> int:
        return self._open_by_owner.get(owner, 0)

    def items(self) -> list[tuple[str, Entry]]:
        return list(self._entries.items())


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
