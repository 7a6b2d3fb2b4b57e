// Firefox's way through the page (no showDirectoryPicker: the folder input), driven over
// WebDriver BiDi by puppeteer-core with Debian's firefox-esr. Prints one JSON line.
//   node tests/firefox/contribute.mjs URL FILE...
import puppeteer from 'puppeteer-core';

const [url, ...files] = process.argv.slice(2);
const browser = await puppeteer.launch({ browser: 'firefox', executablePath: '/usr/bin/firefox-esr', headless: true });
const result = { errors: [] };
try {
  const page = await browser.newPage();
  page.on('pageerror', (error) => result.errors.push(String(error)));
  const started = Date.now();
  await page.goto(url);
  await page.waitForSelector('body[data-ready=true]', { timeout: 120000 });
  result.readySeconds = (Date.now() - started) / 1000;
  result.picker = await page.evaluate(() => typeof window.showDirectoryPicker);
  result.inputShown = await page.$eval('#input-row', (row) => !row.hidden);
  await page.click('#start');
  for (const box of await page.$$('input[name=confirm]')) await box.click();
  await page.click('#agree-continue');
  await page.waitForSelector('#step-choose:not([hidden])');
  // WebDriver BiDi's input.setFiles takes files, not a folder: the disc here is flat.
  await (await page.$('#folder-input')).uploadFile(...files);
  await page.waitForSelector('#discs li, #error:not([hidden])', { timeout: 60000 });
  await page.click('#choose-continue');
  await page.waitForSelector('#step-review:not([hidden]), #error:not([hidden])', { timeout: 60000 });
  result.summary = await page.$eval('#summary', (node) => node.innerText);
  await page.click('#upload');
  await page.waitForSelector('#step-done:not([hidden]), #error:not([hidden])', { timeout: 120000 });
  result.error = await page.$eval('#error', (node) => (node.hidden ? '' : node.innerText));
  result.receipt = await page.evaluate(() => document.body.dataset.receipt || '');
  result.protection = await page.$eval('#done-protection', (node) => node.innerText);
} catch (error) {
  result.errors.push(String(error));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
