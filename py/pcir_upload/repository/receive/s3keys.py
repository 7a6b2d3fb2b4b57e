"""Where the S3 store keeps each completed upload: the contract between the receivers (who write
it) and the unpack workers (who read it).

    <prefix>/completed/<upload id>        exactly the upload's bytes (a plain upload with all its
                                          bytes, or a final one made of partials; never a partial)
    <prefix>/completed/<upload id>.json   the upload's info dict, as the local store's info.json

The .json is written only after the data object is whole, so its presence means the data is
complete; expiry deletes the .json first, then the data. `prefix` may be empty (then the keys
start at "completed/").
"""

from __future__ import annotations


def _base(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/completed/" if prefix else "completed/"


def completed_key(prefix: str, upload_id: str) -> str:
    """The object holding a completed upload's bytes."""
    return _base(prefix) + upload_id


def completed_info_key(prefix: str, upload_id: str) -> str:
    """The object holding a completed upload's info dict (JSON); written after the data."""
    return _base(prefix) + upload_id + ".json"


def completed_prefix(prefix: str) -> str:
    """What every completed upload's keys start with (for listing them)."""
    return _base(prefix)
