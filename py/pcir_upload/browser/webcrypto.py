"""HPKE's primitives from the browser's WebCrypto: X25519 and AES-256-GCM, run natively."""

from __future__ import annotations

from typing import Any

import js

from ._js import js_object, to_bytes, uint8array

_X25519 = {"name": "X25519"}


class WebCrypto:
    """`hpke.Primitives` on `crypto.subtle`; the ephemeral private key never leaves WebCrypto."""

    def __init__(self) -> None:
        self._subtle = js.crypto.subtle

    async def generate_x25519(self) -> tuple[Any, bytes]:
        pair = await self._subtle.generateKey(
            js_object(_X25519), False, js_object(["deriveBits"])
        )
        public = await self._subtle.exportKey("raw", pair.publicKey)
        return pair.privateKey, to_bytes(public)

    async def x25519(self, private_key: Any, public_key: bytes) -> bytes:
        peer = await self._subtle.importKey(
            "raw", uint8array(public_key), js_object(_X25519), True, js_object([])
        )
        bits = await self._subtle.deriveBits(
            js_object({"name": "X25519", "public": peer}), private_key, 256
        )
        return to_bytes(bits)

    async def aes_gcm_seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        aes_key = await self._subtle.importKey(
            "raw", uint8array(key), js_object({"name": "AES-GCM"}), False,
            js_object(["encrypt"]),
        )
        sealed = await self._subtle.encrypt(
            js_object({
                "name": "AES-GCM", "iv": uint8array(nonce),
                "additionalData": uint8array(aad), "tagLength": 128,
            }),
            aes_key,
            uint8array(plaintext),
        )
        return to_bytes(sealed)
