// Ratio and speed of deflate's and Zstandard's levels in Pyodide (the packers' Python) on a folder:
//   node bench/zstdlevels.mjs node_modules/pyodide bench/out/ct-64MiB
// Every file compressed whole, one thread, two rounds; prints JSON rows [round, encoder, ratio, MB/s].
import { pathToFileURL } from "node:url";
const [pyodideDir, discDir] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(`${pyodideDir}/pyodide.mjs`).href);
const py = await loadPyodide({ indexURL: `${pyodideDir}/` });
py.FS.mkdirTree("/disc");
py.FS.mount(py.FS.filesystems.NODEFS, { root: discDir }, "/disc");
const out = await py.runPythonAsync(`
import os, time, zlib, json
from compression import zstd
files = []
for d, _, ns in os.walk("/disc"):
    for n in sorted(ns):
        with open(os.path.join(d, n), "rb") as f: files.append(f.read())
total = sum(map(len, files))
def z(level, strategy=0):
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy); return c
rows = []
for rnd in range(2):
  for name, make in [("deflate run lengths", lambda: z(1, zlib.Z_RLE)), ("zlib 1", lambda: z(1)), ("zlib 6", lambda: z(6))] + [(f"zstd {l}", (lambda l=l: zstd.ZstdCompressor(l))) for l in (1, 2, 3, 5, 9)]:
    t = time.perf_counter(); n = 0
    for data in files:
        c = make()
        n += len(c.compress(data)) + len(c.flush())
    s = time.perf_counter() - t
    rows.append([rnd, name, total / n, total / s / 1e6])
json.dumps({"total": total, "zstd": zstd.zstd_version, "rows": rows})
`);
console.log(out);
