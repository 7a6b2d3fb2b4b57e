// Zstandard packages in Pyodide (CPython 3.14, compression.zstd from its standard library):
//   node tests/pyodide_zstd.mjs PYODIDE_DIR OUR_PY_DIR WORK_DIR CONTRIBUTION_ID_HEX
// Reads WORK_DIR/in.zip (written by CPython) entry by entry, both with the repository's
// streaming reader and with 3.14's own zipfile, and writes the package of WORK_DIR/disc/ to
// WORK_DIR/out.zip, for CPython to seal and unpack. Prints JSON: the Python version, and
// each entry of in.zip with its method and the SHA-256 of what both readers gave.
import { pathToFileURL } from "node:url";

const [pyodideDir, ourDir, workDir, cid] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(`${pyodideDir}/pyodide.mjs`).href);
const py = await loadPyodide({ indexURL: `${pyodideDir}/` });
for (const [source, target] of [[ourDir, "/lib/ours"], [workDir, "/work"]]) {
  py.FS.mkdirTree(target);
  py.FS.mount(py.FS.filesystems.NODEFS, { root: source }, target);
}
py.globals.set("cid", cid);
const answer = await py.runPythonAsync(`
import hashlib, json, os, sys, zipfile
sys.path[:0] = ["/lib/ours"]
from compression import zstd  # the standard library's, not a backport
from pcir_upload.page.disc.disc import DiscFile
from pcir_upload.page.package.package import LocalPacker, Packager
from pcir_upload.repository.zstdentry import ZstdEntry

entries = {}
with zipfile.ZipFile("/work/in.zip") as archive:
    for info in archive.infolist():
        theirs = archive.read(info)  # 3.14's zipfile decodes method 93 itself
        if info.compress_type == 93:
            with ZstdEntry("/work/in.zip", info) as entry:
                ours = b"".join(iter(lambda: entry.read(1 << 20), b""))
            assert ours == theirs, info.filename
        entries[info.filename] = [info.compress_type, hashlib.sha256(theirs).hexdigest()]

class Disc:
    def __init__(self, root):
        self.root = root
        names = sorted(os.listdir(root))
        self.listing = [DiscFile(n, os.path.getsize(os.path.join(root, n))) for n in names]

    async def read(self, path, offset, length):
        with open(os.path.join(self.root, path), "rb") as f:
            f.seek(offset)
            return f.read(length)

disc = Disc("/work/disc")
packager = Packager(disc.listing, LocalPacker(disc), {"contribution_id": cid})
with open("/work/out.zip", "wb") as out:
    async for part in packager.stream():
        out.write(part)
json.dumps({"python": sys.version.split()[0], "zstd": zstd.zstd_version, "entries": entries})
`);
process.stdout.write(answer);
