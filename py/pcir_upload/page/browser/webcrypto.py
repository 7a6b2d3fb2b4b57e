"""HPKE's primitives from the browser's WebCrypto: X25519, ML-KEM-768 and AES-256-GCM, native."""

from __future__ import annotations

from typing import Any

import js
from pyodide.ffi import JsException

from pcir_upload.page.browser._js import from_js, js_object, to_bytes, uint8array

_X25519 = {"name": "X25519"}
_MLKEM768 = {"name": "ML-KEM-768"}


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

    async def supports_mlkem768(self) -> bool:
        """Whether this browser's WebCrypto has ML-KEM-768 (Chromium from 2026 on; not all do)."""
        if not hasattr(self._subtle, "encapsulateBits"):
            return False
        try:
            await self._subtle.generateKey(
                js_object(_MLKEM768), False, js_object(["encapsulateBits", "decapsulateBits"])
            )
        except JsException:
            return False
        return True

    async def mlkem768_encapsulate(self, public_key: bytes) -> tuple[bytes, bytes]:
        key = await self._subtle.importKey(
            "raw-public", uint8array(public_key), js_object(_MLKEM768), False,
            js_object(["encapsulateBits"]),
        )
        result = await self._subtle.encapsulateBits(js_object(_MLKEM768), key)
        return to_bytes(result.sharedKey), to_bytes(result.ciphertext)

    async def sha256(self, data: bytes) -> bytes:
        """SHA-256, native and off this worker's thread (a whole message: WebCrypto has no
        incremental hashing)."""
        return to_bytes(await self._subtle.digest("SHA-256", uint8array(data)))

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
        return from_js(js.Uint8Array.new(sealed))  # bytes once HPKE puts enc before it
