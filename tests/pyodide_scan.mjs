// Runs scan_disc in Pyodide (the browser's Python) on a folder and prints the summary as JSON:
//   node tests/pyodide_scan.mjs PYODIDE_DIR PYDICOM_PACKAGE_DIR PYDICOM_DIST_INFO_DIR OUR_PY_DIR DISC_DIR
// Everything is mounted from this machine's file system (NODEFS), so it is the current source
// that runs, not a built dist/. The reader batches like the browser's: one call per list.
import { pathToFileURL } from "node:url";

const [pyodideDir, pydicomDir, distInfoDir, ourDir, discDir] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(`${pyodideDir}/pyodide.mjs`).href);
const py = await loadPyodide({ indexURL: `${pyodideDir}/` });
const distInfo = `/lib/mounted/${distInfoDir.split("/").pop()}`;  // pydicom asks importlib.metadata its version
for (const [source, target] of [
  [pydicomDir, "/lib/mounted/pydicom"], [distInfoDir, distInfo], [ourDir, "/lib/ours"], [discDir, "/disc"],
]) {
  py.FS.mkdirTree(target);
  py.FS.mount(py.FS.filesystems.NODEFS, { root: source }, target);
}
const summary = await py.runPythonAsync(`
import json, os, sys
sys.path[:0] = ["/lib/mounted", "/lib/ours"]
from pcir_upload.page.disc.disc import DiscFile, DiscReadError
from pcir_upload.page.disc.discovery import scan_disc

class Disc:
    def __init__(self, root):
        self.root = root
        found = ((os.path.join(d, n), os.path.relpath(os.path.join(d, n), root)) for d, _, ns in os.walk(root) for n in ns)
        self.listing = sorted((DiscFile(rel, os.path.getsize(full)) for full, rel in found), key=lambda f: f.path)

    async def read(self, path, offset, length):
        try:
            with open(os.path.join(self.root, path), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except OSError as exc:
            raise DiscReadError(str(exc)) from None

    async def read_heads(self, paths, length):
        heads = []
        for path in paths:
            try:
                heads.append(await self.read(path, 0, length))
            except DiscReadError as exc:
                heads.append(exc)
        return heads

disc = Disc("/disc")
summary = (await scan_disc(disc.listing, disc)).to_json()
json.dumps({"python": sys.version.split()[0], "summary": summary})
`);
process.stdout.write(summary);
