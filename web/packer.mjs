// A packer: reads, hashes and compresses pieces of the disc's files on a core of its own, for the
// page's Python worker, which frames, seals and sends them (pcir_upload.page.browser.packers). The
// work itself is Python (pcir_upload.page.browser.packer); this file only moves messages and reads.
// Pieces are worked on in the order they arrive, which is their order in the package. The next
// pieces are read while this one is compressed: up to 8 MiB of them, so that a disc of small
// files is not read one at a time (each read costs Chromium a millisecond or more, however
// small), but not more, and at least the next one.
import { loadPyodide } from './pyodide/pyodide.mjs';

const READS_AHEAD = 8;  // pieces being read at once, at most
const READ_AHEAD_BYTES = 8 * 1024 * 1024;  // and their bytes, beyond the next piece
const queue = [];  // {message, read}: pieces and resets, in order
let python = null;  // the packer module, once Pyodide has loaded it
let working = false;

function startReads() {
  let bytes = 0;
  for (const [n, item] of queue.slice(0, READS_AHEAD).entries()) {
    const m = item.message;
    if (m.kind !== 'piece') continue;
    bytes += m.length;
    if (n > 1 && bytes > READ_AHEAD_BYTES) break;
    if (item.read) continue;
    // A whole file is read as it is: Blob.slice() costs Chromium a round trip of its own.
    const whole = m.offset === 0 && m.length === m.file.size;
    item.read = !m.length ? Promise.resolve(new ArrayBuffer(0))
      : (whole ? m.file : m.file.slice(m.offset, m.offset + m.length)).arrayBuffer();
    item.read.catch(() => {});  // awaited below; not an unhandled rejection meanwhile
  }
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

async function work() {
  if (working || !python) return;
  working = true;
  while (queue.length) {
    startReads();
    const { message, read } = queue[0];
    let data;  // undefined, not null: Python sees None (null would be pyodide.ffi.jsnull)
    let error;
    if (read) {
      try {
        data = new Uint8Array(await read);
      } catch (failure) {
        error = failure && failure.name ? failure.name : String(failure);
      }
    }
    queue.shift();
    startReads();
    try {
      await handle(message, data, error);
    } catch (failure) {
      // A fault of ours, not of the disc: the page's worker stops using packers and says so.
      send({ kind: 'broken', error: String(failure) });
      queue.length = 0;
    }
  }
  working = false;
}

async function handle(message, data, error) {
  if (message.kind === 'piece') {
    // A file in one piece (most DICOM files) is hashed by WebCrypto, three times as fast as in
    // wasm, while it is compressed; larger files are hashed piece by piece in Python.
    const whole = data !== undefined && message.first && message.last;
    const digesting = whole ? crypto.subtle.digest('SHA-256', data) : null;
    const answer = python.pack(message, data, error, whole);  // a plain object, made in Python
    if (digesting) answer.sha256 = hex(new Uint8Array(await digesting));
    send(answer, [answer.data.buffer]);
  } else if (message.kind === 'reset') {
    python.reset();
  } else if (message.kind === 'report') {
    send({ kind: 'report', id: message.id, report: python.report() });
  }
}

// The page starts us and hands us one end of a channel whose other end it gives the Python
// worker (app.js, startPackers): we talk to that worker on the port, never on our own
// postMessage. The first message on the port says where our wheel is; later ones wait in the
// queue until Python runs, except `stop`, which ends us at once.
let port = null;
const send = (message, transfer = []) => port.postMessage(message, transfer);

async function start(wheels) {
  try {
    const pyodide = await loadPyodide();
    await pyodide.loadPackage(wheels);
    python = pyodide.pyimport('pcir_upload.page.browser.packer');
    send({ kind: 'ready' });
    work();
  } catch (failure) {
    send({ kind: 'failed', error: String(failure) });
  }
}

onmessage = ({ data }) => {
  ({ port } = data);
  let started = false;
  port.onmessage = ({ data: message }) => {
    if (message.kind === 'stop') close();
    else if (!started) {
      started = true;
      start(message.wheels);
    } else {
      queue.push({ message, read: null });
      work();
    }
  };
};
