"""The HPKE the browser runs, checked against RFC 9180's published test vector for our suite
and against pyca/cryptography's independent implementation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke as pyca_hpke
from cryptography.hazmat.primitives.asymmetric import x25519

from pcir_upload import hpke
from support import PycaPrimitives

# From RFC 9180's test-vectors.json (as shipped in the cryptography_vectors package):
# mode 0, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
VECTOR = json.loads((Path(__file__).parent / "vectors" / "rfc9180-x25519-sha256-aes256gcm-base.json").read_text())
SUITE = pyca_hpke.Suite(pyca_hpke.KEM.X25519, pyca_hpke.KDF.HKDF_SHA256, pyca_hpke.AEAD.AES_256_GCM)


def h(name: str) -> bytes:
    return bytes.fromhex(VECTOR[name])


class FixedEphemeral(PycaPrimitives):
    """The vector's ephemeral key instead of a fresh one, so every output can be compared."""

    async def generate_x25519(self) -> tuple[Any, bytes]:
        key = x25519.X25519PrivateKey.from_private_bytes(h("skEm"))
        return key, key.public_key().public_bytes_raw()


def test_the_vector_is_the_suite_we_implement() -> None:
    assert (VECTOR["mode"], VECTOR["kem_id"], VECTOR["kdf_id"], VECTOR["aead_id"]) == (
        hpke.MODE_BASE, hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES_256_GCM)


def test_encap_matches_the_vector() -> None:
    shared_secret, enc = asyncio.run(hpke.encap(FixedEphemeral(), h("pkRm")))
    assert enc == h("enc")
    assert shared_secret == h("shared_secret")


def test_key_schedule_matches_the_vector() -> None:
    key, base_nonce = hpke.key_schedule(h("shared_secret"), h("info"))
    assert key == h("key")
    assert base_nonce == h("base_nonce")


def test_seal_matches_the_vectors_first_encryption() -> None:
    first = VECTOR["encryptions"][0]
    assert first["nonce"] == VECTOR["base_nonce"]  # sequence number 0: a single-shot message
    sealed = asyncio.run(hpke.seal(
        FixedEphemeral(), h("pkRm"), h("info"), bytes.fromhex(first["pt"]), bytes.fromhex(first["aad"])))
    assert sealed == h("enc") + bytes.fromhex(first["ct"])


def test_pyca_opens_what_we_seal() -> None:
    recipient = x25519.X25519PrivateKey.generate()
    message = b"pixel data " * 1000
    sealed = asyncio.run(hpke.seal(
        PycaPrimitives(), recipient.public_key().public_bytes_raw(), b"some info", message))
    assert len(sealed) == len(message) + hpke.N_ENC + hpke.N_T
    assert SUITE.decrypt(sealed, recipient, info=b"some info") == message
    with pytest.raises(Exception):
        SUITE.decrypt(sealed, recipient, info=b"other info")


def test_a_low_order_public_key_is_refused() -> None:
    class ZeroDH(PycaPrimitives):
        async def x25519(self, private_key: Any, public_key: bytes) -> bytes:
            return bytes(32)  # what a small-order point yields

    with pytest.raises(ValueError, match="not a valid X25519 key"):
        asyncio.run(hpke.seal(ZeroDH(), bytes(32), b"", b"x"))


def test_a_public_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        asyncio.run(hpke.seal(PycaPrimitives(), bytes(31), b"", b"x"))
