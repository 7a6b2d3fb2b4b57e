"""build.py: its parts on small inputs, and the dist/ it built (`./dev test` builds it first):
content-hashed names referenced consistently, no reference to a missing file, precompressed
files that decompress to their originals, wheels whose RECORD is right."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import json
import posixpath
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from pcir_upload.repository.receive.app import IMMUTABLE_PATH

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
PAGES = {"index.html", "keeps.html"}
ALIAS_DIRS = {"pyodide", "wheels"}  # stable names beside the hashed directories


def load_build():
    spec = importlib.util.spec_from_file_location("pcir_build", ROOT / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load_build()

needs_dist = pytest.mark.skipif(not (DIST / "index.html").exists(), reason="dist/ is not built (./dev test builds it)")


# --- the parts --------------------------------------------------------------------------------

MAPPING = {
    "index.html": "index.html",
    "app.js": "assets/h1/app.js",
    "folders.js": "assets/h1/folders.js",
    "pyscript.json": "assets/h1/pyscript.json",
    "pyodide/pyodide.mjs": "pyodide/1.0-h2/pyodide.mjs",
    "pyscript/core.js": "pyscript/0.7-h3/core.js",
}


def test_references_follow_the_files() -> None:
    html = '<script src="./app.js"></script><script type="module" src="./pyscript/core.js"></script>'
    assert build.rewrite_references(html, "index.html", MAPPING) == (
        '<script src="./assets/h1/app.js"></script><script type="module" src="./pyscript/0.7-h3/core.js"></script>'
    )
    # A module beside its import: unchanged. A config pointing elsewhere: relative to itself.
    assert build.rewrite_references("import { x } from './folders.js';", "app.js", MAPPING) == (
        "import { x } from './folders.js';"
    )
    assert build.rewrite_references('{"interpreter": "./pyodide/pyodide.mjs"}', "pyscript.json", MAPPING) == (
        '{"interpreter": "../../pyodide/1.0-h2/pyodide.mjs"}'
    )
    # CSS url() too; and text that only looks like a path is left alone.
    assert build.rewrite_references("a { background: url(./folders.js) }", "index.html", MAPPING) == (
        "a { background: url(./assets/h1/folders.js) }"
    )
    assert build.rewrite_references("<a href=\"./\">back</a> 'see ./notes'", "index.html", MAPPING) == (
        "<a href=\"./\">back</a> 'see ./notes'"
    )


def test_a_reference_to_a_missing_file_stops_the_build() -> None:
    with pytest.raises(SystemExit, match="missing.js"):
        build.rewrite_references("import './missing.js';", "app.js", MAPPING)


def test_tree_hash_follows_content_and_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.js").write_text("1")
    first = build.tree_hash(tmp_path / "a")
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    (tmp_path / "a" / "x.js").write_text("2")
    second = build.tree_hash(tmp_path / "a")
    (tmp_path / "a" / "x.js").rename(tmp_path / "a" / "y.js")
    assert len({first, second, build.tree_hash(tmp_path / "a")}) == 3


def test_wheels_get_a_true_record(tmp_path: Path) -> None:
    members = {"pkg/__init__.py": b"x = 1\n", "pkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\n",
               "pkg-1.0.dist-info/RECORD": b"stale"}
    build.write_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", members)
    check_record(tmp_path / "pkg-1.0-py3-none-any.whl")


def test_bytecode_replaces_or_joins_the_source() -> None:
    members = {"a/m.py": b"src", "a/n.py": b"other", "a/data.txt": b"d"}
    pycs = {"a/m.pyc": b"code"}
    assert build.with_bytecode(members, pycs) == {"a/m.pyc": b"code", "a/n.py": b"other", "a/data.txt": b"d"}
    assert build.with_bytecode(members, pycs, "cpython-314") == {
        "a/m.py": b"src", "a/__pycache__/m.cpython-314.pyc": b"code", "a/n.py": b"other", "a/data.txt": b"d"}


def test_pydicom_loses_its_test_data_but_keeps_the_example_names(tmp_path: Path) -> None:
    wheel = tmp_path / "pydicom-3.0.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pydicom/examples/__init__.py", 'a = get_testdata_file("CT_small.dcm")\n'
                                                   "b = get_testdata_file('DICOMDIR')\n")
        z.writestr("pydicom/data/test_files/CT_small.dcm", b"x" * 1000)
        z.writestr("pydicom/data/test_files/dicomdirtests/DICOMDIR", b"x" * 1000)
        z.writestr("pydicom/data/test_files/other.dcm", b"x" * 1000)
        z.writestr("pydicom/data/charset_files/chrX1.dcm", b"x")
        z.writestr("pydicom/data/palettes/pet.dcm", b"p")
        z.writestr("pydicom/sr/_concepts_dict.py", b"big")
        z.writestr("pydicom/dataset.py", b"code")
    kept = build.pydicom_for_the_page(wheel)
    assert kept == {
        "pydicom/examples/__init__.py": kept["pydicom/examples/__init__.py"],
        "pydicom/data/test_files/CT_small.dcm": b"",
        "pydicom/data/test_files/DICOMDIR": b"",
        "pydicom/data/palettes/pet.dcm": b"p",
        "pydicom/dataset.py": b"code",
    }


# --- the built dist/ ----------------------------------------------------------------------------

def served_files() -> list[Path]:
    """What the site serves: every file but the precompressed variants."""
    return [p for p in DIST.rglob("*") if p.is_file() and p.suffix not in (".br", ".gz")]


def url_path(path: Path) -> str:
    return "/" + path.relative_to(DIST).as_posix()


def is_alias(path: Path) -> bool:
    parts = path.relative_to(DIST).parts
    return len(parts) == 2 and parts[0] in ALIAS_DIRS


@needs_dist
def test_every_file_but_the_pages_has_a_content_hashed_name() -> None:
    for path in served_files():
        name = path.relative_to(DIST).as_posix()
        if name in PAGES or is_alias(path):
            assert not IMMUTABLE_PATH.match(url_path(path)), name
        else:
            assert IMMUTABLE_PATH.match(url_path(path)), f"{name} would not be cached, or could change under its name"


@needs_dist
def test_hashed_directories_are_named_by_their_content() -> None:
    directories = {p.parent for p in served_files() if IMMUTABLE_PATH.match(url_path(p))}
    assert len(directories) >= 5  # assets, pyodide, pyscript, two wheels
    for directory in directories:
        digest = hashlib.sha256()
        for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix not in (".br", ".gz")):
            digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
        assert directory.name.endswith(digest.hexdigest()[:16]), directory


def references(text: str) -> list[str]:
    return [m.group("ref") for m in build.REFERENCE.finditer(text)]


@needs_dist
def test_every_reference_of_the_page_resolves() -> None:
    """From the HTML and the page's own files (what web/ holds): every ./ or ../ reference names
    a file of dist/, and every one in the HTML a content-hashed one or another page."""
    ours = [DIST / name for name in PAGES] + [
        p for p in (DIST / "assets").rglob("*") if p.is_file() and p.suffix in build.TEXT_SUFFIXES]
    seen = 0
    for path in ours:
        here = posixpath.dirname(url_path(path))
        for ref in references(path.read_text()):
            target = posixpath.normpath(posixpath.join(here, ref))
            if ref.endswith("/"):
                continue
            seen += 1
            assert (DIST / target.lstrip("/")).is_file(), f"{path.name} refers to {ref}: no such file"
            if path.name in PAGES:
                assert target.lstrip("/") in PAGES or IMMUTABLE_PATH.match(target), f"{path.name}: {ref}"
    assert seen >= 10
    index = (DIST / "index.html").read_text()
    for needed in ("/app.js", "/pyscript/", "/worker.py", "/pyscript.json", "/style.css"):
        assert needed in index


@needs_dist
def test_the_pages_are_newer_than_what_they_name() -> None:
    """Browsers revalidate the pages by ETag and Last-Modified, which the server derives from the
    file's time and size: a page that kept its source's time while a file it names changed
    (same length, since only a hash in it changed) would be answered 304, and go stale."""
    newest = max(p.stat().st_mtime for p in served_files() if IMMUTABLE_PATH.match(url_path(p)))
    for name in PAGES:
        assert (DIST / name).stat().st_mtime >= newest, name


@needs_dist
def test_the_worker_finds_its_interpreter_and_wheels() -> None:
    config_path = next((DIST / "assets").glob("*/pyscript.json"))
    interpreter = json.loads(config_path.read_text())["interpreter"]
    target = posixpath.normpath(posixpath.join(posixpath.dirname(url_path(config_path)), interpreter))
    assert IMMUTABLE_PATH.match(target) and target.endswith("/pyodide.mjs")
    pyodide = DIST / posixpath.dirname(target).lstrip("/")
    for name in build.PYODIDE_FILES:
        assert (pyodide / name).is_file(), name
    worker = next((DIST / "assets").glob("*/worker.py")).read_text()
    wheels = json.loads(re.search(r"^WHEELS = (\[.*\])", worker, re.M).group(1).replace("'", '"'))
    assert sorted(w.split("/")[-1].split("-")[0] for w in wheels) == ["pcir_upload", "pydicom"]
    for wheel in wheels:
        assert IMMUTABLE_PATH.match(f"/wheels/{wheel}") and (DIST / "wheels" / wheel).is_file(), wheel


def check_record(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        rows = [line.split(",") for line in z.read(record_name).decode().splitlines()]
        listed = {name: (digest, size) for name, digest, size in rows}
        assert sorted(listed) == sorted(names)
        for name in names:
            if name == record_name:
                continue
            data = z.read(name)
            expected = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert listed[name] == (expected, str(len(data))), name


@needs_dist
def test_the_wheels_are_whole_and_precompiled() -> None:
    pydicom = next((DIST / "wheels").glob("*/pydicom-*.whl"))
    ours = next((DIST / "wheels").glob("*/pcir_upload-*.whl"))
    for wheel in (pydicom, ours):
        check_record(wheel)
    with zipfile.ZipFile(pydicom) as z:
        names = z.namelist()
        assert "pydicom/dataset.pyc" in names and "pydicom/dataset.py" not in names
        assert not any(n.startswith("pydicom/sr/") for n in names)
        test_data = [i for i in z.infolist() if i.filename.startswith("pydicom/data/test_files/")]
        assert len(test_data) == 13 and all(i.file_size == 0 for i in test_data)
    with zipfile.ZipFile(ours) as z:
        names = z.namelist()
        # Our own modules keep their source (tracebacks) with bytecode beside it.
        assert "pcir_upload/page/browser/worker.py" in names
        assert any(re.fullmatch(r"pcir_upload/page/browser/__pycache__/worker\.cpython-3\d+\.pyc", n) for n in names)
        assert not any(n.startswith(("pcir_upload/repository/", "pcir_upload/cli")) for n in names)


@needs_dist
def test_start_up_modules_are_unchecked_bytecode_of_one_python() -> None:
    stdlib = next((DIST / "pyodide").glob("*/python_stdlib.zip"))
    headers = set()
    with zipfile.ZipFile(stdlib) as z:
        names = set(z.namelist())
        assert {"asyncio/__init__.pyc", "json/decoder.pyc", "encodings/utf_8.pyc"} <= names
        assert "asyncio/__init__.py" not in names
        assert "unittest/__init__.py" in names  # not imported at start: stays source
        for name in names:
            if name.endswith(".pyc"):
                data = z.read(name)
                headers.add((data[:4], int.from_bytes(data[4:8], "little")))
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    # One magic number; flags 0b01: hash-based, not checked against a source (PEP 552).
    assert len(headers) == 1 and next(iter(headers))[1] == 1


@needs_dist
def test_aliases_are_the_hashed_files() -> None:
    for alias in [p for p in served_files() if is_alias(p)]:
        twins = [p for p in served_files() if p.name == alias.name and p != alias]
        assert len(twins) == 1 and twins[0].stat().st_ino == alias.stat().st_ino, alias
    assert (DIST / "pyodide" / "pyodide.mjs").is_file()
    assert list((DIST / "wheels").glob("pcir_upload-*.whl"))


@needs_dist
def test_precompressed_files_are_their_originals() -> None:
    gz = sorted(DIST.rglob("*.gz"))
    br = sorted(DIST.rglob("*.br"))
    for variant in gz:
        assert gzip.decompress(variant.read_bytes()) == variant.with_suffix("").read_bytes(), variant
    # Python's standard library has no brotli; Node's zlib does.
    script = ("const fs=require('fs'),zlib=require('zlib'),crypto=require('crypto');"
              "for (const f of JSON.parse(fs.readFileSync(0,'utf8')))"
              "console.log(crypto.createHash('sha256').update(zlib.brotliDecompressSync(fs.readFileSync(f))).digest('hex'))")
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    out = subprocess.run(["node", "-e", script], input=json.dumps([str(p) for p in br]),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [hashlib.sha256(p.with_suffix("").read_bytes()).hexdigest() for p in br]
    # What matters most is compressed: the interpreter, the standard library, the wheels, our files.
    compressed = {p.with_suffix("").name for p in br}
    for name in ("pyodide.asm.wasm", "pyodide.asm.mjs", "python_stdlib.zip", "index.html", "app.js"):
        assert name in compressed, name
    assert any(n.startswith("pydicom-") for n in compressed) and any(n.startswith("pcir_upload-") for n in compressed)
    # And worth having: every variant is at most 90% of its original.
    for variant in gz + br:
        assert variant.stat().st_size <= 0.9 * variant.with_suffix("").stat().st_size, variant


@needs_dist
def test_no_source_maps_and_nothing_left_over() -> None:
    assert not list(DIST.rglob("*.map"))
    assert not (ROOT / "dist.new").exists()
