"""Where the opener finds completed uploads: the receiver's data folder, or an S3 store.

Both answer the same two questions. `ids()` is a listing, which on an object store may lag
(Swift updates container listings asynchronously): it may only delay finding work, never
decide anything. `get(id)` reads one upload by its key, which is read-after-write: an upload
is complete when it says so (the folder's info.json, the store's `<id>.json` written after
the data object is whole; receive/s3keys.py), and otherwise it is None.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pcir_upload.repository.receive.s3keys import S3Location, completed_info_key, completed_key, completed_prefix, s3_client
from pcir_upload.repository.receive.store import UPLOAD_ID, UploadStore, completed_uploads

_INFO_SUFFIX = ".json"
@dataclass(frozen=True)
class Completed:
    """One complete upload: its bytes are read through `open()`, which may seek."""

    id: str
    size: int
    opener: Callable[[], BinaryIO]

    def open(self) -> BinaryIO:
        return self.opener()


def local_upload(upload_id: str, path: Path) -> Completed:
    """An upload's bytes in a file on this machine."""
    return Completed(upload_id, path.stat().st_size, lambda: open(path, "rb"))


class Source(Protocol):
    def ids(self) -> Iterator[str]:
        """The ids of completed uploads a listing finds now, oldest first where known."""

    def get(self, upload_id: str) -> Completed | None:
        """The upload if it is complete, read by its key; None otherwise."""


class FolderSource:
    """The receiver's data folder (receive/store.py's layout)."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)

    def __str__(self) -> str:
        return str(self.data_dir)

    def ids(self) -> Iterator[str]:
        return (upload.id for upload in completed_uploads(self.data_dir))

    def get(self, upload_id: str) -> Completed | None:
        upload = UploadStore(self.data_dir).get(upload_id)
        if upload is None or not upload.finished or upload.offset != upload.length:
            return None
        return local_upload(upload.id, upload.data_path)


class S3Source:
    """Completed uploads in an S3 bucket under `prefix` (receive/s3keys.py's layout)."""

    def __init__(self, client: Any, bucket: str, prefix: str = ""):
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def ids(self) -> Iterator[str]:
        start = completed_prefix(self.prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start)
        for page in pages:
            for item in page.get("Contents", ()):
                name = item["Key"][len(start):]
                upload_id = name[: -len(_INFO_SUFFIX)]
                if name.endswith(_INFO_SUFFIX) and UPLOAD_ID.fullmatch(upload_id):
                    yield upload_id

    def get(self, upload_id: str) -> Completed | None:
        from botocore.exceptions import ClientError

        from pcir_upload.repository.s3reader import ObjectReader

        if not UPLOAD_ID.fullmatch(upload_id):
            return None
        key = completed_key(self.prefix, upload_id)
        try:
            info = json.loads(self.client.get_object(
                Bucket=self.bucket, Key=completed_info_key(self.prefix, upload_id))["Body"].read())
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        size = head["ContentLength"]
        if info.get("id") != upload_id or info.get("length") != size or info.get("concat") == "partial":
            return None
        etag = head["ETag"]
        return Completed(upload_id, size, lambda: ObjectReader.buffered(self.client, self.bucket, key, size, etag))


def source_for(store: str, s3_endpoint: str | None = None) -> Source:
    """`s3://bucket/prefix` for an S3 store, anything else the receiver's data folder."""
    if store.startswith("s3://"):
        location = S3Location.parse(store)
        return S3Source(s3_client(s3_endpoint), location.bucket, location.prefix)
    return FolderSource(Path(store))
