"""The one store interface the tus endpoint speaks to, and its two implementations: a local
folder (store.py, one receiver) or an S3-compatible object store with shared state in Redis
(s3store.py, any number of receivers behind a load balancer)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from pathlib import Path
from typing import Protocol

from pcir_upload.repository.receive.limits import Limits
from pcir_upload.repository.receive.store import MAX_CONTRIBUTION_SIZE, MAX_UPLOAD_SIZE, Checksum, Upload, UploadStore


class Store(Protocol):
    max_size: int

    def expires(self, upload: Upload) -> float | None: ...
    async def lookup(self, upload_id: str, owner: str | None = None) -> Upload: ...
    async def current(self, upload_id: str) -> Upload | None: ...
    async def offset(self, upload: Upload) -> int: ...
    async def create(
        self, length: int | None, *, partial: bool = False, owner: str | None = None,
        client: str | None = None, body: AsyncIterable[bytes] | None = None, checksum: Checksum | None = None,
    ) -> Upload: ...
    async def append(
        self, upload_id: str, offset: int, chunks: AsyncIterable[bytes], length: int | None = None, *,
        owner: str | None = None, checksum: Checksum | None = None,
    ) -> int: ...
    async def concatenate(self, part_ids: Sequence[str], owner: str | None, length: int | None = None) -> Upload: ...
    async def delete(self, upload_id: str, owner: str | None = None) -> None: ...
    async def delete_owned(self, owner: str, wait: float = 5.0) -> int: ...
    async def recover(self) -> None: ...
    async def expire(self) -> int: ...


def open_store(
    data_dir: Path,
    store_url: str | None = None,
    *,
    s3_endpoint: str | None = None,
    redis_url: str | None = None,
    max_size: int = MAX_UPLOAD_SIZE,
    max_contribution_size: int = MAX_CONTRIBUTION_SIZE,
    limits: Limits = Limits(),
) -> Store:
    """`store_url` None: the local folder `data_dir`; s3://bucket/prefix: that object store
    (at `s3_endpoint`, credentials from AWS_*), with its receivers' shared state at `redis_url`."""
    if store_url is None:
        return UploadStore(data_dir, max_size, max_contribution_size=max_contribution_size, limits=limits)
    from pcir_upload.repository.receive.s3keys import S3Location, s3_client
    from pcir_upload.repository.receive.s3store import S3UploadStore

    location = S3Location.parse(store_url)
    if redis_url is None:
        raise ValueError("an object store needs --redis: the receivers share who is writing what there")
    return S3UploadStore(location, s3_client(s3_endpoint), redis_url, max_size,
                         max_contribution_size=max_contribution_size, limits=limits)
