// The skychat web page in headless Chromium (tests/skychat_web.rs runs this).
// Usage: node skychat_page.js <login url> <peer pk> <text to send> <text expected in>
// Opens the login URL (sets the cookie, redirects to the page), puts the peer in #to, sends
// <text to send> from the page and waits for #result to say "acked"; then prints "sent" and
// waits (≤ 30 s) until a message containing <text expected in> appears in #log without a
// reload (the test makes the peer send it after "sent"). Prints "ok" and exits 0, or prints
// what failed and exits 1. Debian's chromium (a fresh temporary profile each run);
// playwright-core only drives it.
const { chromium } = require('playwright-core');

async function main() {
  const [login, peer, outText, inText] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(login, { waitUntil: 'load', timeout: 15000 });
    await page.waitForSelector('#to', { timeout: 10000 });
    await page.fill('#to', peer);
    await page.dispatchEvent('#to', 'change');
    await page.fill('#msg', outText);
    await page.click('#send');
    await page.waitForFunction(
      () => /acked/i.test(document.querySelector('#result').textContent || '')
        && !/not acked/i.test(document.querySelector('#result').textContent || ''),
      null, { timeout: 15000 });
    console.log('result: ' + (await page.textContent('#result')).trim());
    const url = page.url();
    console.log('sent');
    await page.waitForFunction(
      (t) => Array.from(document.querySelectorAll('#log .msg')).some((m) => m.textContent.includes(t)),
      inText, { timeout: 30000 });
    if (page.url() !== url) throw new Error(`the page reloaded: ${url} -> ${page.url()}`);
    if (errors.length) throw new Error('page errors: ' + errors.join('; '));
    console.log('ok');
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => { console.log('FAILED: ' + (e && e.stack || e)); process.exit(1); });
