#!/usr/bin/env python3
"""Build dist/: the static site that holds everything the contribution page loads.

Standard library only, so it runs on a bare Python (Node.js, which `npm ci` needs anyway, does
the two steps Python's standard library cannot: brotli, and compiling Python 3.14 bytecode in
Pyodide itself). Every third-party byte comes from a pinned package whose hash is checked:
Pyodide and PyScript through `npm ci` (package-lock.json records their integrity), the pydicom
wheel through pip and the sha256 pinned below. The browser side of our own package is packed
into a wheel beside it. Nothing the page loads is fetched from anywhere but the page's own
origin.

    python build.py            # build dist/ (quick when nothing changed)

What dist/ holds, and why (figures in docs/BENCHMARKS.md, "First load"):

- `index.html`, `keeps.html`: the only names that stay put; the server has browsers
  revalidate them on every load.
- Everything else sits in a directory named by a hash of its content: `assets/<hash>/` (the
  page's own files from web/), `pyodide/<version>-<hash>/`, `pyscript/<version>-<hash>/`,
  `wheels/<hash>/<wheel>`. A URL there always means the same bytes, so the server lets
  browsers keep them for a year, and a return visit loads nothing but index.html. References
  to them are rewritten in dist's copies (any `./name.ext` in web/'s HTML, CSS, JS and JSON,
  resolved from the referring file; the wheel list in worker.py); web/ stays as it is.
- Less to load and less to run: Python's standard library, the pydicom wheel and ours are
  repacked uncompressed (so that brotli over the whole archive, which finds the redundancy
  between files, replaces per-file deflate), and the modules the page imports at start are
  precompiled to bytecode by Pyodide itself (compiling them from source was most of Python's
  start-up). pydicom's own test data (6 MB the page never reads) is left out (the 13 example
  files `import pydicom` looks up by name stay, as empty files), and so is pydicom.sr, the
  code dictionaries for writing Structured Reports (0.45 MB after brotli; nothing imports it).
- `name.br` (brotli, from Node's zlib) and `name.gz` (gzip) beside every file they make at
  least 10% smaller; the server sends one of them when the request accepts it.
- Stable aliases, `pyodide/<file>` and `wheels/<wheel>` (hard links, revalidated like the HTML),
  for tools that load Pyodide or a wheel by a fixed path (tests/test_browser.py runs a bare
  Pyodide on the page's origin).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DIST = ROOT / "dist"
CACHE = ROOT / "build"
WEB = ROOT / "web"
PACKAGE = ROOT / "py" / "pcir_upload"

PYDICOM_WHEEL = "pydicom-3.0.2-py3-none-any.whl"
PYDICOM_SHA256 = "abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b"

PYODIDE_FILES = [
    "pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json",
]
# The repository-side modules need pyca/cryptography and Starlette; the page never imports them.
SERVER_ONLY = {"repository", "cli.py"}
# What the page's worker imports before it answers (web/worker.py): traced in Pyodide to know
# which modules to precompile.
ENTRY_MODULES = ["pcir_upload.page.browser.worker", "pcir_upload.page.browser.packer"]
# pydicom's test data: neither the page nor `import pydicom` reads it (see pydicom_for_the_page).
PYDICOM_TEST_DATA = ("pydicom/data/test_files/", "pydicom/data/charset_files/")
# pydicom.sr: the code dictionaries for writing Structured Reports (3.3 MB of source, 0.45 MB
# even after brotli). Nothing in pydicom imports it, and neither does the page.
PYDICOM_LEFT_OUT = ("pydicom/sr/",)

HASH_CHARS = 16  # hex digits of sha256 in a directory name; the server matches this pattern
TEXT_SUFFIXES = {".html", ".js", ".mjs", ".css", ".json"}  # where `./name.ext` references are rewritten
REFERENCE = re.compile(r"""(?P<quote>["'(])(?P<ref>\.\.?/[^"'()\s?#]*[^"'()\s?#/])""")
COMPRESS_MIN_SIZE = 256
COMPRESS_MAX_RATIO = 0.9
BROTLI_QUALITY = 11


def log(message: str) -> None:
    print(f"build: {message}", flush=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_hash(directory: Path) -> str:
    """A hash of every file's relative path and content below `directory`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(sha256_file(path).encode() + b"\n")
    return digest.hexdigest()[:HASH_CHARS]


# --- inputs -----------------------------------------------------------------------------------

def npm_packages() -> Path:
    """node_modules as package-lock.json pins it; `npm ci` checks every package's integrity."""
    modules = ROOT / "node_modules"
    marker = modules / ".package-lock.json"
    lock = ROOT / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        log("npm ci (Pyodide, PyScript)")
        subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=ROOT, check=True
        )
    return modules


def npm_version(package: Path) -> str:
    return json.loads((package / "package.json").read_text())["version"]


def pydicom_wheel() -> Path:
    wheel = CACHE / "wheels" / PYDICOM_WHEEL
    if not wheel.exists() or sha256_file(wheel) != PYDICOM_SHA256:
        log(f"pip download {PYDICOM_WHEEL}")
        wheel.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--dest", str(wheel.parent), "pydicom==3.0.2"],
            check=True,
        )
    actual = sha256_file(wheel)
    if actual != PYDICOM_SHA256:
        sys.exit(f"build: {PYDICOM_WHEEL} has sha256 {actual}, expected {PYDICOM_SHA256}")
    return wheel


def package_version() -> str:
    text = (PACKAGE / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not match:
        sys.exit("build: no __version__ in py/pcir_upload/__init__.py")
    return match.group(1)


# --- wheels and zips ----------------------------------------------------------------------------

def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    """A reproducible zip, stored uncompressed (a name ending in "/" is a directory entry), with
    fixed times. Members of a kind sit together (.py beside .py, .pyc beside .pyc), which lets
    brotli find more of what they share."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(members, key=lambda n: (posixpath.splitext(n)[1], n)):
            data = members[name]
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o40755 << 16) | 0x10 if name.endswith("/") else 0o644 << 16
            archive.writestr(info, data)


def write_wheel(path: Path, members: dict[str, bytes]) -> None:
    """A wheel (PEP 427) of `members` with its RECORD made anew, stored uncompressed."""
    dist_info = next(name.split("/")[0] for name in members if name.endswith(".dist-info/WHEEL"))
    record_name = f"{dist_info}/RECORD"
    files = {name: data for name, data in members.items() if name != record_name}
    record = [f"{name},{record_hash(data)},{len(data)}" for name, data in files.items() if not name.endswith("/")]
    record.append(f"{record_name},,")
    files[record_name] = ("\n".join(record) + "\n").encode()
    write_zip(path, files)


def read_zip(path: Path) -> dict[str, bytes]:
    """Every member, directory entries included (as empty)."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename: b"" if info.is_dir() else archive.read(info) for info in archive.infolist()}


def browser_wheel_members() -> dict[str, bytes]:
    """The modules the page runs, as a wheel's members (PEP 427)."""
    version = package_version()
    dist_info = f"pcir_upload-{version}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in SERVER_ONLY or "__pycache__" in relative.parts:
            continue
        files[f"pcir_upload/{relative.as_posix()}"] = path.read_bytes()
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: pcir-upload\nVersion: {version}\n"
        "Summary: The browser side of pcir-upload\n"
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: pcir-upload build.py\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    ).encode()
    return files


def pydicom_for_the_page(wheel: Path) -> dict[str, bytes]:
    """pydicom's wheel without its test data and without pydicom.sr. `import pydicom` imports
    pydicom.examples, which looks up 13 example files by name (and would try to download any it
    does not find, and warn): those names stay, as empty files. The page never reads them."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if re.search(r"pydicom\.sr\b|from pydicom import .*\bsr\b", path.read_text()):
            sys.exit(f"build: {path} uses pydicom.sr, which build.py leaves out of the page's pydicom")
    members = {name: data for name, data in read_zip(wheel).items() if not name.startswith(PYDICOM_LEFT_OUT)}
    examples = members.get("pydicom/examples/__init__.py", b"").decode()
    wanted = set(re.findall(r"""get_testdata_file\(\s*["']([^"']+)["']""", examples))
    kept: dict[str, bytes] = {}
    placed: set[str] = set()
    for name, data in members.items():
        if name.startswith(PYDICOM_TEST_DATA):
            base = posixpath.basename(name)
            if name.startswith(PYDICOM_TEST_DATA[0]) and base in wanted and base not in placed:
                kept[PYDICOM_TEST_DATA[0] + base] = b""
                placed.add(base)
            continue
        kept[name] = data
    if placed != wanted:
        sys.exit(f"build: pydicom.examples names files its wheel lacks: {sorted(wanted - placed)}")
    return kept


# --- Python bytecode, compiled by Pyodide -------------------------------------------------------

# Runs in Pyodide under Node.js: installs the wheels as the page does, imports what the page's
# worker imports at start (with a stand-in for PyScript's `pyscript` module), and compiles
# every module that import pulled in from the standard library or a wheel. Unchecked hash-based
# .pyc files (PEP 552): the interpreter uses them without looking for the source.
PYODIDE_JOB = r"""
import importlib, importlib.util, importlib._bootstrap_external as bootstrap, json, sys, types, zipfile
import js

job = json.load(open("/job/job.json"))
stdlib = next(p for p in sys.path if p.endswith(".zip"))
site = next(p for p in sys.path if p.endswith("site-packages"))
for wheel in job["wheels"]:
    zipfile.ZipFile("/job/" + wheel).extractall(site)
importlib.invalidate_caches()
stand_in = types.ModuleType("pyscript")
stand_in.window = js
stand_in.document = None
sys.modules["pyscript"] = stand_in
errors = []
for name in job["entry"]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        errors.append(f"{name}: {type(exc).__name__}: {exc}")
del sys.modules["pyscript"]
imported = set()
for module in list(sys.modules.values()):
    loader = type(getattr(module, "__loader__", None)).__name__
    if getattr(module, "__file__", None) and loader != "FrozenImporter":
        imported.add(module.__file__)

def compiled(path, source):
    code = compile(source, path, "exec", dont_inherit=True)
    return bytes(bootstrap._code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False))

def compile_archive(archive, root, out):
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            path = f"{root}/{name}"
            if name.endswith(".py") and path in imported:
                dst.writestr(name + "c", compiled(path, src.read(name)))

compile_archive(stdlib, stdlib, "/job/stdlib.pyc.zip")
for wheel in job["wheels"]:
    compile_archive("/job/" + wheel, site, f"/job/{wheel}.pyc.zip")
json.dump({"errors": errors, "version": sys.version, "cache_tag": sys.implementation.cache_tag,
           "imported": len(imported)}, open("/job/result.json", "w"))
"""

NODE_PYODIDE = r"""
import { pathToFileURL } from "node:url";
import fs from "node:fs";
const [pyodideDir, jobDir] = process.argv.slice(-2);
const { loadPyodide } = await import(pathToFileURL(`${pyodideDir}/pyodide.mjs`).href);
const py = await loadPyodide({ indexURL: `${pyodideDir}/` });
py.FS.mkdirTree("/job");
py.FS.mount(py.FS.filesystems.NODEFS, { root: jobDir }, "/job");
py.runPython(fs.readFileSync(`${jobDir}/job.py`, "utf8"));
"""


class Bytecode:
    """What precompile() made: .pyc files by member name, for the standard library and each wheel."""

    def __init__(self, stdlib: dict[str, bytes], wheels: dict[str, dict[str, bytes]], cache_tag: str):
        self.stdlib, self.wheels, self.cache_tag = stdlib, wheels, cache_tag


def precompile(pyodide: Path, wheels: dict[str, bytes]) -> Bytecode:
    """Bytecode for the modules the page imports at start, compiled by the Pyodide the page
    runs. Cached by the hash of everything that goes in."""
    digest = hashlib.sha256((PYODIDE_JOB + NODE_PYODIDE).encode())
    digest.update(sha256_file(pyodide / "pyodide.asm.wasm").encode())
    digest.update(sha256_file(pyodide / "python_stdlib.zip").encode())
    digest.update(json.dumps(ENTRY_MODULES).encode())
    for name, data in wheels.items():
        digest.update(name.encode() + sha256_bytes(data).encode())
    cached = CACHE / "bytecode" / f"{digest.hexdigest()[:32]}.json"
    if not cached.exists():
        log("compiling the page's start-up modules in Pyodide")
        with tempfile.TemporaryDirectory(prefix="pcir-build-") as tmp:
            job = Path(tmp)
            for name, data in wheels.items():
                (job / name).write_bytes(data)
            (job / "job.json").write_text(json.dumps({"wheels": list(wheels), "entry": ENTRY_MODULES}))
            (job / "job.py").write_text(PYODIDE_JOB)
            subprocess.run(
                ["node", "--input-type=module", "-e", NODE_PYODIDE, "--", str(pyodide), str(job)],
                check=True, cwd=ROOT,
            )
            result = json.loads((job / "result.json").read_text())
            if result["errors"]:
                sys.exit("build: the page's modules do not import in Pyodide:\n  " + "\n  ".join(result["errors"]))
            bundle = {"stdlib": {k: base64.b64encode(v).decode() for k, v in read_zip(job / "stdlib.pyc.zip").items()},
                      "wheels": {name: {k: base64.b64encode(v).decode() for k, v in read_zip(job / f"{name}.pyc.zip").items()}
                                 for name in wheels},
                      "python": result["version"], "cache_tag": result["cache_tag"]}
        shutil.rmtree(cached.parent, ignore_errors=True)
        cached.parent.mkdir(parents=True)
        cached.write_text(json.dumps(bundle))
    bundle = json.loads(cached.read_text())
    def decode(members: dict[str, str]) -> dict[str, bytes]:
        return {k: base64.b64decode(v) for k, v in members.items()}

    return Bytecode(decode(bundle["stdlib"]), {name: decode(m) for name, m in bundle["wheels"].items()},
                    bundle["cache_tag"])


def with_bytecode(members: dict[str, bytes], pycs: dict[str, bytes], cache_tag: str | None = None) -> dict[str, bytes]:
    """`members` with each compiled module's .pyc: in place of its source, or, given the
    interpreter's cache_tag, beside the source in __pycache__ (tracebacks then show the lines:
    for our own modules)."""
    out: dict[str, bytes] = {}
    for name, data in members.items():
        pyc = pycs.get(name + "c")
        if pyc is None:
            out[name] = data
        elif cache_tag:
            out[name] = data
            directory, module = posixpath.split(name)
            out[posixpath.join(directory, "__pycache__", f"{module[:-3]}.{cache_tag}.pyc")] = pyc
        else:
            out[name + "c"] = pyc
    return out


# --- references and names -----------------------------------------------------------------------

def rewrite_references(text: str, source: str, mapping: dict[str, str]) -> str:
    """Every `./x` or `../x` reference in `text` (a file at logical path `source`) that names a
    file of the site, pointed at where `mapping` puts that file, relative to where it puts
    `source`. A reference to a file with an extension that the site does not have is an error."""
    here = posixpath.dirname(source)
    there = posixpath.dirname(mapping[source])

    def replace(match: re.Match[str]) -> str:
        ref = match.group("ref")
        target = posixpath.normpath(posixpath.join(here, ref))
        if target not in mapping:
            if posixpath.splitext(ref)[1]:
                sys.exit(f"build: {source} refers to {ref}, which is not in the site")
            return match.group(0)
        new = posixpath.relpath(mapping[target], there or ".")
        if not new.startswith("../"):
            new = "./" + new
        return match.group("quote") + new

    return REFERENCE.sub(replace, text)


def hashed_dir(parent: Path, label: str, staged: Path) -> Path:
    """Move the directory `staged` to parent/<label>-<hash of its content> (or parent/<hash>)."""
    digest = tree_hash(staged)
    target = parent / (f"{label}-{digest}" if label else digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged.rename(target)
    return target


# --- precompression ------------------------------------------------------------------------------

# Brotli at its best quality; for files over 1 MB also with the largest window browsers accept
# (16 MiB), keeping whichever is smaller (the window that wins depends on the file).
NODE_BROTLI = r"""
const fs = require("node:fs"), zlib = require("node:zlib");
const { promisify } = require("node:util");
const brotli = promisify(zlib.brotliCompress);
const jobs = JSON.parse(fs.readFileSync(0, "utf8"));
Promise.all(jobs.map(async ([source, target, quality]) => {
  const data = fs.readFileSync(source);
  const windows = data.length > 1e6 ? [22, 24] : [22];
  const results = await Promise.all(windows.map((lgwin) => brotli(data, { params: {
    [zlib.constants.BROTLI_PARAM_QUALITY]: quality,
    [zlib.constants.BROTLI_PARAM_LGWIN]: lgwin,
    [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
  } })));
  fs.writeFileSync(target, results.reduce((a, b) => (b.length < a.length ? b : a)));
})).catch((error) => { console.error(error); process.exit(1); });
"""


def precompress(site: Path) -> None:
    """Write name.br and name.gz beside every file of `site` they make small enough.

    Both are cached in build/compressed by the hash of what they compress: brotli at its best
    setting takes about a minute for Pyodide's files, which change only with its version."""
    store = CACHE / "compressed"
    store.mkdir(parents=True, exist_ok=True)
    files = [p for p in sorted(site.rglob("*")) if p.is_file() and p.stat().st_size >= COMPRESS_MIN_SIZE]
    digests = {path: sha256_file(path) for path in files}
    missing = [(str(path), str(store / f"{digests[path]}.br"), BROTLI_QUALITY)
               for path in files if not (store / f"{digests[path]}.br").exists()]
    missing = list({target: (source, target, q) for source, target, q in missing}.values())
    if missing:
        log(f"brotli for {len(missing)} files")
        subprocess.run(["node", "-e", NODE_BROTLI], input=json.dumps(missing), text=True, check=True)
    used = set()
    for path in files:
        digest = digests[path]
        gz = store / f"{digest}.gz"
        if not gz.exists():
            with open(path, "rb") as f:
                gz.write_bytes(gzip.compress(f.read(), compresslevel=9, mtime=0))
        for suffix, cached in ((".br", store / f"{digest}.br"), (".gz", gz)):
            used.add(cached.name)
            if cached.stat().st_size <= COMPRESS_MAX_RATIO * path.stat().st_size:
                # A fresh copy: the server ignores a variant older than its file.
                shutil.copyfile(cached, path.with_name(path.name + suffix))
    for stale in store.iterdir():
        if stale.name not in used:
            stale.unlink()


# --- the build -----------------------------------------------------------------------------------

def build() -> None:
    modules = npm_packages()
    pyodide_src = modules / "pyodide"
    pyscript_src = modules / "@pyscript" / "core"
    dicom_wheel = pydicom_wheel()
    staging = ROOT / "dist.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    mapping: dict[str, str] = {}  # logical path (as web/ refers to it) -> path in dist

    # Wheels: ours and pydicom, with the start-up modules precompiled.
    ours_name = f"pcir_upload-{package_version()}-py3-none-any.whl"
    wheel_members = {PYDICOM_WHEEL: pydicom_for_the_page(dicom_wheel), ours_name: browser_wheel_members()}
    plain = {}
    for name, members in wheel_members.items():
        with tempfile.TemporaryDirectory() as tmp:
            write_wheel(Path(tmp) / name, members)
            plain[name] = (Path(tmp) / name).read_bytes()
    bytecode = precompile(pyodide_src, plain)
    wheel_paths = []
    for name, members in wheel_members.items():
        staged = staging / "wheels" / "new"
        staged.mkdir(parents=True)
        tag = bytecode.cache_tag if name == ours_name else None
        write_wheel(staged / name, with_bytecode(members, bytecode.wheels[name], tag))
        final = hashed_dir(staging / "wheels", "", staged)
        mapping[f"wheels/{name}"] = f"wheels/{final.name}/{name}"
        wheel_paths.append(f"{final.name}/{name}")

    # Pyodide, its standard library repacked with the start-up modules as bytecode. Every file of
    # dist/ is written with the build's time (copyfile, not copy2): the server's ETag follows a
    # file's time and size, and the stable names (pages, aliases) are revalidated by it.
    staged = staging / "pyodide" / "new"
    staged.mkdir(parents=True)
    for name in PYODIDE_FILES:
        if name == "python_stdlib.zip":
            stdlib = read_zip(pyodide_src / name)
            write_zip(staged / name, with_bytecode(stdlib, bytecode.stdlib))
        else:
            shutil.copyfile(pyodide_src / name, staged / name)
    final = hashed_dir(staging / "pyodide", npm_version(pyodide_src), staged)
    for name in PYODIDE_FILES:
        mapping[f"pyodide/{name}"] = f"pyodide/{final.name}/{name}"

    # PyScript loads parts of its bundle on demand, so all of dist/ goes (without source maps).
    staged = staging / "pyscript" / "new"
    shutil.copytree(pyscript_src / "dist", staged, ignore=shutil.ignore_patterns("*.map"),
                    copy_function=shutil.copyfile)
    final = hashed_dir(staging / "pyscript", npm_version(pyscript_src), staged)
    for path in final.rglob("*"):
        if path.is_file():
            mapping[f"pyscript/{path.relative_to(final).as_posix()}"] = path.relative_to(staging).as_posix()

    # The page's own files: references rewritten, then hashed together; the HTML last.
    web_files = sorted(p for p in WEB.iterdir() if p.is_file())
    pages = [p for p in web_files if p.suffix == ".html"]
    assets = [p for p in web_files if p.suffix != ".html"]
    for page in pages:
        mapping[page.name] = page.name
    for asset in assets:
        mapping[asset.name] = f"assets/new/{asset.name}"
    staged = staging / "assets" / "new"
    staged.mkdir(parents=True)
    for asset in assets:
        target = staged / asset.name
        if asset.suffix in TEXT_SUFFIXES:
            target.write_text(rewrite_references(asset.read_text(), asset.name, mapping))
        else:
            shutil.copyfile(asset, target)
    worker = staged / "worker.py"
    text = worker.read_text()
    placeholder = "WHEELS = []"
    if placeholder not in text:
        sys.exit("build: web/worker.py has no 'WHEELS = []' line to fill in")
    worker.write_text(text.replace(placeholder, f"WHEELS = {wheel_paths!r}", 1))
    final = hashed_dir(staging / "assets", "", staged)
    for asset in assets:
        mapping[asset.name] = f"assets/{final.name}/{asset.name}"
    for page in pages:
        # Written now, not with the source's time: the page's ETag and Last-Modified must change
        # whenever a file it names does, even when web/index.html itself did not.
        (staging / page.name).write_text(rewrite_references(page.read_text(), page.name, mapping))

    precompress(staging)

    # Stable aliases (no precompressed variants: tools, not the page, load them).
    for logical in [f"pyodide/{name}" for name in PYODIDE_FILES] + [f"wheels/{n}" for n in wheel_members]:
        os.link(staging / mapping[logical], staging / logical)

    shutil.rmtree(DIST, ignore_errors=True)
    staging.rename(DIST)
    files = {p.stat().st_ino: p for p in DIST.rglob("*") if p.is_file()}.values()  # aliases once
    plain = [p for p in files if p.suffix not in (".br", ".gz")]
    log(f"dist/ ready: {len(plain)} files, {sum(p.stat().st_size for p in plain) / 1e6:.1f} MB "
        f"(and {len(files) - len(plain)} precompressed variants)")


if __name__ == "__main__":
    build()
