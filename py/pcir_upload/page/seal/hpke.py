"""RFC 9180 HPKE, base mode, single-shot Seal, for two suites that differ only in their KEM:

- DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM: the classical suite (RFC 9180);
- MLKEM768-X25519, HKDF-SHA256, AES-256-GCM: the hybrid post-quantum suite. The KEM is
  X-Wing (draft-connolly-cfrg-xwing-kem), which HPKE names MLKEM768-X25519, KEM id 0x647A
  (draft-ietf-hpke-pq), as pyca/cryptography implements it.

The browser has no pyca/cryptography, so the key schedule and the KEMs are written out here,
step by step as the specifications give them, over primitives that each side supplies:
X25519, ML-KEM-768 encapsulation and AES-256-GCM (WebCrypto in the browser, pyca/cryptography
in tests). HKDF (HMAC-SHA256) and X-Wing's SHA3-256 come from the standard library on both
sides. Opening is the repository's job and is done by pyca/cryptography's own `hpke` module,
which makes every browser-sealed message a test of this code against an independent
implementation.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Protocol

KEM_X25519_HKDF_SHA256 = 0x0020
KEM_MLKEM768_X25519 = 0x647A
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_256_GCM = 0x0002

N_SECRET = 32  # Nsecret of both KEMs
N_ENC = {KEM_X25519_HKDF_SHA256: 32, KEM_MLKEM768_X25519: 1120}  # Nenc
N_PK = {KEM_X25519_HKDF_SHA256: 32, KEM_MLKEM768_X25519: 1216}  # Npk
N_K = 32  # Nk of AES-256-GCM
N_N = 12  # Nn of AES-256-GCM
N_T = 16  # Nt, the GCM tag
MODE_BASE = 0x00

_MLKEM768_PK, _MLKEM768_CT = 1184, 1088
_XWING_LABEL = b"\\.//^\\"  # the ASCII art \./ over /^\


class Primitives(Protocol):
    """The operations HPKE needs that the standard library does not have."""

    async def generate_x25519(self) -> tuple[Any, bytes]:
        """A fresh ephemeral key pair: (private key in the provider's own form, raw public key)."""

    async def x25519(self, private_key: Any, public_key: bytes) -> bytes:
        """The raw 32-byte X25519 shared secret."""

    async def mlkem768_encapsulate(self, public_key: bytes) -> tuple[bytes, bytes]:
        """ML-KEM-768 (FIPS 203) Encaps to a 1,184-byte key: (shared secret, ciphertext)."""

    async def aes_gcm_seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """AES-256-GCM ciphertext with the 16-byte tag appended."""


def suite_id(kem_id: int, kdf_id: int = KDF_HKDF_SHA256, aead_id: int = AEAD_AES_256_GCM) -> bytes:
    """The suite_id of RFC 9180, 5.1, which every labeled step of the key schedule carries."""
    return b"HPKE" + kem_id.to_bytes(2, "big") + kdf_id.to_bytes(2, "big") + aead_id.to_bytes(2, "big")


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
    kem_suite_id = b"KEM" + KEM_X25519_HKDF_SHA256.to_bytes(2, "big")
    eae_prk = _labeled_extract(kem_suite_id, b"", b"eae_prk", dh)
    return _labeled_expand(kem_suite_id, eae_prk, b"shared_secret", kem_context, N_SECRET)


async def _x25519_ephemeral(primitives: Primitives, public_key: bytes) -> tuple[bytes, bytes]:
    """(ephemeral public key, shared secret) with `public_key`, refusing small-order keys."""
    ephemeral_private, ephemeral_public = await primitives.generate_x25519()
    dh = await primitives.x25519(ephemeral_private, public_key)
    if not any(dh):
        # RFC 7748 6.1: an all-zero output means a small-order public key; refuse it.
        raise ValueError("the recipient public key is not a valid X25519 key")
    return ephemeral_public, dh


async def encap(primitives: Primitives, kem_id: int, recipient_public_key: bytes) -> tuple[bytes, bytes]:
    """Encap(pkR) of the KEM: (shared_secret, enc)."""
    if len(recipient_public_key) != N_PK.get(kem_id, -1):
        raise ValueError(f"a public key of KEM {kem_id:#06x} is {N_PK.get(kem_id)} bytes")
    if kem_id == KEM_X25519_HKDF_SHA256:
        # DHKEM(X25519, HKDF-SHA256), RFC 9180, 4.1.
        enc, dh = await _x25519_ephemeral(primitives, recipient_public_key)
        return extract_and_expand(dh, enc + recipient_public_key), enc
    # X-Wing Encapsulate (draft-connolly-cfrg-xwing-kem, 5.4): the public key is ML-KEM's
    # followed by X25519's; the ciphertext is ML-KEM's followed by the ephemeral X25519 key.
    pk_m, pk_x = recipient_public_key[:_MLKEM768_PK], recipient_public_key[_MLKEM768_PK:]
    ct_x, ss_x = await _x25519_ephemeral(primitives, pk_x)
    ss_m, ct_m = await primitives.mlkem768_encapsulate(pk_m)
    if len(ss_m) != N_SECRET or len(ct_m) != _MLKEM768_CT:
        raise ValueError("ML-KEM-768 returned a result of the wrong size")
    shared_secret = hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + _XWING_LABEL).digest()
    return shared_secret, ct_m + ct_x


def key_schedule(suite: bytes, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    """KeySchedule for mode base with no PSK (RFC 9180, 5.1): (key, base_nonce)."""
    psk_id_hash = _labeled_extract(suite, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite, b"", b"info_hash", info)
    context = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = _labeled_extract(suite, shared_secret, b"secret", b"")
    key = _labeled_expand(suite, secret, b"key", context, N_K)
    base_nonce = _labeled_expand(suite, secret, b"base_nonce", context, N_N)
    return key, base_nonce


async def seal(
    primitives: Primitives,
    kem_id: int,
    recipient_public_key: bytes,
    info: bytes,
    plaintext: bytes,
    aad: bytes = b"",
) -> bytes:
    """Single-shot SealBase (RFC 9180, 6.1) with HKDF-SHA256 and AES-256-GCM: enc || ciphertext.

    That concatenation is what pyca/cryptography's `Suite.decrypt` takes. A single-shot
    message uses sequence number 0, so the nonce is the base nonce itself.
    """
    shared_secret, enc = await encap(primitives, kem_id, recipient_public_key)
    key, base_nonce = key_schedule(suite_id(kem_id), shared_secret, info)
    return enc + await primitives.aes_gcm_seal(key, base_nonce, aad, plaintext)
