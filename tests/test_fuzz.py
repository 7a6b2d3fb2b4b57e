"""Property tests over everything `unpack` reads from an upload, which anyone can send: random
and mutated bytes, well-sealed packages with damaged ZIP bytes, lying ZIP fields (flags,
methods, sizes, offsets, counts), hostile manifests, deeply nested ones. Whatever
comes in, the only failure is our own error (EnvelopeError, UnpackError), never a stray
exception, and nothing is written outside the output folder or left half-written in it."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import x25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcir_upload.page.seal.envelope import HEADER_SIZE, SUITE_X25519, ChunkHeader, EnvelopeError, Recipient, Sealer, read_chunks
from pcir_upload.repository.keys import PrivateKeys
from pcir_upload.page.package.package import FILES_PREFIX, FORMAT, FORMAT_VERSION, MANIFEST_NAME
from pcir_upload.repository.unpack import MAX_DEPTH, UnpackError, open_envelope, unpack_upload
from pcir_upload.page.package.ziparchive import STORED, ZSTD, ZipWriter, entry
from support import PycaPrimitives, ending, lied

KEY = x25519.X25519PrivateKey.generate()
KEYS = PrivateKeys(KEY, None)
RECIPIENT = Recipient(SUITE_X25519, KEY.public_key().public_bytes_raw())
CID = bytes.fromhex("8f3c2a9e5b71d04c6e2f91a8b3d5c7e0")
FUZZ = settings(max_examples=500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PACKAGES = settings(FUZZ, max_examples=250)  # each one seals, unzips and writes files: ~2-30 ms


def seal(package: bytes, piece: int = 700, cid: bytes = CID) -> bytes:
    """The upload of `package`: sealed chunks of `piece` plaintext bytes."""
    pieces = [package[i : i + piece] for i in range(0, len(package), piece)] or [b""]

    async def run() -> list[bytes]:
        sealer = Sealer(PycaPrimitives(), RECIPIENT, cid)
        return [await sealer.seal(p, final=i == len(pieces) - 1) for i, p in enumerate(pieces)]

    return b"".join(asyncio.run(run()))


def record(path: str, content: bytes) -> dict[str, Any]:
    return {"path": path, "entry": FILES_PREFIX + path, "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest()}


def zip_of(entries: list[tuple[str, bytes]], manifest: bytes | None) -> bytes:
    writer = ZipWriter()
    parts = []
    for name, content in entries:
        parts.append(entry(writer, name, content, ZSTD if content else STORED))
    if manifest is not None:
        parts.append(entry(writer, MANIFEST_NAME, manifest))
    parts.append(writer.finish())
    return b"".join(parts)


FILES = [("DICOMDIR", b"D" * 300), ("IMAGES/IM0001", bytes(range(256)) * 4), ("README.TXT", b"")]
MANIFEST = {"format": FORMAT, "version": FORMAT_VERSION, "contribution_id": CID.hex(),
            "files": [record(path, content) for path, content in FILES]}
PACKAGE = zip_of([(FILES_PREFIX + p, c) for p, c in FILES], json.dumps(MANIFEST).encode())
UPLOAD = seal(PACKAGE)


# --- mutations of byte strings


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` with a few flips, cuts, deletions, insertions or repeats, anywhere."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "delete", "insert", "repeat"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "set" and data:
            value = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80]))
            data[at : at + 8] = bytes([value]) * len(data[at : at + 8])
        elif kind == "truncate":
            del data[at:]
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
    return bytes(data)


# --- the envelope


@FUZZ
@given(st.one_of(st.binary(max_size=64), mutated(UPLOAD[:HEADER_SIZE])))
def test_chunk_header_parse_refuses_only_with_envelope_error(raw: bytes) -> None:
    try:
        header = ChunkHeader.parse(raw)
    except EnvelopeError:
        return
    assert header.pack() == raw  # what parses is exactly what it says


@FUZZ
@given(st.one_of(st.binary(max_size=3000), mutated(UPLOAD)))
def test_read_chunks_refuses_only_with_envelope_error(data: bytes) -> None:
    try:
        chunks = list(read_chunks(io.BytesIO(data)))
    except EnvelopeError:
        return
    assert b"".join(raw + message for _, raw, message in chunks) == data


@FUZZ
@given(st.one_of(st.binary(max_size=3000), mutated(UPLOAD)))
def test_open_envelope_refuses_only_with_unpack_error(data: bytes) -> None:
    sink = io.BytesIO()
    try:
        cid, suite = open_envelope(io.BytesIO(data), KEYS, sink)
    except UnpackError:
        return
    # Opening proves the chunks: only the untouched upload (or one cut at a chunk
    # boundary that still ends on the final chunk, which is the same bytes) opens.
    assert (cid, suite, sink.getvalue()) == (CID, SUITE_X25519, PACKAGE)


# --- the package, sealed properly: only its contents are hostile


def unpack_in_scratch(upload: bytes) -> bool:
    """Unpack `upload`; it must succeed (True) or raise UnpackError (False), and write only
    inside OUT."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        data, out = root / "upload", root / "box" / "out"
        out.mkdir(parents=True)
        data.write_bytes(upload)
        before = {p: p.read_bytes() if p.is_file() else None for p in root.rglob("*")}
        try:
            unpack_upload("u" * 32, data, KEYS, out)
        except UnpackError:
            after = {p: p.read_bytes() if p.is_file() else None for p in root.rglob("*")}
            assert after == before, "a refused contribution left something behind"
            return False
        after = {p: p.read_bytes() if p.is_file() else None for p in root.rglob("*")}
        new = set(after) - set(before)
        assert all(p.resolve().is_relative_to(out.resolve()) for p in new), sorted(new)
        assert all(before[p] == after[p] for p in before), "something outside was changed"
        assert not any(p.is_symlink() for p in new)
        return True


@PACKAGES
@given(mutated(PACKAGE))
def test_a_damaged_zip_is_refused_with_unpack_error(package: bytes) -> None:
    unpack_in_scratch(seal(package))


PATHS = st.one_of(
    st.sampled_from(["a", "a/b", "DICOMDIR", "../evil", "a/../../evil", "/abs", "C:/evil", "a\\..\\evil",
                     "a//b", "./a", "a/./b", "a\x00b", "", ".", "..", "a/", "A", "manifest.json",
                     "IMAGES", "IMAGES/IM0001/x", "\u00e9", "e\u0301", "a" * 300]),
    st.text(alphabet=st.sampled_from("ab/.\\:\x00\u00e9 "), max_size=12),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2**64) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def hostile_packages(draw: st.DrawFn) -> bytes:
    """Entries and a manifest that almost agree: paths, sizes, digests and fields gone wrong."""
    contents = [draw(st.binary(max_size=300)) for _ in range(draw(st.integers(0, 3)))]
    records, entries = [], []
    for content in contents:
        path = draw(PATHS)
        item = record(path, content)
        change = draw(st.sampled_from([None, "size", "sha256", "entry", "path", "field"]))
        if change == "size":
            item["size"] = draw(st.one_of(st.integers(-1, 1000), JSON_VALUES))
        elif change == "sha256":
            item["sha256"] = draw(st.one_of(st.just(hashlib.sha256(b"other").hexdigest()), JSON_VALUES))
        elif change in ("entry", "path"):
            item[change] = draw(st.one_of(PATHS, JSON_VALUES))
        elif change == "field":
            item[draw(st.text(max_size=6))] = draw(JSON_VALUES)
        records.append(item)
        name = draw(st.one_of(st.just(FILES_PREFIX + path), PATHS.filter(bool)))
        entries.append((name, draw(st.one_of(st.just(content), st.binary(max_size=300)))))
    if draw(st.booleans()):
        entries.append((draw(PATHS.filter(bool)), draw(st.binary(max_size=50))))
    manifest: Any = {"format": FORMAT, "version": FORMAT_VERSION, "contribution_id": CID.hex(), "files": records}
    for _ in range(draw(st.integers(0, 2))):
        manifest[draw(st.sampled_from(["format", "version", "contribution_id", "files", "extra"]))] = draw(JSON_VALUES)
    raw = json.dumps(manifest).encode()
    raw = draw(st.one_of(st.just(raw), mutated(raw), st.none()))
    try:
        return zip_of(entries, raw)
    except ValueError:  # a name our writer refuses to write (empty, too long): no package
        return zip_of([], raw)


@PACKAGES
@given(hostile_packages())
def test_hostile_manifests_and_entries_are_refused_with_unpack_error(package: bytes) -> None:
    unpack_in_scratch(seal(package))


# --- ZIP fields a writer can lie in, and the manifest's depth

NAMES = [FILES_PREFIX + path for path, _ in FILES] + [MANIFEST_NAME]
U64 = st.integers(0, 2**64 - 1)
SIZES = st.one_of(U64, st.integers(0, 2**20), st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**32, 2**63]))
LIES = {
    "flags": st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0x0809, 0x0800, 0x0008, 0x0000, 0x0848, 0x2808])),
    "method": st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 1, 6, 8, 9, 12, 14, 93, 95, 98, 99])),
    "size": SIZES,
    "compressed": SIZES,
    "offset": SIZES,
}
END_LIES = {"entries": SIZES, "directory_size": SIZES, "directory_offset": SIZES}


@st.composite
def lying_packages(draw: st.DrawFn) -> bytes:
    """The untouched package with a few of its entries' fields, or its end record's, rewritten."""
    package = PACKAGE
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 4)):
            field = draw(st.sampled_from(sorted(LIES)))
            package = lied(package, draw(st.sampled_from(NAMES)), **{field: draw(LIES[field])})
        else:
            field = draw(st.sampled_from(sorted(END_LIES)))
            package = ending(package, **{field: draw(END_LIES[field])})
    return package


@PACKAGES
@given(lying_packages())
def test_lying_zip_fields_are_refused_with_unpack_error(package: bytes) -> None:
    unpack_in_scratch(seal(package))


@st.composite
def nested_manifests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """The manifest with a member nested `depth` levels (brackets in strings beside it), and
    whether it should unpack: only when it nests no deeper than MAX_DEPTH and is whole."""
    depth = draw(st.one_of(st.integers(0, MAX_DEPTH + 3), st.sampled_from([1_000, 100_000])))
    kinds = draw(st.lists(st.sampled_from([("[", "]"), ('{"k": ', "}")]), min_size=1, max_size=3))
    levels = (kinds * depth)[:depth]
    whole = draw(st.integers(0, 9)) > 0
    inner = "".join(opening for opening, _ in levels) + "0" + "".join(closing for _, closing in reversed(levels))
    if not whole:
        inner = inner[:-1] if levels else "["
    noise = draw(st.text(alphabet='[]{}"\\ab', max_size=12))
    body = json.dumps({**MANIFEST, "noise": noise})[:-1] + ', "deep": ' + inner + "}"
    return body.encode(), whole and depth + 1 <= MAX_DEPTH


@PACKAGES
@given(nested_manifests())
def test_the_manifests_depth_is_bounded_without_recursion(manifest: tuple[bytes, bool]) -> None:
    raw, unpacks = manifest
    assert unpack_in_scratch(seal(zip_of([(FILES_PREFIX + p, c) for p, c in FILES], raw))) == unpacks


def test_the_unmutated_package_unpacks() -> None:
    """The properties above are only worth something if the untouched input passes."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        result = unpack_upload("u" * 32, _written(out / "upload", UPLOAD), KEYS, out / "out")
        assert result.files == len(FILES)
        assert (out / "out" / CID.hex() / "files" / "IMAGES" / "IM0001").read_bytes() == FILES[1][1]


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
