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

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


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


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix in it, from `serve --store` or `enqueue --store`."""

    bucket: str
    prefix: str  # no leading or trailing "/"; may be empty

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """s3://bucket/prefix (the prefix optional)."""
        parts = urlsplit(url)
        if (parts.scheme != "s3" or not _BUCKET.fullmatch(parts.netloc) or parts.query
                or parts.fragment):
            raise ValueError(f"{url!r} is not s3://bucket/prefix")
        return cls(parts.netloc, parts.path.strip("/"))

    def key(self, rest: str) -> str:
        return f"{self.prefix}/{rest}" if self.prefix else rest


def s3_client(endpoint: str | None) -> Any:
    """boto3's S3 client at `endpoint` (None: AWS_ENDPOINT_URL, else Amazon's); credentials and
    region from the usual AWS_* variables (or files); path-style addressing, which every
    S3-compatible store serves."""
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path"}, max_pool_connections=64, retries={"max_attempts": 3})
    return boto3.client("s3", endpoint_url=endpoint, config=config)
