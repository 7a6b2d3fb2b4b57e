"""The HPKE the browser runs, checked against the published test vectors (RFC 9180 for the
classical suite; draft-ietf-hpke-pq for the hybrid KEM, MLKEM768-X25519 = X-Wing) and against
pyca/cryptography's independent implementation."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke as pyca_hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from pcir_upload.repository.keys import keygen, load_private_keys, load_public_keys

from pcir_upload.page.seal import hpke
from support import PycaPrimitives

# From RFC 9180's test-vectors.json (as shipped in the cryptography_vectors package):
# mode 0, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
VECTORS = Path(__file__).parent / "vectors"
VECTOR = json.loads((VECTORS / "rfc9180-x25519-sha256-aes256gcm-base.json").read_text())
# From draft-ietf-hpke-pq's vectors (as shipped in cryptography_vectors): MLKEM768-X25519 with
# HKDF-SHA256 and ChaCha20-Poly1305, the one published for this KEM with an HKDF-SHA256 schedule.
PQ_VECTOR = json.loads((VECTORS / "hpke-pq-mlkem768-x25519-sha256-chacha20poly1305-base.json").read_text())
SUITE = pyca_hpke.Suite(pyca_hpke.KEM.X25519, pyca_hpke.KDF.HKDF_SHA256, pyca_hpke.AEAD.AES_256_GCM)
HYBRID = pyca_hpke.Suite(pyca_hpke.KEM.MLKEM768_X25519, pyca_hpke.KDF.HKDF_SHA256, pyca_hpke.AEAD.AES_256_GCM)
X25519 = hpke.KEM_X25519_HKDF_SHA256


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
    shared_secret, enc = asyncio.run(hpke.encap(FixedEphemeral(), X25519, h("pkRm")))
    assert enc == h("enc")
    assert shared_secret == h("shared_secret")


def test_key_schedule_matches_the_vector() -> None:
    key, base_nonce = hpke.key_schedule(hpke.suite_id(X25519), h("shared_secret"), h("info"))
    assert key == h("key")
    assert base_nonce == h("base_nonce")


def test_seal_matches_the_vectors_first_encryption() -> None:
    first = VECTOR["encryptions"][0]
    assert first["nonce"] == VECTOR["base_nonce"]  # sequence number 0: a single-shot message
    sealed = asyncio.run(hpke.seal(
        FixedEphemeral(), X25519, h("pkRm"), h("info"), bytes.fromhex(first["pt"]), bytes.fromhex(first["aad"])))
    assert sealed == h("enc") + bytes.fromhex(first["ct"])


def test_pyca_opens_what_we_seal() -> None:
    recipient = x25519.X25519PrivateKey.generate()
    message = b"pixel data " * 1000
    sealed = asyncio.run(hpke.seal(
        PycaPrimitives(), X25519, recipient.public_key().public_bytes_raw(), b"some info", message))
    assert len(sealed) == len(message) + hpke.N_ENC[X25519] + hpke.N_T
    assert SUITE.decrypt(sealed, recipient, info=b"some info") == message
    with pytest.raises(Exception):
        SUITE.decrypt(sealed, recipient, info=b"other info")


def test_a_low_order_public_key_is_refused() -> None:
    class ZeroDH(PycaPrimitives):
        async def x25519(self, private_key: Any, public_key: bytes) -> bytes:
            return bytes(32)  # what a small-order point yields

    with pytest.raises(ValueError, match="not a valid X25519 key"):
        asyncio.run(hpke.seal(ZeroDH(), X25519, bytes(32), b"", b"x"))


def test_a_public_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        asyncio.run(hpke.seal(PycaPrimitives(), X25519, bytes(31), b"", b"x"))
    with pytest.raises(ValueError, match="1216 bytes"):
        asyncio.run(hpke.seal(PycaPrimitives(), hpke.KEM_MLKEM768_X25519, bytes(1184), b"", b"x"))


# The hybrid KEM.

def pq(name: str) -> bytes:
    return bytes.fromhex(PQ_VECTOR[name])


class FixedXWing(PycaPrimitives):
    """X-Wing's encapsulation with the vector's randomness (eseed = ikmE, 64 bytes).

    WebCrypto and pyca take no randomness for ML-KEM, so its half comes from the vector: the
    ciphertext that derandomised ML-KEM would have made, and its secret (decapsulated with
    the vector's key). What is under test is what this project writes: the split of the
    keys, the X25519 half, the combiner and the order of the ciphertext.
    """

    async def generate_x25519(self) -> tuple[Any, bytes]:
        key = x25519.X25519PrivateKey.from_private_bytes(pq("ikmE")[32:])
        return key, key.public_key().public_bytes_raw()

    async def mlkem768_encapsulate(self, public_key: bytes) -> tuple[bytes, bytes]:
        assert public_key == pq("pkRm")[:1184]
        expanded = hashlib.shake_256(pq("skRm")).digest(96)
        ct_m = pq("enc")[:1088]
        return mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]).decapsulate(ct_m), ct_m


def test_the_pq_vector_is_the_kem_we_implement() -> None:
    assert PQ_VECTOR["kem_id"] == hpke.KEM_MLKEM768_X25519 == 0x647A
    assert PQ_VECTOR["kdf_id"] == hpke.KDF_HKDF_SHA256


def test_xwing_encap_matches_the_vector() -> None:
    shared_secret, enc = asyncio.run(hpke.encap(FixedXWing(), hpke.KEM_MLKEM768_X25519, pq("pkRm")))
    assert enc == pq("enc")
    assert shared_secret == pq("shared_secret")


def test_the_key_schedule_matches_the_pq_vector() -> None:
    suite = hpke.suite_id(PQ_VECTOR["kem_id"], PQ_VECTOR["kdf_id"], PQ_VECTOR["aead_id"])
    assert suite == pq("suite_id")
    key, base_nonce = hpke.key_schedule(suite, pq("shared_secret"), pq("info"))
    assert (key, base_nonce) == (pq("key"), pq("base_nonce"))


def test_pyca_opens_what_we_seal_with_the_hybrid_suite(tmp_path: Path) -> None:
    private_path, public_path = keygen(tmp_path)
    private, public = load_private_keys(private_path), load_public_keys(public_path)
    assert public.hybrid is not None and len(public.hybrid) == 1216
    message = b"pixel data " * 1000
    sealed = asyncio.run(hpke.seal(
        PycaPrimitives(), hpke.KEM_MLKEM768_X25519, public.hybrid, b"info", message))
    assert len(sealed) == len(message) + 1120 + 16
    assert HYBRID.decrypt(sealed, private.hybrid, info=b"info") == message
    with pytest.raises(Exception):
        HYBRID.decrypt(sealed, private.hybrid, info=b"other")
