"""RFC 9180 HPKE, base mode, single-shot Seal, for one suite:
DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.

The browser has no pyca/cryptography, so the key schedule is written out here, step by step as
the RFC gives it, over three primitives that each side supplies: X25519 key generation, X25519
Diffie-Hellman and AES-256-GCM encryption (WebCrypto in the browser, pyca/cryptography in
tests). HKDF is HMAC-SHA256 from the standard library on both sides. Opening is the
repository's job and is done by pyca/cryptography's own `hpke` module, which makes every
browser-sealed message a test of this code against an independent implementation.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Protocol

KEM_X25519_HKDF_SHA256 = 0x0020
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_256_GCM = 0x0002

N_SECRET = 32  # Nsecret of the KEM
N_ENC = 32  # Nenc: an X25519 public key
N_K = 32  # Nk of AES-256-GCM
N_N = 12  # Nn of AES-256-GCM
N_T = 16  # Nt, the GCM tag
MODE_BASE = 0x00

_KEM_SUITE_ID = b"KEM" + KEM_X25519_HKDF_SHA256.to_bytes(2, "big")
_SUITE_ID = (
    b"HPKE"
    + KEM_X25519_HKDF_SHA256.to_bytes(2, "big")
    + KDF_HKDF_SHA256.to_bytes(2, "big")
    + AEAD_AES_256_GCM.to_bytes(2, "big")
)


class Primitives(Protocol):
    """The three operations HPKE needs that the standard library does not have."""

    async def generate_x25519(self) -> tuple[Any, bytes]:
        """A fresh ephemeral key pair: (private key in the provider's own form, raw public key)."""

    async def x25519(self, private_key: Any, public_key: bytes) -> bytes:
        """The raw 32-byte X25519 shared secret."""

    async def aes_gcm_seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """AES-256-GCM ciphertext with the 16-byte tag appended."""


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    # An empty salt is HashLen zero bytes (RFC 5869); HMAC pads its key with zeros anyway.
    return hmac.digest(salt, ikm, hashlib.sha256)


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), hashlib.sha256)
        out += block
        counter += 1
    return out[:length]


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _hkdf_extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    return _hkdf_expand(prk, labeled_info, length)


def extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    """DHKEM's shared secret from the Diffie-Hellman output (RFC 9180, 4.1)."""
    eae_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"eae_prk", dh)
    return _labeled_expand(_KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, N_SECRET)


async def encap(primitives: Primitives, recipient_public_key: bytes) -> tuple[bytes, bytes]:
    """Encap(pkR) of DHKEM(X25519, HKDF-SHA256): (shared_secret, enc)."""
    if len(recipient_public_key) != N_ENC:
        raise ValueError("an X25519 public key is 32 bytes")
    ephemeral_private, enc = await primitives.generate_x25519()
    dh = await primitives.x25519(ephemeral_private, recipient_public_key)
    if not any(dh):
        # RFC 7748 6.1: an all-zero output means a small-order public key; refuse it.
        raise ValueError("the recipient public key is not a valid X25519 key")
    return extract_and_expand(dh, enc + recipient_public_key), enc


def key_schedule(shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    """KeySchedule for mode base with no PSK (RFC 9180, 5.1): (key, base_nonce)."""
    psk_id_hash = _labeled_extract(_SUITE_ID, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(_SUITE_ID, b"", b"info_hash", info)
    context = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = _labeled_extract(_SUITE_ID, shared_secret, b"secret", b"")
    key = _labeled_expand(_SUITE_ID, secret, b"key", context, N_K)
    base_nonce = _labeled_expand(_SUITE_ID, secret, b"base_nonce", context, N_N)
    return key, base_nonce


async def seal(
    primitives: Primitives,
    recipient_public_key: bytes,
    info: bytes,
    plaintext: bytes,
    aad: bytes = b"",
) -> bytes:
    """Single-shot SealBase (RFC 9180, 6.1), returned as enc || ciphertext.

    That concatenation is what pyca/cryptography's `Suite.decrypt` takes. A single-shot
    message uses sequence number 0, so the nonce is the base nonce itself.
    """
    shared_secret, enc = await encap(primitives, recipient_public_key)
    key, base_nonce = key_schedule(shared_secret, info)
    return enc + await primitives.aes_gcm_seal(key, base_nonce, aad, plaintext)
