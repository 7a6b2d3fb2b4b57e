"""The receiver on a real object store (OpenStack Swift with s3api, started by the tests) with
its shared state in a real redis-server: what S3 takes (parts, copies, conditional writes),
and tus through two receivers at once, each request of one contribution to either."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import threading

import httpx
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from botocore.exceptions import ClientError

from objectstore import Swift
from pcir_upload.repository.receive.limits import Limits
from pcir_upload.repository.receive.s3keys import completed_info_key, completed_key
from pcir_upload.repository.receive.s3store import MIN_PART, PIECE, plan_parts
from support import receiver

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}


def test_swift_takes_what_the_store_relies_on(swift: Swift, bucket: str) -> None:
    """UploadPartCopy with a short last part, a short non-last part refused, If-None-Match: *
    refused on an existing key, and If-Match on PUT not implemented (so no store logic uses it)."""
    s3 = swift.client()
    one, two = os.urandom(MIN_PART), os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="one", Body=one)
    s3.put_object(Bucket=bucket, Key="two", Body=two)
    for order, ok in ((("one", "two"), True), (("two", "one"), False)):
        mpu = s3.create_multipart_upload(Bucket=bucket, Key="joined")["UploadId"]
        parts = []
        for number, key in enumerate(order, 1):
            result = s3.upload_part_copy(Bucket=bucket, Key="joined", UploadId=mpu, PartNumber=number,
                                         CopySource={"Bucket": bucket, "Key": key})
            parts.append({"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]})
        if ok:
            s3.complete_multipart_upload(Bucket=bucket, Key="joined", UploadId=mpu, MultipartUpload={"Parts": parts})
            assert s3.get_object(Bucket=bucket, Key="joined")["Body"].read() == one + two
        else:
            with pytest.raises(ClientError, match="EntityTooSmall"):
                s3.complete_multipart_upload(Bucket=bucket, Key="joined", UploadId=mpu, MultipartUpload={"Parts": parts})
            s3.abort_multipart_upload(Bucket=bucket, Key="joined", UploadId=mpu)
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="one", Body=b"x", IfNoneMatch="*")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(ClientError) as unimplemented:
        s3.put_object(Bucket=bucket, Key="one", Body=b"x", IfMatch=s3.head_object(Bucket=bucket, Key="one")["ETag"])
    assert unimplemented.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert s3.get_object(Bucket=bucket, Key="one")["Body"].read() == one


@contextmanager
def receivers(count: int, tmp_path: Path, swift: Swift, redis_url: str, bucket: str, keys, prefix: str = "pcir",
              **options) -> Iterator[list[str]]:
    """`count` receivers (in this process, each its own app and store) on one bucket and Redis."""
    for name, value in swift.env.items():
        os.environ[name] = value
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "index.html").write_text("<!doctype html>")
    with ExitStack() as stack:
        yield [stack.enter_context(receiver(
            tmp_path / f"data{n}", site, keys.public, store_url=f"s3://{bucket}/{prefix}",
            s3_endpoint=swift.endpoint, redis_url=redis_url, **options)) for n in range(count)]


def sha256(body: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(body).digest()).decode()


def secret() -> dict[str, str]:
    return {"Pcir-Upload-Secret": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()}


def test_a_contribution_through_two_receivers(tmp_path: Path, swift: Swift, redis_server, bucket: str, keys) -> None:
    """Partials made on one receiver, written in pieces on the other (one PATCH checksummed, one
    cut short), joined on the first: completed/<id> holds exactly the bytes, its .json the info
    dict; the partials and their pieces are gone; a retried final gets the same upload."""
    s3 = swift.client()
    who = secret()
    # A short partial between two long ones, and a long one that is not a multiple of PIECE:
    # pieces below 5 MiB in the middle must be merged into a part.
    bodies = [os.urandom(PIECE + 3 * MiB), os.urandom(300_000), os.urandom(2 * MiB + 7)]
    with receivers(2, tmp_path, swift, redis_server.url, bucket, keys) as (a, b):
        urls = []
        for body in bodies:
            r = httpx.post(a + "/files/", headers={**TUS, **who, "Upload-Concat": "partial",
                                                   "Upload-Length": str(len(body))})
            assert r.status_code == 201, r.text
            urls.append(r.headers["Location"])
        first, second, third = bodies
        half = 4 * MiB
        r = httpx.patch(b + urls[0], headers={**CHUNK, **who, "Upload-Offset": "0", "Upload-Checksum": sha256(first[:half])},
                        content=first[:half])
        assert r.status_code == 204 and r.headers["Upload-Offset"] == str(half), r.text
        bad = httpx.patch(a + urls[0], headers={**CHUNK, **who, "Upload-Offset": str(half),
                                                "Upload-Checksum": sha256(b"not these")}, content=first[half:])
        assert bad.status_code == 460
        assert httpx.head(b + urls[0], headers={**TUS, **who}).headers["Upload-Offset"] == str(half)
        assert httpx.head(b + urls[0], headers=TUS).status_code == 404  # not without its secret
        r = httpx.patch(a + urls[0], headers={**CHUNK, **who, "Upload-Offset": str(half)}, content=first[half:])
        assert r.headers["Upload-Offset"] == str(len(first))
        for url, body in zip(urls[1:], bodies[1:]):
            r = httpx.patch(b + url, headers={**CHUNK, **who, "Upload-Offset": "0"}, content=body)
            assert r.status_code == 204, r.text
        final = {**TUS, **who, "Upload-Concat": "final;" + " ".join(urls)}
        made = httpx.post(a + "/files/", headers=final)
        assert made.status_code == 201, made.text
        again = httpx.post(b + "/files/", headers=final)
        assert (again.status_code, again.headers["Location"]) == (201, made.headers["Location"])
        final_id = made.headers["Location"].rsplit("/", 1)[1]
        head = httpx.head(b + made.headers["Location"], headers={**TUS, **who})
        assert head.headers["Upload-Offset"] == str(sum(map(len, bodies)))
    data = s3.get_object(Bucket=bucket, Key=completed_key("pcir", final_id))["Body"].read()
    assert data == first + second + third
    info = json.loads(s3.get_object(Bucket=bucket, Key=completed_info_key("pcir", final_id))["Body"].read())
    assert info["id"] == final_id and info["length"] == len(data) and info["concat"] == "final"
    assert info["parts"] == [u.rsplit("/", 1)[1] for u in urls] and info["completed"] == info["created"]
    assert info["owner"] == hashlib.sha256(who["Pcir-Upload-Secret"].encode()).hexdigest()
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", ())}
    assert left == {completed_key("pcir", final_id), completed_info_key("pcir", final_id)}


def test_one_writer_at_a_time_across_receivers(tmp_path: Path, swift: Swift, redis_server, bucket: str, keys) -> None:
    """While one receiver takes a PATCH, the other answers 423 to a PATCH of the same upload;
    a plain upload completes into completed/<id>; DELETE of the whole contribution on the
    other receiver removes what is unfinished."""
    who = secret()
    body = os.urandom(3 * MiB)
    with receivers(2, tmp_path, swift, redis_server.url, bucket, keys, prefix="") as (a, b):
        url = httpx.post(a + "/files/", headers={**TUS, **who, "Upload-Length": str(len(body))}).headers["Location"]

        upload_id = url.rsplit("/", 1)[1]
        answered = threading.Event()

        def slow():
            yield body[:MiB]
            assert answered.wait(30)  # held open until the other receiver has answered
            yield body[MiB:]

        answers: dict[str, httpx.Response] = {}
        writer = threading.Thread(target=lambda: answers.update(
            slow=httpx.patch(a + url, headers={**CHUNK, **who, "Upload-Offset": "0"}, content=slow(), timeout=30)))
        writer.start()
        lease = redis.Redis.from_url(redis_server.url)
        deadline = time.monotonic() + 20
        while not lease.exists(f"pcir-upload:{bucket}/:lease:{upload_id}"):
            assert time.monotonic() < deadline, "the first receiver never took the lease"
            time.sleep(0.02)
        busy = httpx.patch(b + url, headers={**CHUNK, **who, "Upload-Offset": "0"}, content=b"x")
        answered.set()
        writer.join()
        assert busy.status_code == 423
        assert answers["slow"].status_code == 204 and answers["slow"].headers["Upload-Offset"] == str(len(body))
        s3 = swift.client()
        assert s3.get_object(Bucket=bucket, Key=completed_key("", upload_id))["Body"].read() == body
        assert json.loads(s3.get_object(Bucket=bucket, Key=completed_info_key("", upload_id))["Body"].read())["completed"]
        partial = httpx.post(a + "/files/", headers={**TUS, **who, "Upload-Concat": "partial", "Upload-Length": "10"})
        httpx.patch(a + partial.headers["Location"], headers={**CHUNK, **who, "Upload-Offset": "0"}, content=b"12345")
        gone = httpx.request("DELETE", b + "/files/", headers={**TUS, **who})
        assert gone.headers["Pcir-Uploads-Deleted"] == "1"
        assert httpx.head(a + partial.headers["Location"], headers={**TUS, **who}).status_code == 404
        assert httpx.head(a + url, headers={**TUS, **who}).status_code == 200  # complete: kept


def test_expiry_on_the_store(tmp_path: Path, swift: Swift, redis_server, bucket: str, keys) -> None:
    """Unfinished uploads go after expire_after, completed ones after keep_completed: the .json
    first, then the data."""
    limits = Limits(expire_after=1.0, keep_completed=1.0)
    with receivers(1, tmp_path, swift, redis_server.url, bucket, keys, limits=limits, expire_every=0.5) as (a,):
        done = httpx.post(a + "/files/", headers={**CHUNK, "Upload-Length": "5"}, content=b"12345")
        open_ = httpx.post(a + "/files/", headers={**TUS, "Upload-Length": "5"})
        assert done.status_code == open_.status_code == 201
        s3 = swift.client()
        deadline = time.monotonic() + 15
        while s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
        assert httpx.head(a + done.headers["Location"], headers=TUS).status_code == 404


@given(st.lists(st.integers(0, PIECE), max_size=40))
def test_parts_cover_the_pieces_in_order_and_only_the_last_is_short(sizes: list[int]) -> None:
    pieces = [(f"p{n}", size) for n, size in enumerate(sizes)]
    parts = plan_parts(pieces)
    covered = [(k, a, b) for part in parts for k, a, b, _ in part]
    assert covered == [(k, 0, size) for k, size in pieces if size]
    lengths = [sum(b - a for _, a, b, _ in part) for part in parts]
    assert all(MIN_PART <= n <= MIN_PART + PIECE for n in lengths[:-1])
    assert all(whole == (len(part) == 1) for part in parts for *_, whole in part if len(part) == 1 or not whole)


def test_a_client_meets_the_same_limits_whichever_receiver_it_reaches(
    tmp_path: Path, swift: Swift, redis_server, bucket: str, keys
) -> None:
    """The creation rate, the open uploads of a client and those of a contribution are counted in
    Redis (sharedadmission.py): at the limit both receivers answer 429, and a place freed on
    one (an upload completed or terminated there) is free on the other."""

    def create(url: str, length: int = 10, who: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(url + "/files/", headers={**TUS, **(who or {}), "Upload-Length": str(length)})

    # Four creations a minute; empty uploads are complete at once, so none stays open.
    with receivers(2, tmp_path, swift, redis_server.url, bucket, keys, prefix="rate",
                   limits=Limits(client_creations=4)) as (a, b):
        assert [create(url, 0).status_code for url in (a, b, a, b)] == [201] * 4
        for url in (a, b):
            refused = create(url, 0)
            assert refused.status_code == 429 and "in the last minute" in refused.text, refused.text
            assert 1 <= int(refused.headers["Retry-After"]) <= 15  # one more in 15 s at 4 a minute

    # Three uploads unfinished at once per client.
    with receivers(2, tmp_path, swift, redis_server.url, bucket, keys, prefix="open",
                   limits=Limits(client_uploads=3)) as (a, b):
        opened = [create(url) for url in (a, b, a)]
        assert [r.status_code for r in opened] == [201] * 3
        for url in (a, b):
            refused = create(url)
            assert refused.status_code == 429 and "unfinished" in refused.text, refused.text
        done = httpx.patch(b + opened[0].headers["Location"], headers={**CHUNK, "Upload-Offset": "0"}, content=b"x" * 10)
        assert done.status_code == 204
        assert create(a).status_code == 201  # the completed one's place, taken on the other receiver
        assert create(b).status_code == 429

    # Two unfinished per contribution; another contribution from the same client is not held up.
    with receivers(2, tmp_path, swift, redis_server.url, bucket, keys, prefix="secret",
                   limits=Limits(secret_uploads=2)) as (a, b):
        who = secret()
        opened = [create(url, who=who) for url in (a, b)]
        assert [r.status_code for r in opened] == [201] * 2
        for url in (a, b):
            refused = create(url, who=who)
            assert refused.status_code == 429 and "This contribution" in refused.text, refused.text
        assert create(b, who=secret()).status_code == 201
        gone = httpx.delete(a + opened[1].headers["Location"], headers={**TUS, **who})
        assert gone.status_code == 204
        assert create(b, who=who).status_code == 201
        assert create(a, who=who).status_code == 429
