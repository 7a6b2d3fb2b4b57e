// Every word the page shows, in one place, so that the page can be translated: a translation
// is a copy of this object in another language. Elements name their text with data-msg="key";
// scripts use t('key', {name: value}). Strings are text, never markup.

export const messages = {
  'page.title': 'Contribute your medical images',
  'page.heading': 'Contribute your medical images',
  'steps.label': 'Steps',
  'steps.welcome': 'Welcome',
  'steps.terms': 'Terms',
  'steps.choose': 'Your disc',
  'steps.review': 'Check',
  'steps.upload': 'Sending',
  'steps.done': 'Done',

  'welcome.heading': 'Welcome',
  'welcome.what': 'This page reads the CD (or folder, or USB stick) that your imaging centre gave you, locks everything on it inside your browser so that only the repository can open it, and sends it.',
  'welcome.time': 'It takes a few minutes for a small disc and up to an hour for a large one on a slow connection. You can pause and carry on later.',
  'welcome.kept': 'Nothing readable leaves your computer, and nothing of your images stays on it. This site keeps only a small note that you agreed to the terms.',
  'welcome.keeps-link': 'What this site keeps on your computer',
  'welcome.start': 'Start',
  'welcome.returning': 'Welcome back. You agreed to the terms on {date}, so you can go straight to choosing your disc.',
  'welcome.not-you': 'Not you? Someone else is using this computer',
  'welcome.fresh': 'Starting fresh for a new person. The previous person\'s note on this computer is left as it was.',
  'welcome.unfinished': 'Sending was interrupted last time. Choose the same disc (and documents) again, and sending carries on where it stopped.',
  'welcome.loading': 'Getting ready…',
  'welcome.ready': 'Ready.',

  'terms.heading': 'Before you contribute',
  'terms.intro': 'Please read the terms and confirm each point.',
  'terms.title': 'Terms of contribution (version {version})',
  'terms.text': [
    'You contribute copies of medical images of yourself, such as the CD your imaging centre gave you, and, if you like, scanned documents about them.',
    'The repository removes your name, your dates of birth and of examinations, and other details that identify you from the images and documents. It then publishes them for research, free for anyone to use.',
    'Once published, images cannot be withdrawn: copies may already have been made.',
    'Until they are published, the repository keeps what you send secure and uses it for nothing else.',
    'Your contribution is locked in your browser with the repository\'s public key before it is sent. Only the repository can open it.',
  ],
  'terms.confirm-self': 'I am the person in these images. I am not contributing for someone else (for example my child or a patient).',
  'terms.confirm-adult': 'I am of legal age.',
  'terms.confirm-public': 'I understand that my images will be published after identifying details are removed, and that they cannot be withdrawn once published.',
  'terms.confirm-terms': 'I have read the terms above and I agree to them.',
  'terms.reason-label': 'Why were these images taken? (optional)',
  'terms.reason-hint': 'For example "knee pain after a fall". It helps research; it is sent locked, together with your images.',
  'terms.continue': 'Continue',
  'terms.missing': 'Please confirm all four points to continue.',

  'choose.heading': 'Choose your disc',
  'choose.intro': 'Put the CD in the drive (or plug in the USB stick), then choose it here. You can also drag the disc\'s folder onto this page.',
  'choose.button': 'Choose the disc or folder…',
  'choose.input-label': 'Choose the disc or folder:',
  'choose.drop': 'Or drop the disc\'s folder here',
  'choose.drop-nothing': 'This browser did not pass on what was dropped. Please choose the disc\'s folder with the button instead.',
  'choose.scanning': 'Reading the disc…',
  'choose.empty': 'This folder is empty. Please choose the folder of your disc.',
  'choose.no-picker': 'Choose the folder of your disc with the button below.',
  'choose.added': 'Disc {number}: {files} files, {size}',
  'choose.added-status': 'Disc {number} added. You can add another disc, or continue.',
  'choose.remove': 'Remove',
  'choose.remove-disc': 'Remove disc {number}',
  'choose.continue': 'Continue',
  'choose.another': 'To add a second disc, put it in the drive and choose it the same way.',
  'documents.heading': 'Scanned documents (optional)',
  'documents.intro': 'You can add scanned letters or reports about these images, as PDF, JPEG or PNG files.',
  'documents.input-label': 'Add documents:',
  'documents.item': '{name} ({kind}, {size})',
  'documents.remove': 'Remove {name}',
  'documents.kind.pdf': 'PDF',
  'documents.kind.jpeg': 'JPEG picture',
  'documents.kind.png': 'PNG picture',
  'documents.kind.other': 'other file',
  'review.disc': 'Disc {number}',
  'review.documents': 'Documents: {count}',
  'review.viewer': 'This disc also holds a viewer program ({files} files, {size}). It is not needed and will not be sent.',
  'review.viewer-include': 'Send the viewer program too (everything on the disc)',
  'review.not-dicom': 'This disc does not hold images in the DICOM format. It will be sent as it is; the repository will do its best with it.',
  'review.unreadable': '{count} files could not be read. Everything else will be sent, and the repository will be told which files were missing.',

  'review.heading': 'Check what we found',
  'review.totals': '{files} files, {size} in all.',
  'review.no-index': 'We found no disc index (DICOMDIR) describing the images. That is fine: every file will still be sent, exactly as it is.',
  'review.patient': 'Images of {name}',
  'review.confirm-name': 'Please check that this is your name.',
  'review.name-missing': 'Name not given',
  'review.date': 'Date',
  'review.study': 'Examination',
  'review.kind': 'Kind',
  'review.series': 'Series',
  'review.images': 'Images',
  'review.no-description': 'No description',
  'review.no-date': 'date not given',
  'review.others': '{count} other files (such as a viewer program or notes) will be sent as they are.',
  'review.missing': '{count} files that the disc index mentions are not on the disc; everything that is there will be sent.',
  'review.sent': 'Everything listed here will be sent, locked so that only the repository can open it.',
  'review.send': 'Send to the repository',
  'review.back': 'Back to the discs',

  'upload.heading': 'Sending',
  'upload.keep-open': 'Please keep this page open until it says it is done. If your connection drops, sending carries on by itself when it comes back.',
  'upload.starting': 'Starting…',
  'upload.progress': '{done} of {total}',
  'upload.files': '{done} of {total} files',
  'upload.speed': '{speed} MB/s',
  'upload.speed-slow': '{speed} kB/s',
  'upload.left-minute': 'less than a minute left',
  'upload.left-minutes': 'about {minutes} minutes left',
  'upload.pause': 'Pause',
  'upload.resume': 'Carry on',
  'upload.cancel': 'Cancel',
  'upload.cancel-question': 'Stop sending and delete what has been sent so far?',
  'upload.cancel-yes': 'Yes, cancel',
  'upload.cancel-no': 'No, keep sending',
  'upload.paused': 'Paused. Nothing is being sent; press "Carry on" when you are ready.',
  'upload.offline': 'Waiting for the internet connection to come back…',
  'upload.retry-in': 'The connection was interrupted. Trying again in {seconds} s…',
  'upload.retry-now': 'The connection was interrupted. Trying again now…',
  'upload.finishing': 'Nearly done: the repository is putting your contribution together…',
  'upload.cancelled': 'Sending was cancelled, and the repository was asked to delete what it had received.',
  'upload.leave-warning': 'Your images are still being sent. If you leave now, you will have to start again.',

  'done.heading': 'Done. Thank you!',
  'done.received': 'The repository has received your contribution. Your receipt code is',
  'done.keep-code': 'Please keep it in case you want to ask the repository about this contribution.',
  'done.details': '{files} files ({size}) were sent as {sent} of encrypted data.',
  'done.post-quantum': 'Your images were locked with post-quantum protection: they stay sealed even against the quantum computers of the future.',
  'done.classical': 'Your images were locked with strong standard encryption. This browser does not offer post-quantum protection yet; an up-to-date Chrome or Edge does.',
  'done.another': 'Contribute another disc',
  'done.forget': 'Forget this computer',
  'done.forgotten': 'Done: this site keeps nothing on this computer any more.',

  'error.details': 'Technical details (for whoever helps you)',
  'error.retry': 'Try again',
  'error.start': 'This page could not start in your browser. Please try an up-to-date Chrome, Edge, Firefox or Safari.',
  'error.browser': 'This browser cannot lock your images safely before sending them. Please open this page in an up-to-date Chrome, Edge, Firefox or Safari.',
  'error.folder': 'The folder could not be read. Please try choosing it again.',
  'error.open-folder': 'The folder could not be opened.',
  'error.send': 'Something went wrong while sending. Nothing was lost; please try again.',

  'keeps.title': 'What this site keeps on your computer',
  'keeps.heading': 'What this site keeps on your computer',
  'keeps.intro': 'Your images and documents are never stored on your computer by this site: they are read from your disc, locked and sent, and then forgotten.',
  'keeps.what': 'The site keeps one small note in your browser\'s storage for this site (called "local storage"), so that it need not ask you to agree to the terms again for 30 days. The note holds:',
  'keeps.items': [
    'a random number that stands for "the same contributor" (it says nothing about who you are);',
    'which version of the terms you agreed to, and when;',
    'when your last contribution finished.',
  ],
  'keeps.never': 'It never holds your name, anything about your examinations, or the names of files.',
  'keeps.shared': 'On a shared computer, remove the note when you are done, with the button below or by hand:',
  'keeps.browsers': [
    'Chrome and Edge: click the icon left of the address, choose "Site settings" (Chrome) or "Cookies and site data" (Edge), then "Delete data".',
    'Firefox: click the padlock left of the address, then "Clear cookies and site data…".',
    'Safari: Settings, Privacy, "Manage Website Data…", choose this site, then "Remove".',
  ],
  'keeps.private': 'In a private (incognito) window, the browser forgets the note by itself when the window is closed. Safari also removes it after seven days without a visit. The page then simply asks you to agree again.',
  'keeps.forget': 'Forget this computer',
  'keeps.back': 'Back to contributing',
};

export function t(key, params = {}) {
  const text = messages[key];
  if (text === undefined) throw new Error(`no message ${key}`);
  if (Array.isArray(text)) return text;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? `{${name}}`));
}

// Fill every element that names its message: text, or a list of paragraphs / items.
export function fill(root = document) {
  for (const node of root.querySelectorAll('[data-msg]')) {
    const text = t(node.dataset.msg);
    if (Array.isArray(text)) {
      const tag = node.tagName === 'UL' || node.tagName === 'OL' ? 'li' : 'p';
      node.replaceChildren(...text.map((line) => Object.assign(document.createElement(tag), { textContent: line })));
    } else {
      node.textContent = text;
    }
  }
  for (const node of root.querySelectorAll('[data-msg-label]')) node.setAttribute('aria-label', t(node.dataset.msgLabel));
}
