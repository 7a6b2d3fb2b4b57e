"""The encryption envelope: a contribution's package travels as a sequence of sealed chunks.

Each chunk is one HPKE single-shot message to the repository's public key, preceded by a
40-byte header in clear. The whole header is the HPKE `info`, so the suite, the contribution
id, the chunk's index and its "final" flag cannot be changed without the chunk failing to
open: reordering, dropping, splicing chunks of another contribution or cutting the stream
short is detected. (Base-mode HPKE does not say who sealed a chunk: anyone holding the public
key can seal new ones; see docs/FORMAT.md.) docs/FORMAT.md is the specification; this module
follows it line by line.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from pcir_upload.page.seal import hpke

MAGIC = b"PCIR"
VERSION = 1
SUITE_X25519 = (hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES_256_GCM)
SUITE_HYBRID = (hpke.KEM_MLKEM768_X25519, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES_256_GCM)
SUITES = (SUITE_X25519, SUITE_HYBRID)
FLAG_FINAL = 0x01
MAX_PLAINTEXT = 16 * 1024 * 1024


def message_overhead(suite: tuple[int, int, int]) -> int:
    """Bytes an HPKE message adds to its plaintext: enc before the ciphertext, the tag after."""
    return hpke.N_ENC[suite[0]] + hpke.N_T


@dataclass(frozen=True)
class Recipient:
    """The repository's public key of one suite, as the page got it from the server."""

    suite: tuple[int, int, int]
    public_key: bytes

_HEADER = struct.Struct(">4sBHHHB16sQI")
HEADER_SIZE = _HEADER.size  # 40


class EnvelopeError(ValueError):
    """A chunk that is not what the format says a chunk is."""


@dataclass(frozen=True)
class ChunkHeader:
    suite: tuple[int, int, int]
    final: bool
    contribution_id: bytes
    index: int
    length: int  # bytes of the HPKE message (enc || ciphertext) after the header

    def pack(self) -> bytes:
        return _HEADER.pack(
            MAGIC, VERSION, *self.suite, FLAG_FINAL if self.final else 0,
            self.contribution_id, self.index, self.length,
        )

    @classmethod
    def parse(cls, raw: bytes) -> ChunkHeader:
        if len(raw) != HEADER_SIZE:
            raise EnvelopeError(f"a chunk header is {HEADER_SIZE} bytes, got {len(raw)}")
        magic, version, kem, kdf, aead, flags, cid, index, length = _HEADER.unpack(raw)
        if magic != MAGIC:
            raise EnvelopeError("not a pcir-upload chunk (bad magic)")
        if version != VERSION:
            raise EnvelopeError(f"unknown envelope version {version}")
        if (kem, kdf, aead) not in SUITES:
            raise EnvelopeError(f"unknown HPKE suite {kem:#06x}/{kdf:#06x}/{aead:#06x}")
        if flags & ~FLAG_FINAL:
            raise EnvelopeError(f"unknown chunk flags {flags:#04x}")
        overhead = message_overhead((kem, kdf, aead))
        if not overhead <= length <= MAX_PLAINTEXT + overhead:
            raise EnvelopeError(f"chunk length {length} is out of range")
        return cls((kem, kdf, aead), bool(flags & FLAG_FINAL), cid, index, length)


class Sealer:
    """Seals one contribution's package, chunk after chunk, to the repository's public key."""

    def __init__(self, primitives: hpke.Primitives, recipient: Recipient, contribution_id: bytes):
        if len(contribution_id) != 16:
            raise ValueError("a contribution id is 16 bytes")
        if recipient.suite not in SUITES:
            raise ValueError(f"unknown suite {recipient.suite}")
        self._primitives = primitives
        self._recipient = recipient
        self.contribution_id = contribution_id
        self.index = 0
        self.finished = False

    async def seal(self, plaintext: bytes, final: bool) -> bytes:
        """The next chunk: header || enc || ciphertext. The last one must say final=True."""
        if self.finished:
            raise RuntimeError("the final chunk has already been sealed")
        if len(plaintext) > MAX_PLAINTEXT:
            raise ValueError("chunk plaintext too large")
        if not plaintext and not (final and self.index == 0):
            raise ValueError("only the sole chunk of an empty package may be empty")
        suite = self._recipient.suite
        header = ChunkHeader(
            suite, final, self.contribution_id, self.index,
            len(plaintext) + message_overhead(suite),
        ).pack()
        message = await hpke.seal(
            self._primitives, suite[0], self._recipient.public_key, header, plaintext
        )
        self.index += 1
        self.finished = final
        return header + message


def read_chunks(stream: BinaryIO) -> Iterator[tuple[ChunkHeader, bytes, bytes]]:
    """Split an uploaded byte stream into (header, raw header, HPKE message), unverified.

    Checks only the framing; what the chunks claim (order, ids, the final flag) is the
    opener's to check, because only opening proves the header is authentic.
    """
    while True:
        raw = stream.read(HEADER_SIZE)
        if not raw:
            return
        if len(raw) < HEADER_SIZE:
            raise EnvelopeError("the upload ends inside a chunk header")
        header = ChunkHeader.parse(raw)
        message = stream.read(header.length)
        if len(message) < header.length:
            raise EnvelopeError(f"the upload ends inside chunk {header.index}")
        yield header, raw, message
