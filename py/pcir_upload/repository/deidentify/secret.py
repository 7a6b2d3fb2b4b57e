"""The repository's de-identification secret: it keys every new UID and every subject
pseudonym, so whoever holds it can link released data back to original UIDs. It is made
once (32 random bytes, mode 0600) and refused when others could read it.

It is the only state de-identification shares between contributions (UIDs and pseudonyms are
HMACs under it, kept in no map), and it is only ever read after it is made. Making it is
one link(2) of a whole file, so two processes making it at once agree on one secret and
neither reads a half-written one. Workers never make it (`create=False`): two machines
with their own disks would each make a different one, and the same patient would become
two subjects, the same study two studies."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

SECRET_BYTES = 32


class SecretError(Exception):
    pass


def _make(path: Path) -> None:
    draft = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(SECRET_BYTES))
            f.flush()
            os.fsync(f.fileno())
        os.link(draft, path)  # refuses an existing path: the first one made wins
    except FileExistsError:
        pass
    finally:
        draft.unlink(missing_ok=True)


def load_secret(path: Path, create: bool = True) -> bytes:
    """The secret in `path`, made first if the file does not exist and `create` allows it."""
    if not path.exists():
        if not create:
            raise SecretError(f"{path} does not exist; a worker never makes one (on two machines they would "
                              "differ): make it once with `pcir-upload deidentify --secret FILE` and give "
                              "every worker that file")
        _make(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise SecretError(f"{path} can be read or written by anyone (mode {stat.filemode(mode)}); chmod 600 it")
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise SecretError(f"{path} holds {len(secret)} bytes; a secret has at least {SECRET_BYTES}")
    return secret
