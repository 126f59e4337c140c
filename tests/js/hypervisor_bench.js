// The hypervisor page's weight and speed in headless Chromium (benches/hypervisor.rs runs it).
// Usage: node hypervisor_bench.js <base url> <password> <visors expected> <runs> <remote pk>
// Each run is a fresh browser context (no cache): log in through the API, then load "/" and
// read the Resource Timing entries (transferSize: bytes on the wire with headers;
// encodedBodySize: compressed bodies), first contentful paint, and the time from navigation
// start until the visor list shows <visors expected> rows; then open the terminal tab of
// <remote pk> and sum what it adds. Prints `key value` lines (medians); exit 1 on failure.
const { chromium } = require('playwright-core');

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

async function main() {
  const [base, password, want, runs, remote] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const m = { page_transfer: [], page_encoded: [], fcp_ms: [], list_ms: [], term_transfer: [] };
  try {
    for (let i = 0; i < Number(runs); i++) {
      const ctx = await browser.newContext();
      const r = await ctx.request.post(base + '/api/login', {
        data: { password }, headers: { Origin: base },
      });
      if (!r.ok()) throw new Error('login: ' + r.status() + ' ' + (await r.text()));
      const page = await ctx.newPage();
      await page.goto(base + '/', { waitUntil: 'load' });
      await page.waitForFunction((n) => document.querySelectorAll('#visors tbody tr.online').length >= n,
        Number(want), { timeout: 30000 });
      const t = await page.evaluate(() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const res = performance.getEntriesByType('resource').filter((e) => !e.name.includes('/api/'));
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        return {
          transfer: nav.transferSize + res.reduce((a, e) => a + e.transferSize, 0),
          encoded: nav.encodedBodySize + res.reduce((a, e) => a + e.encodedBodySize, 0),
          fcp: fcp ? fcp.startTime : -1,
          list: performance.now(),
          seen: res.length,
        };
      });
      m.page_transfer.push(t.transfer);
      m.page_encoded.push(t.encoded);
      m.fcp_ms.push(t.fcp);
      m.list_ms.push(t.list);
      if (remote) {
        const before = await page.evaluate(() => performance.getEntriesByType('resource').length);
        await page.evaluate((pk) => { location.hash = '#/v/' + pk + '/terminal'; }, remote);
        await page.waitForFunction(() => window.hvTerm, null, { timeout: 15000 });
        const extra = await page.evaluate((n) => performance.getEntriesByType('resource').slice(n)
          .filter((e) => !e.name.includes('/api/')).reduce((a, e) => a + e.transferSize, 0), before);
        m.term_transfer.push(extra);
      }
      await ctx.close();
    }
  } finally {
    await browser.close();
  }
  for (const [k, v] of Object.entries(m)) if (v.length) console.log(k + ' ' + Math.round(median(v)));
}

main().catch((e) => { console.error('hypervisor_bench.js: ' + e.message); process.exit(1); });
