"""The repository's de-identification secret: it keys every new UID and every subject
pseudonym, so whoever holds it can link released data back to original UIDs. It is made
once (32 random bytes, mode 0600) and refused when others could read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

SECRET_BYTES = 32


class SecretError(Exception):
    pass


def load_secret(path: Path) -> bytes:
    """The secret in `path`, made first if the file does not exist."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(SECRET_BYTES))
    mode = path.stat().st_mode
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise SecretError(f"{path} can be read or written by anyone (mode {stat.filemode(mode)}); chmod 600 it")
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise SecretError(f"{path} holds {len(secret)} bytes; a secret has at least {SECRET_BYTES}")
    return secret
