// The page's own script: the steps on screen, choosing the disc, and talking to the Python
// worker. Everything heavy (reading, packaging, sealing, sending) and every decision about
// the session marker happens in the worker. Text from the disc is only ever set with
// textContent: a DICOM field is not markup.

import { dropRoots, listDirectory, listDrop, listInput } from './folders.js';
import { dropLibraryCaches, forgetEverything } from './forget.js';
import { fill, t } from './messages.js';

const $ = (id) => document.getElementById(id);
const STEPS = ['step-welcome', 'step-terms', 'step-choose', 'step-review', 'step-upload', 'step-done'];
const terms = $('terms').dataset;
const confirmations = () => Array.from(document.querySelectorAll('input[name=confirm]'));
let session = { returning: false };
let uploading = false;
let discs = [];  // the summaries of the discs chosen, in order
let documents = [];  // [{name, size, kind}]

fill();
$('terms-title').textContent = t('terms.title', { version: terms.version });

function show(step) {
  for (const id of STEPS) $(id).hidden = id !== step;
  for (const item of document.querySelectorAll('.steps li')) {
    if (item.dataset.step === step) item.setAttribute('aria-current', 'step');
    else item.removeAttribute('aria-current');
  }
  $(step).querySelector('h2').focus();
}

function showError(message, detail = '', retry = null) {
  $('error-message').textContent = message;
  $('error-detail').textContent = detail;
  $('error-retry').hidden = !retry;
  $('error-retry').onclick = retry && (() => { clearError(); retry(); });
  $('error').hidden = false;
  $('error').focus();
}

function clearError() { $('error').hidden = true; }

// What the page cannot do without. A browser that lacks one is told what to use instead,
// at once, rather than after the patient has read the terms (or never: a blank screen).
async function missingFeatures() {
  const missing = [];
  if (typeof WebAssembly !== 'object') missing.push('WebAssembly');
  if (typeof Worker !== 'function') missing.push('Web Workers');
  if (!window.crossOriginIsolated) missing.push('cross-origin isolation (SharedArrayBuffer)');
  try {
    await crypto.subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
  } catch {
    missing.push('X25519 in WebCrypto');
  }
  return missing;
}

missingFeatures().then((missing) => {
  if (missing.length) {
    $('ready-status').textContent = '';
    $('start').disabled = true;
    showError(t('error.browser'), missing.join(', '));
  }
});

// The worker loads Python (several MB) while the patient reads the welcome.
const pyScript = document.querySelector('script[type="py"][worker]');
const worker = (async () => {
  while (!pyScript.xworker) await new Promise((resolve) => setTimeout(resolve, 20));
  pyScript.xworker.addEventListener('message', ({ data }) => { if (data && data.pcir) fromWorker(data.pcir); });
  await pyScript.xworker.ready;
  return pyScript.xworker.sync;
})();

// The packers (web/packer.mjs: plain Pyodide workers that read, hash and compress on the other
// cores) are started here, once Python is ready, and each is handed to the Python worker as
// one end of a channel. Not by the Python worker itself: a Firefox worker that has started
// workers of its own stalls now and then for good, its timers and messages never run again
// (1 contribution in 10 hung there). One per core, two at most: the worker's own work is light.
// A packer that fails to start (its script missing, say) is reported, and the worker packs
// by itself, more slowly.
const PACKERS = Math.max(1, Math.min(2, navigator.hardwareConcurrency || 1));
function startPackers() {
  const ports = [];
  for (let index = 0; index < PACKERS; index++) {
    const packer = new Worker(new URL('./packer.mjs', import.meta.url), { type: 'module' });
    const failed = (event) => pyScript.xworker.postMessage(
      { pcirPackerFailed: String(event.message || 'a packer worker stopped') });
    packer.addEventListener('error', failed);
    packer.addEventListener('messageerror', failed);
    const channel = new MessageChannel();
    packer.postMessage({ port: channel.port1 }, [channel.port1]);
    ports.push(channel.port2);
  }
  pyScript.xworker.postMessage({ pcirPackers: ports }, ports);
}

// What the worker tells the page, on the worker's own port, in order: what to store (workers
// have no localStorage, and reaching the page's synchronously needs SharedArrayBuffer, which
// not every browser has), progress and notices.
function fromWorker(message) {
  if (message.kind === 'store') {
    try {
      if (message.value === null || message.value === undefined) localStorage.removeItem(message.key);
      else localStorage.setItem(message.key, message.value);
    } catch { /* storage refused: no marker, and nothing fails */ }
  } else if (message.kind === 'progress') showProgress(message.progress);
  else if (message.kind === 'notice') showNotice(message.text);
}

// What this page stored before (the session marker, a resumption record), for the worker.
function stored() {
  try {
    return Object.fromEntries(Object.keys(localStorage).filter((key) => key.startsWith('pcir-'))
      .map((key) => [key, localStorage.getItem(key)]));
  } catch {
    return {};
  }
}

async function call(name, ...args) {
  return JSON.parse(await (await worker)[name](...args));
}

// A folder's listing goes to the worker in messages of its own, cloned with their File objects:
// passed as a call's argument, every entry would be a proxy read back across the bridge, one
// property at a time. Cloning a File costs Chromium most of a millisecond, so a disc of many
// files goes in parts, and the page stays responsive in between. The call names the listing.
// The messages go on a channel of this page's own (a random name: no other tab hears them),
// apart from PyScript's, whose worker end handles messages of its own. A message on a
// BroadcastChannel reaches only the ends open when it is posted: one posted before the
// worker has opened its end is lost, and the worker would wait for it in vain (a patient who
// agreed while Python was still loading, and chose the disc at once, was told the folder
// could not be read). So nothing is posted before the worker's end says it listens, on the
// channel itself: an end returned by its constructor may not be registered yet (Firefox
// registers it with its parent process afterwards), and the worker's hello comes through
// only once it is.
const LISTING_PART = 500;
const listingChannel = new BroadcastChannel(`pcir-listings-${crypto.randomUUID()}`);
const listening = new Promise((resolve) => {
  listingChannel.addEventListener('message', ({ data }) => { if (data && data.pcirListening) resolve(); });
  worker.then((sync) => sync.listen(listingChannel.name));
});
let listings = 0;
async function callWithListing(name, entries) {
  const id = ++listings;
  await listening;
  const answer = call(name, id);
  const parts = Math.max(1, Math.ceil(entries.length / LISTING_PART));
  for (let part = 0; part < parts; part++) {
    const slice = entries.slice(part * LISTING_PART, (part + 1) * LISTING_PART);
    listingChannel.postMessage({ pcirListing: id, part, parts, entries: slice });
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return answer;
}

async function startSession(fresh) {
  session = await call('session', JSON.stringify({
    terms_version: terms.version,
    reconfirm_days: Number(terms.reconfirmDays),
    confirmations: confirmations().map((box) => box.value),
    fresh,
    stored: stored(),
  }));
  $('welcome-returning').hidden = !session.returning;
  $('welcome-unfinished').hidden = !session.unfinished;
  $('not-you').hidden = !session.returning;
  $('welcome-fresh').hidden = !fresh;
  if (session.returning) {
    const date = new Date(session.agreed).toLocaleDateString(undefined, { dateStyle: 'long' });
    $('welcome-returning').textContent = t('welcome.returning', { date });
  }
}

worker.then(async () => {
  startPackers();
  dropLibraryCaches();
  await startSession(false);
  $('ready-status').textContent = t('welcome.ready');
  document.body.dataset.ready = 'true';
}, (error) => {
  $('ready-status').textContent = '';
  showError(t('error.start'), String(error));
});

// Step 1: welcome.
$('start').addEventListener('click', () => show(session.returning ? 'step-choose' : 'step-terms'));
$('not-you').addEventListener('click', async () => {
  await startSession(true);
  $('start').focus();  // the button just pressed is gone; the way on is Start
});

// Step 2: terms, each point confirmed on its own.
$('agree-continue').addEventListener('click', async () => {
  if (!confirmations().every((box) => box.checked)) {
    $('terms-missing').hidden = false;
    confirmations().find((box) => !box.checked).focus();
    return;
  }
  $('terms-missing').hidden = true;
  await call('agree', JSON.stringify({
    terms_version: terms.version,
    confirmations: confirmations().map((box) => box.value),
  }));
  show('step-choose');
});

// Step 3: choose the disc: the picker, the folder input, or a drop.
if (typeof window.showDirectoryPicker === 'function') {
  $('picker-row').hidden = false;
  $('input-row').hidden = true;
}

$('choose-folder').addEventListener('click', async () => {
  let directory;
  try {
    directory = await window.showDirectoryPicker({ id: 'pcir-disc', mode: 'read' });
  } catch (error) {
    if (error.name !== 'AbortError') showError(t('error.open-folder'), String(error));
    return;
  }
  await scanDisc(() => listDirectory(directory));
});

$('folder-input').addEventListener('change', async (event) => {
  const files = event.target.files;
  if (files.length) await scanDisc(() => listInput(files));
});

const dropZone = $('drop-zone');
for (const type of ['dragenter', 'dragover']) {
  document.addEventListener(type, (event) => {
    if (!$('step-choose').hidden) { event.preventDefault(); dropZone.classList.add('active'); }
  });
}
document.addEventListener('dragleave', () => dropZone.classList.remove('active'));
document.addEventListener('drop', async (event) => {
  if ($('step-choose').hidden) return;
  event.preventDefault();
  dropZone.classList.remove('active');
  const roots = dropRoots(event.dataTransfer);
  if (roots.some((root) => root.isDirectory)) await scanDisc(() => listDrop(roots));
  else if (roots.length) await addDocuments(await listDrop(roots));  // loose files: documents
  // A browser may hand a page no files from a drop at all (WebKitGTK does): the patient who
  // dropped a folder is told to use the button, not left waiting for nothing.
  else $('choose-status').textContent = t('choose.drop-nothing');
});

async function scanDisc(list) {
  clearError();
  $('choose-status').textContent = t('choose.scanning');
  let answer;
  try {
    const entries = await list();
    if (!entries.length) {
      $('choose-status').textContent = '';
      showError(t('choose.empty'));
      return;
    }
    answer = await callWithListing('scan', entries);
  } catch (error) {
    answer = { error: t('error.folder'), detail: String(error) };
  }
  $('folder-input').value = '';
  if (answer.error) { $('choose-status').textContent = ''; showError(answer.error, answer.detail); return; }
  discs.push(answer.summary);
  renderChosen();
  $('choose-status').textContent = t('choose.added-status', { number: discs.length });
}

async function addDocuments(entries) {
  clearError();
  if (!entries.length) return;
  const answer = await callWithListing('add_documents', entries);
  $('documents-input').value = '';
  if (answer.error) { showError(answer.error, answer.detail); return; }
  documents = answer.documents;
  renderChosen();
}

$('documents-input').addEventListener('change', async (event) => {
  await addDocuments(Array.from(event.target.files, (file) => ({ path: file.name, file })));
});

function removable(text, label, remove) {
  const item = element('li', text);
  const button = element('button', t('choose.remove'), 'secondary small');
  button.type = 'button';
  button.setAttribute('aria-label', label);
  button.addEventListener('click', async () => { await remove(); renderChosen(); $('choose-heading').focus(); });
  item.append(' ', button);
  return item;
}

function documentKind(kind) { return t(`documents.kind.${kind || 'other'}`); }

function renderChosen() {
  $('discs').replaceChildren(...discs.map((summary, i) => removable(
    t('choose.added', { number: i + 1, files: summary.files, size: megabytes(summary.bytes) }),
    t('choose.remove-disc', { number: i + 1 }),
    async () => { await call('remove_disc', i); discs.splice(i, 1); })));
  $('documents').replaceChildren(...documents.map((doc, i) => removable(
    t('documents.item', { name: doc.name, kind: documentKind(doc.kind), size: megabytes(doc.size) }),
    t('documents.remove', { name: doc.name }),
    async () => { await call('remove_document', i); documents.splice(i, 1); })));
  $('choose-continue').disabled = !discs.length && !documents.length;
}

$('choose-continue').addEventListener('click', () => {
  renderSummary();
  show('step-review');
});

// Step 4: what was found.
const element = (tag, text, className) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
};

function megabytes(bytes) { return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`; }

function speed(bytesPerSecond) {
  return bytesPerSecond >= 1e6
    ? t('upload.speed', { speed: (bytesPerSecond / 1e6).toFixed(1) })
    : t('upload.speed-slow', { speed: Math.round(bytesPerSecond / 1e3) });
}

function personName(dicomName) {
  // DICOM writes Family^Given^Middle^Prefix^Suffix.
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = String(dicomName).split('=')[0].split('^');
  return [prefix, given, middle, family, suffix].filter(Boolean).join(' ') || t('review.name-missing');
}

function dicomDate(value) {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(value || '');
  if (!m) return t('review.no-date');
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3])).toLocaleDateString(undefined, { timeZone: 'UTC', dateStyle: 'long' });
}

function renderSummary() {
  const root = $('summary');
  root.replaceChildren();
  discs.forEach((summary, i) => root.append(renderDisc(summary, i)));
  if (documents.length) {
    const block = element('div', undefined, 'disc');
    block.append(element('h3', t('review.documents', { count: documents.length })));
    const list = element('ul');
    for (const doc of documents) {
      list.append(element('li', t('documents.item', { name: doc.name, kind: documentKind(doc.kind), size: megabytes(doc.size) })));
    }
    block.append(list);
    root.append(block);
  }
}

function renderDisc(summary, index) {
  const block = element('div', undefined, 'disc');
  block.append(element('h3', t('review.disc', { number: index + 1 })));
  block.append(element('p', t('review.totals', { files: summary.files, size: megabytes(summary.bytes) })));
  if (summary.kind === 'not-dicom') block.append(element('p', t('review.not-dicom')));
  else if (!summary.patients.length) block.append(element('p', t('review.no-index')));
  for (const patient of summary.patients) {
    block.append(element('h4', t('review.patient', { name: personName(patient.name) })));
    block.append(element('p', t('review.confirm-name'), 'muted'));
    const table = element('table');
    const columns = ['review.date', 'review.study', 'review.kind', 'review.series', 'review.images'];
    const head = element('tr');
    for (const key of columns) head.append(Object.assign(element('th', t(key)), { scope: 'col' }));
    table.append(head);
    for (const study of patient.studies) {
      const row = element('tr');
      const cells = [
        dicomDate(study.date), study.description || t('review.no-description'),
        study.modalities.join(', '), String(study.series.length), String(study.images),
      ];
      // On a narrow screen each row becomes a small block; the label goes with its value.
      cells.forEach((text, i) => {
        const cell = element('td', text);
        cell.dataset.label = t(columns[i]);
        row.append(cell);
      });
      table.append(row);
    }
    const scroller = element('div', undefined, 'table-scroll');
    scroller.append(table);
    block.append(scroller);
  }
  for (const note of summary.notes || []) block.append(element('p', note, 'muted'));
  if (summary.viewer && summary.viewer.files) {
    block.append(element('p', t('review.viewer', { files: summary.viewer.files, size: megabytes(summary.viewer.bytes) })));
    const label = element('label');
    const box = Object.assign(element('input'), { type: 'checkbox', className: 'include-viewer' });
    box.dataset.disc = String(index);
    label.append(box, ' ', t('review.viewer-include'));
    const line = element('p');
    line.append(label);
    block.append(line);
  }
  if (summary.unreadable && summary.unreadable.length) {
    block.append(element('p', t('review.unreadable', { count: summary.unreadable.length }), 'problem'));
  }
  for (const problem of summary.problems) block.append(element('p', problem, 'muted'));
  if (summary.missing.length) block.append(element('p', t('review.missing', { count: summary.missing.length }), 'muted'));
  return block;
}

$('choose-again').addEventListener('click', () => show('step-choose'));

// Step 5: sending.
let lastSpoken = 0;
let lastState = 'sending';
function showProgress(json) {
  const p = JSON.parse(json);
  const fraction = p.disc_bytes_total ? p.disc_bytes_done / p.disc_bytes_total : (p.done ? 1 : 0);
  $('progress').value = fraction;
  const parts = [
    t('upload.progress', { done: megabytes(p.disc_bytes_done), total: megabytes(p.disc_bytes_total) }),
    t('upload.files', { done: p.files_done, total: p.files_total }),
  ];
  countDown(p.state === 'waiting' ? p.next_try : null);
  if (p.state === 'paused') parts.push(t('upload.paused'));
  else if (p.state === 'waiting') parts.push(p.next_try == null ? t('upload.offline') : waitingText());
  else if (p.state === 'finishing') parts.push(t('upload.finishing'));
  else {
    if (p.speed) parts.push(speed(p.speed));
    if (p.seconds_left != null && !p.done) {
      parts.push(p.seconds_left < 60 ? t('upload.left-minute') : t('upload.left-minutes', { minutes: Math.round(p.seconds_left / 60) }));
    }
  }
  $('pause').hidden = p.state === 'paused';
  $('resume').hidden = p.state !== 'paused';
  // A screen reader hears the line at most every few seconds, not on every chunk; a change
  // of state (paused, waiting, finishing) is said at once.
  const now = Date.now();
  if (p.done || p.state !== lastState || now - lastSpoken > 5000) {
    $('progress-text').textContent = parts.join(' · ');
    lastSpoken = now;
    lastState = p.state;
  }
}

// "Trying again in N s" counts down each second to the try the upload's link has set (the
// worker says how long once, when the wait starts). A screen reader heard the line when the
// wait began; the ticks after it are for the eye only, so the region is busy meanwhile.
let retryAt = null;
let retryTimer = null;
function waitingText() {
  const seconds = Math.ceil((retryAt - Date.now()) / 1000);
  return seconds > 0 ? t('upload.retry-in', { seconds }) : t('upload.retry-now');
}
function countDown(nextTry) {
  const region = $('progress-text');
  if (nextTry == null) {
    retryAt = null;
    clearInterval(retryTimer);
    retryTimer = null;
    region.removeAttribute('aria-busy');
    return;
  }
  retryAt = Date.now() + nextTry * 1000;
  if (retryTimer !== null) return;
  retryTimer = setInterval(() => {
    region.setAttribute('aria-busy', 'true');
    const line = region.textContent.split(' · ');
    line[line.length - 1] = waitingText();
    region.textContent = line.join(' · ');
  }, 1000);
}

function showNotice(text) {
  $('upload-notice').textContent = text;
  $('upload-notice').hidden = false;
}

$('pause').addEventListener('click', async () => {
  await call('pause');
  $('pause').hidden = true;
  $('resume').hidden = false;
  $('resume').focus();
});
$('resume').addEventListener('click', async () => {
  await call('resume');
  $('resume').hidden = true;
  $('pause').hidden = false;
  $('pause').focus();
});
$('cancel').addEventListener('click', () => { $('cancel-confirm').hidden = false; $('cancel-no').focus(); });
$('cancel-no').addEventListener('click', () => { $('cancel-confirm').hidden = true; $('cancel').focus(); });
$('cancel-yes').addEventListener('click', async () => {
  $('cancel-confirm').hidden = true;
  await call('cancel');
});

window.addEventListener('beforeunload', (event) => {
  if (uploading) { event.preventDefault(); event.returnValue = t('upload.leave-warning'); }
});

async function upload() {
  clearError();
  $('upload-notice').hidden = true;
  $('pause').hidden = false;
  $('resume').hidden = true;
  show('step-upload');
  uploading = true;
  let answer;
  try {
    const includeViewer = discs.map((_, i) => Boolean(document.querySelector(`.include-viewer[data-disc="${i}"]`)?.checked));
    answer = await call('contribute_disc', JSON.stringify({ reason: $('reason').value, include_viewer: includeViewer }));
  } catch (error) {
    answer = { error: t('error.send'), detail: String(error) };
  } finally {
    uploading = false;
  }
  if (answer.cancelled) {
    discs = [];
    documents = [];
    renderChosen();
    show('step-choose');
    $('choose-status').textContent = t('upload.cancelled');
    return;
  }
  if (answer.error) { showError(answer.error, answer.detail, upload); return; }
  const receipt = answer.receipt;
  $('receipt-code').textContent = receipt.code;
  $('done-details').textContent = t('done.details', {
    files: receipt.files, size: megabytes(receipt.disc_bytes), sent: megabytes(receipt.bytes_sent),
  });
  $('done-protection').textContent = t(receipt.post_quantum ? 'done.post-quantum' : 'done.classical');
  document.body.dataset.postQuantum = String(receipt.post_quantum);
  document.body.dataset.receipt = receipt.code;
  discs = [];
  documents = [];
  renderChosen();
  $('choose-status').textContent = '';
  show('step-done');
}

$('upload').addEventListener('click', upload);

// Step 6: done.
$('another').addEventListener('click', () => {
  $('forgotten').textContent = '';
  show('step-choose');
});

$('forget').addEventListener('click', async () => {
  await call('forget');  // this visit goes on, storing nothing more
  await forgetEverything();
  $('forgotten').textContent = t('done.forgotten');
});
