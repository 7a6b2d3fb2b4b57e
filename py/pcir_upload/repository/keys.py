"""The repository's key pairs: made once, the private halves kept away from the page.

Two pairs, one file each side: a classical X25519 pair (PKCS#8 / SubjectPublicKeyInfo PEM),
and beside it a hybrid post-quantum pair for X-Wing, which HPKE calls MLKEM768-X25519
(draft-connolly-cfrg-xwing-kem). An X-Wing private key is a 32-byte seed from which both
halves are derived (SHAKE-256, 96 bytes: the ML-KEM-768 seed d || z, then the X25519 key);
its public key is ML-KEM-768's (1,184 bytes) followed by X25519's (32). Standard PEM has no
label for either, so they travel as `PCIR X-WING PRIVATE KEY` and `PCIR X-WING PUBLIC KEY`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

PRIVATE_KEY_NAME = "private_key.pem"
PUBLIC_KEY_NAME = "public_key.pem"
_XWING_PRIVATE = "PCIR X-WING PRIVATE KEY"
_XWING_PUBLIC = "PCIR X-WING PUBLIC KEY"
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 -]+)-----\r?\n(.*?)-----END \1-----", re.S)


@dataclass(frozen=True)
class PrivateKeys:
    classical: x25519.X25519PrivateKey
    hybrid: hpke.MLKEM768X25519PrivateKey | None


@dataclass(frozen=True)
class PublicKeys:
    classical: bytes  # 32 raw bytes
    hybrid: bytes | None  # 1,216 raw bytes


def _xwing_keys(seed: bytes) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
    """X-Wing's expandDecapsulationKey (draft-connolly-cfrg-xwing-kem, 5.2)."""
    if len(seed) != 32:
        raise ValueError("an X-Wing private key is a 32-byte seed")
    expanded = hashlib.shake_256(seed).digest(96)
    return (
        mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]),
        x25519.X25519PrivateKey.from_private_bytes(expanded[64:]),
    )


def _xwing_public(seed: bytes) -> bytes:
    mlkem_key, x25519_key = _xwing_keys(seed)
    return mlkem_key.public_key().public_bytes_raw() + x25519_key.public_key().public_bytes_raw()


def _pem(label: str, data: bytes) -> bytes:
    body = base64.b64encode(data).decode("ascii")
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode("ascii")


def _blocks(path: Path) -> dict[str, bytes]:
    """The PEM blocks of a file by label; the PKCS#8/SPKI block is kept whole for pyca."""
    text = path.read_text("ascii")
    found: dict[str, bytes] = {}
    for match in _PEM.finditer(text):
        label = match.group(1)
        if label in (_XWING_PRIVATE, _XWING_PUBLIC):
            found[label] = base64.b64decode("".join(match.group(2).split()))
        else:
            found[label] = match.group(0).encode("ascii")
    return found


def keygen(out_dir: Path) -> tuple[Path, Path]:
    """Write both key pairs into `out_dir`; never overwrites, since a lost key loses uploads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite a key")
    classical = x25519.X25519PrivateKey.generate()
    seed = secrets.token_bytes(32)
    private_pem = classical.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + _pem(_XWING_PRIVATE, seed)
    public_pem = classical.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ) + _pem(_XWING_PUBLIC, _xwing_public(seed))
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def load_private_keys(path: Path) -> PrivateKeys:
    """Both private keys; a file of the classical key alone is still accepted."""
    blocks = _blocks(path)
    if "PRIVATE KEY" not in blocks:
        raise ValueError(f"{path} holds no X25519 private key")
    classical = serialization.load_pem_private_key(blocks["PRIVATE KEY"], password=None)
    if not isinstance(classical, x25519.X25519PrivateKey):
        raise ValueError(f"{path} is not an X25519 private key")
    hybrid = None
    if _XWING_PRIVATE in blocks:
        hybrid = hpke.MLKEM768X25519PrivateKey(*_xwing_keys(blocks[_XWING_PRIVATE]))
    return PrivateKeys(classical, hybrid)


def load_public_keys(path: Path) -> PublicKeys:
    """The raw public keys the page seals to; the hybrid one only if the file has it."""
    blocks = _blocks(path)
    if "PUBLIC KEY" not in blocks:
        raise ValueError(f"{path} holds no X25519 public key")
    classical = serialization.load_pem_public_key(blocks["PUBLIC KEY"])
    if not isinstance(classical, x25519.X25519PublicKey):
        raise ValueError(f"{path} is not an X25519 public key")
    hybrid = blocks.get(_XWING_PUBLIC)
    if hybrid is not None and len(hybrid) != 1216:
        raise ValueError(f"{path}: an X-Wing public key is 1,216 bytes")
    return PublicKeys(classical.public_bytes_raw(), hybrid)
