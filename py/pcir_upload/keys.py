"""The repository's X25519 key pair: made once, the private half kept away from the page."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

PRIVATE_KEY_NAME = "private_key.pem"
PUBLIC_KEY_NAME = "public_key.pem"


def keygen(out_dir: Path) -> tuple[Path, Path]:
    """Write a new key pair into `out_dir`; never overwrites, since a lost key loses uploads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite a key")
    key = x25519.X25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def load_private_key(path: Path) -> x25519.X25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, x25519.X25519PrivateKey):
        raise ValueError(f"{path} is not an X25519 private key")
    return key


def load_public_key_raw(path: Path) -> bytes:
    """The 32 raw bytes the page seals to."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, x25519.X25519PublicKey):
        raise ValueError(f"{path} is not an X25519 public key")
    return key.public_bytes_raw()
