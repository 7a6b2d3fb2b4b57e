"""An S3 object as a seekable file, in bounded memory.

The opener reads an upload front to back, so one GetObject from the current position streams
it; a seek (a ZIP reader's jump to its central directory) closes that stream and the next read
opens another at the new position with a Range header. A stream cut short (a connection
reset, a proxy's timeout) is opened again where it stopped, a few times. Every GET carries
the ETag seen when the upload was found (If-Match), so bytes of two versions of one key are
never spliced together. What is held in memory is the buffer of io.BufferedReader and what
urllib3 reads at once.
"""

from __future__ import annotations

import io
import os
from typing import Any

BUFFER = 1024 * 1024
REOPENS = 3  # a stream that breaks more often than this in a row is a failure, said as OSError


class ObjectReader(io.RawIOBase):
    """Bytes [0, size) of `bucket/key` at version `etag`."""

    def __init__(self, client: Any, bucket: str, key: str, size: int, etag: str):
        super().__init__()
        self._client, self._bucket, self._key, self._etag = client, bucket, key, etag
        self._size, self._position = size, 0
        self._body: Any = None
        self.gets = 0  # how many GETs it took (the tests and the bench read it)

    @classmethod
    def buffered(cls, client: Any, bucket: str, key: str, size: int, etag: str) -> io.BufferedReader:
        return io.BufferedReader(cls(client, bucket, key, size, etag), buffer_size=BUFFER)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        position = base + offset
        if position < 0:
            raise OSError(f"seek to {position}, before the start of {self._key}")
        if position != self._position:
            self._drop()
            self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._position)
        if want <= 0:
            return 0
        for _ in range(REOPENS + 1):
            if self._body is None:
                self._open()
            try:
                data = self._body.read(want)
            except Exception as exc:  # urllib3's and botocore's stream errors alike
                if not _broken_stream(exc):
                    raise
                data = b""
            if data:
                buffer[: len(data)] = data
                self._position += len(data)
                return len(data)
            self._drop()  # the stream ended before `size`: open another where it stopped
        raise OSError(f"{self._key}: the store's stream broke at byte {self._position} of {self._size}")

    def close(self) -> None:
        self._drop()
        super().close()

    def _open(self) -> None:
        answer = self._client.get_object(
            Bucket=self._bucket, Key=self._key, IfMatch=self._etag, Range=f"bytes={self._position}-"
        )
        self._body = answer["Body"]
        self.gets += 1

    def _drop(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None


def _broken_stream(exc: Exception) -> bool:
    from botocore.exceptions import ConnectionError as BotoConnectionError, ReadTimeoutError, ResponseStreamingError
    from urllib3.exceptions import HTTPError

    return isinstance(exc, (BotoConnectionError, ReadTimeoutError, ResponseStreamingError, HTTPError, ConnectionError))
