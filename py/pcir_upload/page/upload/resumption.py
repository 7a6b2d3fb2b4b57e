"""Resuming after the page was closed: the resumption record, and checking a disc against it.

After every chunk the server confirms, the page stores a small record (localStorage). When
the patient comes back and chooses the same disc again, the package is regenerated exactly
as before (same listing order, Zstandard levels, `created`, contribution id), the chunks the server
already holds are recognised and skipped, and only the rest is sealed and sent.

The record holds nothing that identifies the patient or the disc, and no key that reads
anything: the disc is recognised by an HMAC of its listing under a random salt, the chunks
by SHA-256 digests of their plaintext. Its secret lets its holder append to or delete this
contribution's unfinished uploads, never read them (the receiver has no way to read an
upload back, and every byte is sealed to the repository's key). docs/FORMAT.md, "Resuming",
specifies it and says why it is safe.

Chunks are verified as a *prefix*: one running digest over the plaintexts of chunks 0..n-1
(each chunk's SHA-256 chained onto the one before: P = SHA-256(P || SHA-256(chunk))), rather
than a digest per chunk, so that the record stays near 33 bytes per chunk
(the partial's id) and a 4.7 GB disc's record fits in about 40 KB. Chunks confirmed out of
order (while an earlier one was still in flight) and chunks holding manifest bytes have a
digest of their own ("others"), because the first may be followed by a gap and the second
may legitimately differ on resume (the manifest is rebuilt from what the page knows then).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from pcir_upload.page.disc.disc import DiscFile
from pcir_upload.page.seal.envelope import Recipient
from pcir_upload.page.package.levels import HIGHEST, LOWEST, Levels

RECORD_FORMAT = "pcir-resume"
RECORD_VERSION = 2  # 2: Zstandard levels (1 held deflate levels, whose packages differ)

# What the patient is told when an interrupted upload cannot be continued.
DIFFERENT_DISC = (
    "This is not the disc whose upload was interrupted earlier, so it is sent from the beginning."
)
DISC_CHANGED = (
    "The disc has changed since its upload was interrupted, so it is sent again from the beginning."
)
PARTS_GONE = (
    "The repository no longer holds the part that was already sent (unfinished uploads are "
    "kept only for a while), so the disc is sent again from the beginning."
)
KEY_CHANGED = (
    "The repository's key has changed since the upload was interrupted, so the disc is sent "
    "again from the beginning."
)
UNUSABLE = "The interrupted upload cannot be continued, so the disc is sent from the beginning."
CONTINUING = "Continuing the upload that was interrupted."

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")
_CREATED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class RecordError(ValueError):
    """A record this code cannot use: another version, or damaged."""


def new_secret() -> str:
    """The contribution's upload secret: 32 random bytes, base64url without padding."""
    return _b64(secrets.token_bytes(32))


def disc_fingerprint(salt: bytes, listing: Sequence[DiscFile]) -> str:
    """HMAC-SHA256 under `salt` of the listing's (path, size) pairs, in listing order.

    Recognises the same disc without storing a name: without the whole listing, names and
    sizes of every file, it cannot be told from random."""
    canonical = json.dumps(
        [[f.path, f.size] for f in listing], ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8", "surrogatepass")
    return _b64(hmac.new(salt, canonical, hashlib.sha256).digest())


def recipient_id(recipient: Recipient) -> str:
    """Which repository key (and suite) the chunks were sealed to: chunks sealed to another
    key could not be opened together with these."""
    suite = b"".join(n.to_bytes(2, "big") for n in recipient.suite)
    return hashlib.sha256(suite + recipient.public_key).hexdigest()[:32]


@dataclass(frozen=True)
class Other:
    """A confirmed chunk outside the verified prefix, checked on its own."""

    index: int
    url: str
    sha256: str  # of its plaintext, hex
    final: bool


@dataclass
class Record:
    """What the page keeps of an unfinished contribution: see docs/FORMAT.md, "Resuming"."""

    contribution_id: bytes
    secret: str
    created: str
    endpoint: str
    recipient: str
    chunk_size: int
    salt: bytes
    disc: str
    levels: list[tuple[int, int]] = field(default_factory=list)  # (first file, Zstandard level)
    leveled: int = 0  # files whose level `levels` fixes
    prefix_sha256: str = hashlib.sha256().hexdigest()
    prefix: list[str] = field(default_factory=list)  # partial URLs of chunks 0..n-1
    others: list[Other] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return self.prefix + [o.url for o in self.others]

    @property
    def complete(self) -> bool:
        """Every chunk up to the final one is confirmed: only the joining may be missing."""
        indexes = set(range(len(self.prefix))) | {o.index for o in self.others}
        finals = [o.index for o in self.others if o.final]
        return bool(finals) and indexes == set(range(finals[0] + 1))

    def ordered_urls(self) -> list[str]:
        by_index = {i: url for i, url in enumerate(self.prefix)}
        by_index.update((o.index, o.url) for o in self.others)
        return [by_index[i] for i in sorted(by_index)]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "version": RECORD_VERSION,
            "contribution_id": self.contribution_id.hex(),
            "secret": self.secret,
            "created": self.created,
            "endpoint": self.endpoint,
            "recipient": self.recipient,
            "chunk_size": self.chunk_size,
            "disc": {"salt": _b64(self.salt), "hmac": self.disc},
            "levels": {"runs": [list(run) for run in self.levels], "files": self.leveled},
            "chunks": len(self.prefix),
            "sha256": self.prefix_sha256,
            "parts": " ".join(_ref(self.endpoint, url) for url in self.prefix),
            "others": [[o.index, _ref(self.endpoint, o.url), o.sha256, o.final] for o in self.others],
        }

    @classmethod
    def from_json(cls, data: Any) -> Record:
        """The record as stored; RecordError for anything this version did not write."""
        try:
            if data["format"] != RECORD_FORMAT or data["version"] != RECORD_VERSION:
                raise RecordError("another kind or version of record")
            endpoint = _text(data["endpoint"])
            parts = _text(data["parts"]).split()
            others = [
                Other(_count(i), urljoin(endpoint, _ref_text(ref)), _match(_HEX64, digest), _flag(final))
                for i, ref, digest, final in data["others"]
            ]
            record = cls(
                contribution_id=bytes.fromhex(_match(_HEX32, data["contribution_id"])),
                secret=_match(_SECRET, data["secret"]),
                created=_match(_CREATED, data["created"]),
                endpoint=endpoint,
                recipient=_match(_HEX32, data["recipient"]),
                chunk_size=_count(data["chunk_size"]),
                salt=base64.urlsafe_b64decode(_padded(_match(_B64, data["disc"]["salt"]))),
                disc=_match(_B64, data["disc"]["hmac"]),
                levels=[(_count(first), _count(level)) for first, level in data["levels"]["runs"]],
                leveled=_count(data["levels"]["files"]),
                prefix_sha256=_match(_HEX64, data["sha256"]),
                prefix=[urljoin(endpoint, _ref_text(ref)) for ref in parts],
                others=others,
            )
        except RecordError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"a damaged record: {exc}") from None
        if _count(data["chunks"]) != len(record.prefix):
            raise RecordError("the record's chunk count does not match its parts")
        if not 1 <= record.chunk_size <= 16 * 1024 * 1024:
            raise RecordError("chunk size out of range")
        firsts = [first for first, _ in record.levels]
        if firsts != sorted(set(firsts)) or any(not LOWEST <= level <= HIGHEST for _, level in record.levels):
            raise RecordError("damaged Zstandard levels")
        indexes = [o.index for o in record.others]
        if len(set(indexes)) != len(indexes) or any(i < len(record.prefix) for i in indexes):
            raise RecordError("a chunk is recorded twice")
        return record


@dataclass
class Chunk:
    """One plaintext chunk as the package stream produced it."""

    index: int
    sha256: str
    final: bool
    manifest: bool  # holds bytes of the manifest entry or what follows it
    prefix_sha256: str | None  # running digest of chunks 0..index, while all are disc data


class Tracker:
    """What the server has confirmed of the contribution, in the record's terms.

    `produced` is told every chunk in order as the package is cut, `confirmed` every chunk the
    server holds (in any order); `record()` is then what to store. Memory stays bounded:
    only chunks not yet in the contiguous prefix are kept."""

    def __init__(self, base: Record, levels: Levels, pending: Sequence[Other] = ()):
        self._base = base
        self._levels = levels
        self._running = hashlib.sha256().digest()
        self._pure = True  # no manifest byte seen yet: the running digest still means disc data
        self._chunks: dict[int, Chunk] = {}
        self._urls: dict[int, str] = {}
        self._prefix: list[str] = []
        self._prefix_sha256 = hashlib.sha256().hexdigest()
        # Chunks of an earlier session not checked yet: kept in the record as they were, so
        # that closing the page again while they wait loses none of them.
        self._pending = {o.index: o for o in pending}

    def produced(self, index: int, digest: bytes, final: bool, manifest: bool) -> Chunk:
        """Chunk `index` was cut; `digest` is the SHA-256 of its plaintext."""
        running = None
        if self._pure and not manifest:
            self._running = hashlib.sha256(self._running + digest).digest()
            running = self._running.hex()
        else:
            self._pure = False
        chunk = Chunk(index, digest.hex(), final, manifest, running)
        self._chunks[index] = chunk
        return chunk

    def checked(self, index: int) -> None:
        """An earlier session's chunk was checked (and kept, or dropped to be sent again)."""
        self._pending.pop(index, None)

    def confirmed(self, index: int, url: str) -> None:
        self._pending.pop(index, None)
        self._urls[index] = url
        while True:
            n = len(self._prefix)
            chunk = self._chunks.get(n)
            if n not in self._urls or chunk is None or chunk.prefix_sha256 is None:
                break
            self._prefix.append(self._urls.pop(n))
            self._prefix_sha256 = chunk.prefix_sha256
            del self._chunks[n]

    def record(self) -> Record:
        others = [
            Other(i, url, self._chunks[i].sha256, self._chunks[i].final)
            for i, url in sorted(self._urls.items())
        ]
        others += [o for i, o in self._pending.items() if i not in self._urls]
        others.sort(key=lambda o: o.index)
        base = self._base
        return Record(
            base.contribution_id, base.secret, base.created, base.endpoint, base.recipient,
            base.chunk_size, base.salt, base.disc, list(self._levels.runs), self._levels.files,
            self._prefix_sha256, list(self._prefix), others,
        )


class DiscChanged(Exception):
    """The regenerated package differs from what the server already holds."""


class Resumption:
    """Checks each regenerated chunk against a record: skip it, send it, or start again.

    Chunks 0..n-1 of the prefix are taken on trust as they come and proven all at once when
    chunk n-1's running digest matches (nothing new is sent before that: new chunks come
    after them). A chunk holding manifest bytes that differs is simply sent again: the
    manifest is rebuilt from what the page knows now (see docs/FORMAT.md)."""

    def __init__(self, record: Record):
        self.record = record
        self._others = {o.index: o for o in record.others}
        self.stale: list[str] = []  # partials the server holds that the new package does not use
        self.reused = 0

    def check(self, chunk: Chunk) -> str | None:
        """The URL of the partial already holding this chunk, or None to seal and send it."""
        prefix = self.record.prefix
        if chunk.index < len(prefix):
            if chunk.prefix_sha256 is None:
                raise DiscChanged(f"chunk {chunk.index} now holds manifest bytes")
            if chunk.index == len(prefix) - 1 and chunk.prefix_sha256 != self.record.prefix_sha256:
                raise DiscChanged(f"chunks 0..{chunk.index} differ")
            self.reused += 1
            return prefix[chunk.index]
        other = self._others.pop(chunk.index, None)
        if other is None:
            return None
        if (other.sha256, other.final) == (chunk.sha256, chunk.final):
            self.reused += 1
            return other.url
        if not chunk.manifest:
            raise DiscChanged(f"chunk {chunk.index} differs")
        self.stale.append(other.url)  # the manifest differs: this chunk goes again
        return None

    def finish(self, final_index: int) -> None:
        """The package ended at `final_index`: recorded chunks past it are of no use."""
        if final_index < len(self.record.prefix) - 1:
            raise DiscChanged("the package is shorter than before")
        for index in [i for i in self._others if i > final_index]:
            self.stale.append(self._others.pop(index).url)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4)


def _ref(endpoint: str, url: str) -> str:
    """An upload URL as short as it goes: relative to the endpoint where it lies under it."""
    return url[len(endpoint):] if url.startswith(endpoint) and len(url) > len(endpoint) else url


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise RecordError("expected a string")
    return value


def _ref_text(value: Any) -> str:
    text = _text(value)
    if not text or any(c.isspace() for c in text):
        raise RecordError("a damaged upload reference")
    return text


def _match(pattern: re.Pattern[str], value: Any) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise RecordError("a damaged field")
    return value


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise RecordError("expected a count")
    return value


def _flag(value: Any) -> bool:
    if type(value) is not bool:
        raise RecordError("expected true or false")
    return value
