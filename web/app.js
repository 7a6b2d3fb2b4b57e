// The page's own script: the steps on screen, the folder listing, and talking to the Python
// worker. Everything heavy (reading, packaging, sealing, sending) happens in the worker.
// Text from the disc is only ever set with textContent: a DICOM field is not markup.

const $ = (id) => document.getElementById(id);
const STEPS = ['step-terms', 'step-choose', 'step-review', 'step-upload', 'step-done'];
let agreedAt = null;
let uploading = false;

function show(step) {
  for (const id of STEPS) $(id).hidden = id !== step;
  const heading = $(step).querySelector('h2');
  if (heading) heading.focus();
}

function showError(message, detail = '', retry = null) {
  $('error-message').textContent = message;
  $('error-detail').textContent = detail;
  $('error-retry').hidden = !retry;
  $('error-retry').onclick = retry && (() => { $('error').hidden = true; retry(); });
  $('error').hidden = false;
  $('error').focus?.();
}

function clearError() { $('error').hidden = true; }

// The worker loads Python (several MB) while the patient reads the terms.
const worker = (async () => {
  const element = document.querySelector('script[type="py"][worker]');
  while (!element.xworker) await new Promise((resolve) => setTimeout(resolve, 20));
  await element.xworker.ready;
  return element.xworker.sync;
})();

worker.then(() => {
  $('ready-status').textContent = 'Ready.';
  document.body.dataset.ready = 'true';
}, (error) => {
  $('ready-status').textContent = '';
  showError('This page could not start in your browser. Please try an up-to-date Chrome, Edge, Firefox or Safari.', String(error));
});

// Step 1: terms.
$('agree').addEventListener('change', () => { $('agree-continue').disabled = !$('agree').checked; });
$('agree-continue').addEventListener('click', () => {
  agreedAt = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');  // as the manifest's other times
  show('step-choose');
});

// Step 2: choose the disc. Both ways end in the same listing: [{path, file}], paths relative
// to the chosen folder.
async function listDirectory(directory, prefix = '') {
  const entries = [];
  for await (const [name, handle] of directory.entries()) {
    if (handle.kind === 'file') entries.push({ path: prefix + name, file: await handle.getFile() });
    else entries.push(...await listDirectory(handle, `${prefix}${name}/`));
  }
  return entries;
}

function listInput(files) {
  // webkitRelativePath begins with the chosen folder's own name; the listing does not.
  return Array.from(files, (file) => ({
    path: file.webkitRelativePath.split('/').slice(1).join('/') || file.name,
    file,
  }));
}

if (typeof window.showDirectoryPicker === 'function') {
  $('picker-row').hidden = false;
  $('input-row').hidden = true;
}

$('choose-folder').addEventListener('click', async () => {
  let directory;
  try {
    directory = await window.showDirectoryPicker({ id: 'pcir-disc', mode: 'read' });
  } catch (error) {
    if (error.name !== 'AbortError') showError('The folder could not be opened.', String(error));
    return;
  }
  await scanDisc(() => listDirectory(directory));
});

$('folder-input').addEventListener('change', async (event) => {
  const files = event.target.files;
  if (files.length) await scanDisc(() => listInput(files));
});

async function scanDisc(list) {
  clearError();
  $('ready-status').textContent = 'Reading the disc…';
  let answer;
  try {
    const entries = await list();
    if (!entries.length) {
      $('ready-status').textContent = '';
      showError('This folder is empty. Please choose the folder of your disc.');
      return;
    }
    answer = JSON.parse(await (await worker).scan(entries));
  } catch (error) {
    answer = { error: 'The folder could not be read. Please try choosing it again.', detail: String(error) };
  }
  $('ready-status').textContent = 'Ready.';
  if (answer.error) { showError(answer.error, answer.detail); return; }
  renderSummary(answer.summary);
  show('step-review');
}

// Step 3: what was found.
const element = (tag, text, className) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
};

function megabytes(bytes) { return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`; }

function personName(dicomName) {
  // DICOM writes Family^Given^Middle^Prefix^Suffix.
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = String(dicomName).split('=')[0].split('^');
  return [prefix, given, middle, family, suffix].filter(Boolean).join(' ') || 'Name not given';
}

function dicomDate(value) {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(value || '');
  return m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3])).toLocaleDateString(undefined, { timeZone: 'UTC', dateStyle: 'long' }) : 'date not given';
}

function renderSummary(summary) {
  const root = $('summary');
  root.replaceChildren();
  root.append(element('p', `${summary.files} files, ${megabytes(summary.bytes)} in all.`));
  if (!summary.patients.length) {
    root.append(element('p', 'We found no disc index (DICOMDIR) describing the images. That is fine: every file will still be sent, exactly as it is.'));
  }
  for (const patient of summary.patients) {
    const block = element('div', undefined, 'patient');
    block.append(element('h3', personName(patient.name)));
    const table = element('table');
    const head = element('tr');
    for (const title of ['Date', 'Study', 'Kind', 'Series', 'Images']) head.append(element('th', title));
    table.append(head);
    for (const study of patient.studies) {
      const row = element('tr');
      row.append(
        element('td', dicomDate(study.date)),
        element('td', study.description || 'No description'),
        element('td', study.modalities.join(', ')),
        element('td', String(study.series.length)),
        element('td', String(study.images)),
      );
      table.append(row);
    }
    block.append(table);
    root.append(block);
  }
  if (summary.unreferenced) {
    root.append(element('p', `${summary.unreferenced} other files (such as a viewer program or notes) will be sent as they are.`, 'muted'));
  }
  for (const problem of summary.problems) root.append(element('p', problem, 'muted'));
  if (summary.missing.length) {
    root.append(element('p', `${summary.missing.length} files that the disc index mentions are not on the disc; everything that is there will be sent.`, 'muted'));
  }
}

$('choose-again').addEventListener('click', () => {
  $('folder-input').value = '';
  show('step-choose');
});

// Step 4: sending.
let lastSpoken = 0;
window.pcirProgress = (json) => {
  const p = JSON.parse(json);
  const fraction = p.disc_bytes_total ? p.disc_bytes_done / p.disc_bytes_total : (p.done ? 1 : 0);
  $('progress').value = fraction;
  const parts = [
    `${megabytes(p.disc_bytes_done)} of ${megabytes(p.disc_bytes_total)}`,
    `${p.files_done} of ${p.files_total} files`,
  ];
  if (p.speed) parts.push(`${(p.speed / 1e6).toFixed(1)} MB/s`);
  if (p.seconds_left != null && !p.done) {
    parts.push(p.seconds_left < 60 ? 'less than a minute left' : `about ${Math.round(p.seconds_left / 60)} minutes left`);
  }
  // A screen reader hears the line at most every few seconds, not on every chunk.
  const now = Date.now();
  if (p.done || now - lastSpoken > 5000) {
    $('progress-text').textContent = parts.join(' · ');
    lastSpoken = now;
  }
};

window.addEventListener('beforeunload', (event) => {
  if (uploading) { event.preventDefault(); event.returnValue = ''; }
});

async function upload() {
  clearError();
  show('step-upload');
  uploading = true;
  const terms = { version: $('terms').dataset.version, agreed: agreedAt };
  let answer;
  try {
    answer = JSON.parse(await (await worker).contribute_disc(JSON.stringify({ terms })));
  } catch (error) {
    answer = { error: 'Something went wrong while sending. Nothing was lost; please try again.', detail: String(error) };
  } finally {
    uploading = false;
  }
  if (answer.error) { showError(answer.error, answer.detail, upload); return; }
  const receipt = answer.receipt;
  $('receipt-code').textContent = receipt.code;
  $('done-details').textContent = `${receipt.files} files (${megabytes(receipt.disc_bytes)}) were sent as ${megabytes(receipt.bytes_sent)} of encrypted data.`;
  $('done-protection').textContent = receipt.post_quantum
    ? 'Your images were locked with post-quantum protection: they stay sealed even against the quantum computers of the future.'
    : 'Your images were locked with strong standard encryption. This browser does not offer post-quantum protection yet; an up-to-date Chrome or Edge does.';
  document.body.dataset.postQuantum = String(receipt.post_quantum);
  document.body.dataset.receipt = receipt.code;
  show('step-done');
}

$('upload').addEventListener('click', upload);
