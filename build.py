#!/usr/bin/env python3
"""Build dist/: the static site that holds everything the contribution page loads.

Standard library only, so it runs on a bare Python. Every third-party byte comes from a
pinned package whose hash is checked: Pyodide and PyScript through `npm ci` (package-lock.json
records their integrity), the pydicom wheel through pip and the sha256 pinned below. The
browser side of our own package is packed into a wheel beside it. Nothing the page loads is
fetched from anywhere but the page's own origin.

    python build.py            # build dist/ (quick when nothing changed)
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import sys
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
SERVER_ONLY = {"server", "cli.py", "unpack.py", "keys.py"}


def log(message: str) -> None:
    print(f"build: {message}", flush=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def browser_wheel(dest: Path) -> Path:
    """A pure-Python wheel of the modules the page runs (PEP 427), written by hand."""
    version = package_version()
    name = f"pcir_upload-{version}-py3-none-any.whl"
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
    record = []
    for arcname, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = dest / name
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in files.items():
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return wheel


def build() -> None:
    modules = npm_packages()
    dicom_wheel = pydicom_wheel()
    staging = ROOT / "dist.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()

    for path in WEB.iterdir():
        if path.is_file():
            shutil.copy2(path, staging / path.name)

    (staging / "pyodide").mkdir()
    for name in PYODIDE_FILES:
        shutil.copy2(modules / "pyodide" / name, staging / "pyodide" / name)

    # PyScript loads parts of its bundle on demand, so all of dist/ goes (without source maps).
    shutil.copytree(
        modules / "@pyscript" / "core" / "dist", staging / "pyscript",
        ignore=shutil.ignore_patterns("*.map"),
    )

    wheels = staging / "wheels"
    wheels.mkdir()
    shutil.copy2(dicom_wheel, wheels / dicom_wheel.name)
    ours = browser_wheel(wheels)

    worker = staging / "worker.py"
    text = worker.read_text()
    placeholder = "WHEELS = []"
    if placeholder not in text:
        sys.exit("build: web/worker.py has no 'WHEELS = []' line to fill in")
    worker.write_text(text.replace(placeholder, f"WHEELS = {[dicom_wheel.name, ours.name]!r}", 1))

    shutil.rmtree(DIST, ignore_errors=True)
    staging.rename(DIST)
    size = sum(p.stat().st_size for p in DIST.rglob("*") if p.is_file())
    log(f"dist/ ready: {sum(1 for p in DIST.rglob('*') if p.is_file())} files, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    build()
