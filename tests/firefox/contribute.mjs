// A whole contribution in Firefox (Debian's firefox-esr, driven over WebDriver BiDi by
// puppeteer-core): a folder tree through the folder input, documents, the page closed
// mid-upload, the contribution resumed from a new page, paused there and carried on. Talks to the test in
// lines: it prints `step NAME` and waits for a line on stdin before going on; the last line it
// prints is its result as JSON.
//   node tests/firefox/contribute.mjs URL FOLDER DOCUMENT...
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const [url, folder, ...papers] = process.argv.slice(2);
const actors = fileURLToPath(new URL('./chrome/', import.meta.url));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function step(name) {
  console.log(`step ${name}`);
  await lines.next();
}

const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: '/usr/bin/firefox-esr',
  headless: true,
  // Chrome-scope scripts, for the actor that hands the input a folder. Its module is read by
  // the content process (so its folder is readable there), and the disc's folder is not one
  // Firefox's own picker granted, so the check that the content process may list it is off.
  args: ['--remote-allow-system-access'],
  extraPrefsFirefox: {
    'security.sandbox.content.read_path_whitelist': actors,
    'dom.filesystem.pathcheck.disabled': true,
  },
});
const result = { errors: [] };
const WORKER = 120000;  // ms

async function chrome(expression) {
  const tree = await browser.connection.send('browsingContext.getTree', { 'moz:scope': 'chrome' });
  const context = tree.result.contexts.find((c) => c.url === 'chrome://browser/content/browser.xhtml').context;
  const answer = await browser.connection.send('script.evaluate', { target: { context }, awaitPromise: true, expression });
  if (answer.result.type === 'exception') throw new Error(answer.result.exceptionDetails.text);
  return answer.result.result.value;
}

await chrome(`(() => {
  const dir = Cc['@mozilla.org/file/local;1'].createInstance(Ci.nsIFile);
  dir.initWithPath(${JSON.stringify(actors)});
  Services.io.getProtocolHandler('resource').QueryInterface(Ci.nsIResProtocolHandler)
    .setSubstitution('pcirtest', Services.io.newFileURI(dir));
  ChromeUtils.registerWindowActor('PcirFolder', {
    parent: { esModuleURI: 'resource://pcirtest/PcirFolderParent.sys.mjs' },
    child: { esModuleURI: 'resource://pcirtest/PcirFolderChild.sys.mjs' },
  });
  return true;
})()`);

let pages = 0;
async function chooseFolder(page) {
  // The tab is found by its window's name: a page just closed may still be among the tabs.
  const name = `pcir-page-${++pages}`;
  await page.evaluate((name) => { window.name = name; }, name);
  await chrome(`(async () => {
    const tab = gBrowser.browsers.find((b) => b.browsingContext?.name === ${JSON.stringify(name)});
    return tab.browsingContext.currentWindowGlobal.getActor('PcirFolder')
      .sendQuery('folder', { id: 'folder-input', path: ${JSON.stringify(folder)} });
  })()`);
  await page.waitForSelector('#discs li, #error:not([hidden])', { timeout: WORKER });
  await noError(page);
}

async function chooseDocuments(page) {
  await (await page.$('#documents-input')).uploadFile(...papers);
  await page.waitForSelector(`#documents li:nth-child(${papers.length}), #error:not([hidden])`, { timeout: WORKER });
  await noError(page);
}

async function noError(page) {
  const error = await page.$eval('#error', (node) => (node.hidden ? '' : node.innerText));
  if (error) throw new Error(`the page says: ${error}`);
}

async function open() {
  const page = await browser.newPage();
  page.on('pageerror', (error) => result.errors.push(String(error)));
  page.on('dialog', (dialog) => dialog.accept());  // "leave this page?" while sending
  await page.goto(url);
  await page.waitForSelector('body[data-ready=true]', { timeout: 120000 });
  return page;
}

const record = (page) => page.evaluate(() => localStorage.getItem('pcir-resume'));

try {
  let page = await open();
  result.picker = await page.evaluate(() => typeof window.showDirectoryPicker);
  result.inputShown = await page.$eval('#input-row', (row) => !row.hidden);
  result.storage = await page.evaluate(() => ({
    localStorage: typeof localStorage, opfs: typeof navigator.storage?.getDirectory,
  }));
  await page.click('#start');
  for (const box of await page.$$('input[name=confirm]')) await box.click();
  await page.click('#agree-continue');
  // Every wait on the worker is generous: on a loaded machine it may be busy for tens of
  // seconds starting the packers (a wait ends as soon as the page is there).
  await page.waitForSelector('#step-choose:not([hidden])', { timeout: WORKER });
  result.at = 'choosing';  // where it was, should it fail
  await chooseFolder(page);
  await chooseDocuments(page);
  result.discs = await page.$eval('#discs', (node) => node.innerText);
  result.documents = await page.$eval('#documents', (node) => node.innerText);
  await page.click('#choose-continue');
  await page.waitForSelector('#step-review:not([hidden])');
  result.summary = await page.$eval('#summary', (node) => node.innerText);
  await step('review');  // the test slows the link

  result.at = 'sending';  // where it was, should it fail
  await page.click('#upload');
  // Closed once a chunk is confirmed and its record saved, as the page keeps it.
  await page.waitForFunction(() => JSON.parse(localStorage.getItem('pcir-resume') || '{}').chunks >= 1,
    { timeout: 60000, polling: 50 });
  result.record = JSON.parse(await record(page));
  result.progressAtClose = await page.$eval('#progress', (node) => node.value);
  await page.close({ runBeforeUnload: false });  // the patient closes the page
  await step('closed');  // the test lets the link go at full speed

  result.at = 'coming back';  // where it was, should it fail
  page = await open();
  result.unfinishedShown = await page.$eval('#welcome-unfinished', (node) => !node.hidden);
  await page.click('#start');  // agreed recently: straight to the disc
  await page.waitForSelector('#step-choose:not([hidden])');
  await chooseFolder(page);
  await chooseDocuments(page);
  await page.click('#choose-continue');
  await page.waitForSelector('#step-review:not([hidden])');
  await step('review');
  result.at = 'sending the rest';  // where it was, should it fail
  await page.click('#upload');
  // Pause while the rest is on its way, then carry on to the end.
  await page.waitForFunction(() => / MB of /.test(document.getElementById('progress-text').textContent),
    { timeout: 60000, polling: 50 });
  // Both buttons are pressed from the keyboard, Carry on where the page puts the focus once the
  // worker has paused. Not clicked: puppeteer takes a click's point before it lands, and the
  // progress line arriving in between can move the button (the page then never saw the click
  // on Carry on: 1 run in 10).
  await page.focus('#pause');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.activeElement?.id === 'resume', { timeout: WORKER });
  result.paused = await page.$eval('#progress-text', (node) => node.innerText);
  result.stepWhilePaused = await page.$eval('#step-upload', (node) => !node.hidden);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#step-done:not([hidden]), #error:not([hidden])', { timeout: 120000 });
  await noError(page);
  result.receipt = await page.evaluate(() => document.body.dataset.receipt || '');
  result.protection = await page.$eval('#done-protection', (node) => node.innerText);
  result.recordAfter = await record(page);
} catch (error) {
  result.errors.push(String(error));
  for (const page of await browser.pages()) {
    result.errors.push(await page.evaluate(() => JSON.stringify({
      steps: Array.from(document.querySelectorAll('main > section'), (s) => `${s.id}:${s.hidden}`),
      missing: document.getElementById('terms-missing')?.hidden,
      boxes: Array.from(document.querySelectorAll('input[name=confirm]'), (b) => b.checked),
      text: document.getElementById('progress-text')?.innerText,
      chooseStatus: document.getElementById('choose-status')?.innerText,
      folderFiles: document.getElementById('folder-input')?.files.length,
    })).catch(String));
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(0);
