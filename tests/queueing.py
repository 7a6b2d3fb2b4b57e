"""What the queue test and bench/unpackqueue.py share: many contributions made by the page's
own Python core (Contribution, LocalPacker, the sealer, tus through httpx) against a real
receiver, either one on a local data folder or a `pcir-upload serve --store s3://...` process
writing to the object store as an operator runs it (contribute_to_store: receiver, store and
workers end to end); workers started as `pcir-upload worker` processes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contributing import finish, prepare
from pcir_upload.page.disc.discovery import scan_disc
from pcir_upload.repository.keys import PUBLIC_KEY_NAME
from pcir_upload.repository.receive.s3keys import completed_info_key, completed_key, completed_prefix
from pcir_upload.repository.receive.store import completed_uploads
from receiverproc import ReceiverProcess
from support import FolderDisc, receiver

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Made:
    """One contribution as it left the page: its disc folder and the receipt's contribution id."""

    disc: Path
    contribution_id: str


def make_small_disc(root: Path, seed: int, size: int) -> Path:
    """A few files of random bytes (incompressible, as images are) in two folders."""
    rng = random.Random(seed)
    (root / "IMAGES").mkdir(parents=True)
    left, n = size, 0
    while left > 0:
        take = min(left, rng.randint(size // 6, size // 2))
        (root / "IMAGES" / f"IM{n:04d}").write_bytes(rng.randbytes(take))
        left, n = left - take, n + 1
    (root / "README.TXT").write_text(f"Disc {seed}.\n" * 50)
    return root


def _contribute(discs: list[Path], keys: Any, endpoint: str, scan: bool = False) -> list[Made]:
    """Every disc contributed at once to `endpoint`, each to its receipt; with `scan`, each
    file's role as the page's scan finds it (de-identification goes by it)."""

    async def one(folder: Path) -> Any:
        disc = FolderDisc(folder)
        if scan:
            roles = (await scan_disc(disc.listing, disc)).roles
            disc.listing = [dataclasses.replace(f, role=roles.get(f.path)) for f in disc.listing]
        return await finish(prepare(endpoint, disc, keys))

    async def all_of_them() -> list[Made]:
        runs = await asyncio.gather(*(one(d) for d in discs))
        made = []
        for disc, run in zip(discs, runs):
            assert run.error is None, run.error
            made.append(Made(disc, run.receipt.contribution_id))
        return made

    return asyncio.run(all_of_them())


def _discs(folder: Path, count: int, size: int) -> list[Path]:
    return [make_small_disc(folder / "discs" / f"d{i:03d}", seed=i, size=size) for i in range(count)]


def contribute_many(folder: Path, site: Path, keys: Any, count: int, size: int) -> tuple[Path, list[Made]]:
    """`count` discs of about `size` bytes contributed at once through one receiver writing to
    `folder/data`; returns the data folder and what was made."""
    return contribute_discs(folder, site, keys, _discs(folder, count, size))


def contribute_discs(folder: Path, site: Path, keys: Any, discs: list[Path], scan: bool = False) -> tuple[Path, list[Made]]:
    """These disc folders contributed at once through one receiver writing to `folder/data`."""
    data = folder / "data"
    with receiver(data, site, keys.public) as url:
        made = _contribute(discs, keys, url + "/files/", scan)
    return data, made


def contribute_to_store(folder: Path, keys: Any, count: int, size: int, store: str, s3_endpoint: str,
                        redis_url: str, env: Mapping[str, str]) -> list[Made]:
    """`count` discs of about `size` bytes contributed at once through a `pcir-upload serve
    --store STORE` process (credentials in `env`), as an operator runs it."""
    discs = _discs(folder, count, size)
    site = folder / "site"  # the page's files are not needed: its core runs here
    site.mkdir()
    (site / "index.html").write_text("<!doctype html>")
    server = ReceiverProcess(folder / "receiver", site, keys.folder / PUBLIC_KEY_NAME, "--store", store,
                             "--s3-endpoint", s3_endpoint, "--redis", redis_url)
    server.env.update(env)
    with server:
        return _contribute(discs, keys, server.url + "/files/")


def completed_ids(client: Any, bucket: str, prefix: str) -> list[str]:
    """The ids of the completed uploads on the store (those with their .json, s3keys.py)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=completed_prefix(prefix))
    keys = [o["Key"] for page in pages for o in page.get("Contents", ())]
    return sorted(k.rsplit("/", 1)[1][: -len(".json")] for k in keys if k.endswith(".json"))


def put_completed(data: Path, client: Any, bucket: str, prefix: str) -> list[str]:
    """Every completed upload of a local data folder into the bucket as the S3 store keeps it:
    the data object, then its info .json (whose presence means complete). Returns the ids."""
    uploads = completed_uploads(data)

    def put(upload: Any) -> None:
        client.upload_file(str(upload.data_path), bucket, completed_key(prefix, upload.id))
        info = json.loads((upload.data_path.parent / "info.json").read_text())
        client.put_object(Bucket=bucket, Key=completed_info_key(prefix, upload.id), Body=json.dumps(info).encode())

    with ThreadPoolExecutor(8) as pool:  # Swift fsyncs every object: several at once
        list(pool.map(put, uploads))
    return [upload.id for upload in uploads]


def cli(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess:
    """`pcir-upload ARGS` as an operator runs it, to the end."""
    return subprocess.run([sys.executable, "-m", "pcir_upload.cli", *args], env=_env(env),
                          capture_output=True, text=True, timeout=120)


def start_worker(store: str, redis: str, key: Path, out: Path, log: Path, env: Mapping[str, str],
                 *extra: str) -> subprocess.Popen:
    """`pcir-upload worker` in the background, its log in `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "pcir_upload.cli", "worker", "--store", store, "--redis", redis,
         "--private-key", str(key), "--out", str(out), *extra],
        env=_env(env), stdin=subprocess.DEVNULL, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "py"), "PYTHONUNBUFFERED": "1", **extra}


def children(pid: int) -> list[int]:
    """The processes `pid` started (an RQ worker's work horse)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
