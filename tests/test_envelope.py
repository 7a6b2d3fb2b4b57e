"""The envelope's chunks: sealed by our HPKE, opened by pyca/cryptography, and every way of
tampering with their order, ids, flags or bytes detected."""

from __future__ import annotations

import asyncio
import io
import secrets
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from pcir_upload.page.seal.envelope import (
    FLAG_FINAL, HEADER_SIZE, SUITE_HYBRID, SUITE_X25519, ChunkHeader, EnvelopeError, Recipient,
    Sealer, message_overhead)
from pcir_upload.repository.keys import PrivateKeys, keygen, load_private_keys, load_public_keys
from pcir_upload.repository.unpack import UnpackError, open_envelope
from support import PycaPrimitives


def _keys(folder: Path):
    private, public = keygen(folder)
    return load_private_keys(private), load_public_keys(public)


KEYS, PUBLIC = _keys(Path(tempfile.mkdtemp()))
RECIPIENTS = {SUITE_X25519: Recipient(SUITE_X25519, PUBLIC.classical),
              SUITE_HYBRID: Recipient(SUITE_HYBRID, PUBLIC.hybrid)}


def seal_all(pieces: list[bytes], contribution_id: bytes | None = None, suite=SUITE_X25519) -> list[bytes]:
    sealer = Sealer(PycaPrimitives(), RECIPIENTS[suite], contribution_id or secrets.token_bytes(16))

    async def run() -> list[bytes]:
        return [await sealer.seal(p, final=i == len(pieces) - 1) for i, p in enumerate(pieces)]

    return asyncio.run(run())


def opened(chunks: list[bytes], keys: PrivateKeys = KEYS) -> bytes:
    sink = io.BytesIO()
    open_envelope(io.BytesIO(b"".join(chunks)), keys, sink)
    return sink.getvalue()


PIECES = [b"a" * 1000, b"b" * 1000, b"c" * 10]


def test_header_round_trip() -> None:
    header = ChunkHeader(SUITE_X25519, True, bytes(range(16)), 7, 100)
    raw = header.pack()
    assert len(raw) == HEADER_SIZE == 40
    assert raw[:5] == b"PCIR\x01"
    assert ChunkHeader.parse(raw) == header


def test_chunks_open_in_order() -> None:
    chunks = seal_all(PIECES)
    assert [ChunkHeader.parse(c[:HEADER_SIZE]).index for c in chunks] == [0, 1, 2]
    assert [ChunkHeader.parse(c[:HEADER_SIZE]).final for c in chunks] == [False, False, True]
    assert len(chunks[0]) == HEADER_SIZE + 1000 + message_overhead(SUITE_X25519)
    assert opened(chunks) == b"".join(PIECES)


def test_hybrid_chunks_open_in_order() -> None:
    chunks = seal_all(PIECES, suite=SUITE_HYBRID)
    assert [ChunkHeader.parse(c[:HEADER_SIZE]).suite for c in chunks] == [SUITE_HYBRID] * 3
    assert len(chunks[0]) == HEADER_SIZE + 1000 + 1120 + 16
    assert opened(chunks) == b"".join(PIECES)


def relabelled(chunk: bytes, suite: tuple[int, int, int]) -> bytes:
    changed = bytearray(chunk)
    changed[5:7] = suite[0].to_bytes(2, "big")  # kem_id
    return bytes(changed)


def test_a_downgraded_suite_field_does_not_open() -> None:
    # Someone in the middle relabels a chunk: the suite is part of the HPKE info, so it will
    # not open as the suite it now claims.
    chunk = seal_all([b"x" * 2000], suite=SUITE_HYBRID)[0]
    with pytest.raises(UnpackError, match="chunk 0 does not open"):
        opened([relabelled(chunk, SUITE_X25519)])


def test_an_upgraded_suite_field_does_not_open() -> None:
    chunk = seal_all([b"x" * 2000], suite=SUITE_X25519)[0]
    with pytest.raises(UnpackError, match="chunk 0 does not open"):
        opened([relabelled(chunk, SUITE_HYBRID)])


def test_suites_cannot_be_mixed_in_one_contribution() -> None:
    cid = secrets.token_bytes(16)
    hybrid = seal_all(PIECES, cid, SUITE_HYBRID)
    classical = seal_all(PIECES, cid, SUITE_X25519)
    with pytest.raises(UnpackError, match="another suite"):
        opened([hybrid[0], classical[1], hybrid[2]])


def test_a_hybrid_contribution_needs_the_hybrid_key() -> None:
    with pytest.raises(UnpackError, match="no hybrid private key"):
        opened(seal_all(PIECES, suite=SUITE_HYBRID), PrivateKeys(KEYS.classical, None))


def test_an_empty_package_is_one_empty_final_chunk() -> None:
    assert opened(seal_all([b""])) == b""


def test_reordered_chunks_are_refused() -> None:
    a, b, c = seal_all(PIECES)
    with pytest.raises(UnpackError, match="out of order"):
        opened([a, c, b])


def test_a_missing_final_chunk_is_detected() -> None:
    chunks = seal_all(PIECES)
    with pytest.raises(UnpackError, match="cut short"):
        opened(chunks[:2])


def test_a_chunk_of_another_contribution_is_refused() -> None:
    mine, theirs = seal_all(PIECES), seal_all(PIECES)
    with pytest.raises(UnpackError, match="another contribution"):
        opened([mine[0], theirs[1], mine[2]])


def test_relabelled_headers_do_not_open() -> None:
    chunks = seal_all(PIECES)
    # Claim the middle chunk is the final one: the header is the HPKE info, so it won't open.
    forged = bytearray(chunks[1])
    forged[11] |= FLAG_FINAL  # the flags byte: after magic (4), version (1), suite (6)
    assert ChunkHeader.parse(bytes(forged[:HEADER_SIZE])).final
    with pytest.raises(UnpackError, match="does not open"):
        opened([chunks[0], bytes(forged)])


def test_a_flipped_ciphertext_bit_does_not_open() -> None:
    chunks = seal_all(PIECES)
    damaged = bytearray(chunks[0])
    damaged[-1] ^= 1
    with pytest.raises(UnpackError, match="chunk 0 does not open"):
        opened([bytes(damaged), *chunks[1:]])


def test_another_key_does_not_open() -> None:
    chunks = seal_all(PIECES)
    other = PrivateKeys(x25519.X25519PrivateKey.generate(), None)
    with pytest.raises(UnpackError, match="does not open"):
        opened(chunks, other)


def test_bytes_after_the_final_chunk_are_refused() -> None:
    chunks = seal_all(PIECES)
    with pytest.raises(UnpackError):
        opened([*chunks, chunks[0]])


@pytest.mark.parametrize("offset,value,message", [
    (0, 0x58, "bad magic"),
    (4, 2, "unknown envelope version"),
    (6, 0x99, "unknown HPKE suite"),
    (11, 0x80, "unknown chunk flags"),
])
def test_malformed_headers_are_refused(offset: int, value: int, message: str) -> None:
    raw = bytearray(seal_all(PIECES)[0][:HEADER_SIZE])
    raw[offset] = value
    with pytest.raises(EnvelopeError, match=message):
        ChunkHeader.parse(bytes(raw))


def test_a_truncated_upload_is_refused() -> None:
    chunks = seal_all(PIECES)
    with pytest.raises(UnpackError, match="ends inside chunk 2"):
        opened([*chunks[:2], chunks[2][:-5]])
    with pytest.raises(UnpackError, match="ends inside a chunk header"):
        opened([*chunks[:2], chunks[2][:10]])


def test_the_sealer_refuses_misuse() -> None:
    sealer = Sealer(PycaPrimitives(), RECIPIENTS[SUITE_X25519], bytes(16))
    with pytest.raises(ValueError):
        asyncio.run(sealer.seal(b"", final=False))
    asyncio.run(sealer.seal(b"x", final=True))
    with pytest.raises(RuntimeError):
        asyncio.run(sealer.seal(b"y", final=True))
