// The hypervisor web page in headless Chromium (tests/hypervisor_web.rs runs this).
// Usage: node hypervisor_page.js <url> <password> <pk B> <pk C> <pk D> <screenshots dir> [term]
// <url> is the hypervisor's web UI (http://127.0.0.1:PORT/); B, C and D are the three remote
// visors (the list also shows the local one). With the last argument `term` the terminal
// steps run (the binary has `hv-term`); without it they are skipped with a note.
// Prints `ok <step>` per step, then `ok`, and exits 0; or `FAILED: <step>: <why>` and 1.
// Debian's chromium (a fresh temporary profile each run); playwright-core only drives it.
const { chromium } = require('playwright-core');
const path = require('path');

let step = 'start';
const ok = (s) => console.log('ok ' + s);
const fail = (msg) => { throw new Error(msg); };

async function main() {
  const [url, password, pkB, pkC, pkD, shots, termArg] = process.argv.slice(2);
  if (!shots) fail('usage: hypervisor_page.js <url> <password> <pk B> <pk C> <pk D> <screenshots dir> [term]');
  const withTerm = termArg === 'term';
  const remotes = [pkB, pkC, pkD];
  const base = url.replace(/\/+$/, '');
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // A critical app's stop, the power buttons: accept every confirm().
    page.on('dialog', (d) => d.accept());
    const shot = async (name) => {
      await page.screenshot({ path: path.join(shots, name), fullPage: true });
    };
    // Waits for fn(arg) in the page; on timeout, fails with `what` and what the page shows.
    const waitFor = async (what, fn, arg, timeout = 15000) => {
      try {
        await page.waitForFunction(fn, arg, { timeout, polling: 100 });
      } catch (e) {
        const main = await page.evaluate(() => (document.querySelector('#main') || document.body).innerText).catch(() => '?');
        const toasts = await page.evaluate(() => document.querySelector('#toast') ? document.querySelector('#toast').innerText : '').catch(() => '');
        fail(`${what} (not within ${timeout} ms); the page shows: ${JSON.stringify(main.slice(0, 1500))}; toasts: ${JSON.stringify(toasts)}`);
      }
    };
    // Opens a page of the app (no reload: the hash route); the old page's toasts go, so
    // each screenshot shows its own.
    const go = async (hash) => {
      await page.evaluate((h) => { document.querySelector('#toast').replaceChildren(); location.hash = h; }, hash);
    };

    // ---- login -----------------------------------------------------------------------------
    step = 'wrong password';
    await page.goto(base + '/', { waitUntil: 'load', timeout: 15000 });
    await page.waitForSelector('#login #password', { timeout: 10000 })
      .catch(() => fail('no login form (#login #password) on the first visit'));
    await page.fill('#password', 'not the password');
    await page.click('#login button[type=submit]');
    await waitFor('the wrong password was not refused with "wrong password" in #login-error',
      () => /wrong password/i.test((document.querySelector('#login-error') || {}).textContent || ''));
    if (await page.$('#visors')) fail('the visor list is shown after a wrong password');
    ok(step + ': ' + (await page.textContent('#login-error')).trim());

    step = 'login';
    await page.fill('#password', password);
    await page.click('#login button[type=submit]');
    await waitFor('the visor list (#visors) did not appear after logging in',
      () => !!document.querySelector('#visors') && !document.querySelector('#login'));
    const cookies = await context.cookies(base);
    const hv = cookies.find((c) => c.name === 'hv');
    if (!hv) fail('no hv cookie after the login: ' + JSON.stringify(cookies));
    if (!hv.httpOnly || hv.sameSite !== 'Strict') fail('the hv cookie is not HttpOnly + SameSite=Strict: ' + JSON.stringify(hv));
    if (await page.evaluate(() => document.cookie.includes('hv='))) fail('the page script can read the session cookie');
    ok(step);

    // ---- the visor list ------------------------------------------------------------------
    step = 'visor list';
    await waitFor('the visor list did not show 4 visors, all online',
      (pks) => {
        const rows = Array.from(document.querySelectorAll('#visors tr[data-pk]'));
        if (rows.length !== 4) return false;
        if (!pks.every((pk) => rows.some((r) => r.dataset.pk === pk))) return false;
        return rows.every((r) => r.classList.contains('online')
          && (r.querySelector('td.status') || {}).textContent.trim() === 'online');
      }, remotes, 30000);
    // Wait until every row has its first reading (the version column) so the shot is full.
    await waitFor('the visor list rows never got their readings (version column)',
      () => Array.from(document.querySelectorAll('#visors tr[data-pk]'))
        .every((r) => (r.children[2] || {}).textContent), null, 10000);
    await shot('list.png');
    ok(step + ': 4 visors online');

    // ---- apps: stop and start logserver on B without a reload --------------------------------
    step = 'apps';
    await go('#/v/' + pkB + '/apps');
    const app = (name) => `#apps tr[data-app="${name}"]`;
    const stateIs = (name, st) => waitFor(`${name} on ${pkB.slice(0, 8)} is not shown "${st}"`,
      ([sel, s]) => { const c = document.querySelector(sel + ' td.state'); return !!c && c.textContent.trim() === s; },
      [app(name), st], 20000);
    await stateIs('logserver', 'running');
    const urlBefore = page.url();
    const navBefore = await page.evaluate(() => performance.getEntriesByType('navigation').length + ':' + performance.timeOrigin);
    await page.locator(app('logserver') + ' button[data-do=stop]').click({ timeout: 10000 });
    await stateIs('logserver', 'stopped');
    ok('apps: logserver stopped');
    await page.locator(app('logserver') + ' button[data-do=start]').click({ timeout: 10000 });
    await stateIs('logserver', 'running');
    const navAfter = await page.evaluate(() => performance.getEntriesByType('navigation').length + ':' + performance.timeOrigin);
    if (navAfter !== navBefore || page.url() !== urlBefore) fail(`the page reloaded (${urlBefore} ${navBefore} -> ${page.url()} ${navAfter})`);
    await shot('apps.png');
    ok('apps: logserver running again, no reload');

    // ---- transports: B dials C over dmsg -----------------------------------------------------
    step = 'transports';
    await go('#/v/' + pkB + '/transports');
    await page.waitForSelector('#tp-add input[name=pk]', { timeout: 10000 })
      .catch(() => fail('no #tp-add form on the transports tab'));
    await page.fill('#tp-add input[name=pk]', pkC);
    await page.selectOption('#tp-add select[name=type]', 'dmsg');
    await page.click('#tp-add button[type=submit]');
    await waitFor(`the transport to ${pkC.slice(0, 8)} is not listed in #transports`,
      (pk) => !!document.querySelector(`#transports tr[data-peer="${pk}"]`), pkC, 30000);
    const tp = (await page.innerText(`#transports tr[data-peer="${pkC}"]`)).replace(/\s+/g, ' ').trim();
    if (!/dmsg/.test(tp)) fail('the transport row does not say dmsg: ' + tp);
    await shot('transports.png');
    ok(step + ': ' + tp);

    // ---- routes, logs, info ---------------------------------------------------------------
    step = 'routes';
    await go('#/v/' + pkB + '/routes');
    await waitFor('the routes tab did not render #groups and #rules',
      () => !!document.querySelector('#tab-routes #groups') && !!document.querySelector('#tab-routes #rules'));
    await shot('routes.png');
    ok(step);

    step = 'logs';
    await go('#/v/' + pkB + '/logs');
    await waitFor('the logs tab did not render #log', () => !!document.querySelector('#tab-logs #log'));
    // The visor's /v1/logs may not exist yet (404): the tab shows an empty log and a toast.
    await page.waitForTimeout(2500);
    const logText = await page.textContent('#log');
    const logToast = await page.innerText("#toast");
    await shot('logs.png');
    if (logText.trim()) ok(step + ': ' + logText.trim().split('\n').length + ' line(s)');
    else ok(step + ': rendered, no lines (tolerated: ' + (JSON.stringify(logToast.trim().split('\n')[0] || '') || 'no error') + ')');

    step = 'info';
    await go('#/v/' + pkB + '/info');
    await waitFor('the info tab did not show the visor\'s PK in #info',
      (pk) => { const i = document.querySelector('#tab-info #info'); return !!i && i.textContent.includes(pk); }, pkB);
    await shot('info.png');
    ok(step);

    // ---- edit an app's settings: logserver's autostart off, then on again --------------------
    step = 'edit';
    await go('#/v/' + pkB + '/apps');
    const autoStart = async () => page.evaluate(async (pk) => {
      const r = await fetch('/api/visors/' + pk + '/v1/apps/logserver');
      return r.ok ? (await r.json()).auto_start : 'HTTP ' + r.status;
    }, pkB);
    const setAuto = async (on) => {
      await page.locator(app('logserver') + ' button[data-do=edit]').click({ timeout: 10000 });
      const box = page.locator('tr.edit input[name=auto_start]');
      await box.waitFor({ timeout: 10000 });
      await page.waitForFunction(() => { const a = document.querySelector('tr.edit textarea[name=args]'); return !!a; });
      if (on) await box.check(); else await box.uncheck();
      await page.click('tr.edit button[type=submit]');
      const t0 = Date.now();
      let got;
      while (Date.now() - t0 < 10000) {
        got = await autoStart();
        if (got === on) return;
        await page.waitForTimeout(200);
      }
      fail(`logserver's auto_start on ${pkB.slice(0, 8)} is ${got}, not ${on}, after saving the edit form`);
    };
    await setAuto(false);
    await setAuto(true);
    ok(step + ': logserver autostart off and on again');

    // ---- chat: C's chat tab open in a second tab; B sends to C; C's tab shows it live -------
    step = 'chat';
    const pageC = await context.newPage();
    pageC.on('pageerror', (e) => errors.push('second tab: ' + String(e)));
    await pageC.goto(base + '/#/v/' + pkC + '/chat', { waitUntil: 'load', timeout: 15000 });
    await pageC.waitForSelector('#chat-send input[name=to]', { timeout: 10000 })
      .catch(() => fail('no chat form (#chat-send) on C\'s chat tab'));
    await go('#/v/' + pkB + '/chat');
    await page.waitForSelector('#chat-send input[name=to]', { timeout: 10000 })
      .catch(() => fail('no chat form (#chat-send) on B\'s chat tab'));
    const msg = 'hello from the hypervisor ' + (Date.now() % 100000);
    await page.fill('#chat-send input[name=to]', pkC);
    await page.fill('#chat-send input[name=text]', msg);
    await page.click('#chat-send button[type=submit]');
    await waitFor(`B's chat does not show the sent message ${JSON.stringify(msg)} in #chat`,
      (m) => Array.from(document.querySelectorAll('#chat p.me')).some((p) => p.textContent.includes(m)), msg, 20000);
    try {
      await pageC.waitForFunction((m) => Array.from(document.querySelectorAll('#chat p'))
        .some((p) => !p.classList.contains('me') && p.textContent.includes(m)), msg, { timeout: 20000, polling: 100 });
    } catch (_) {
      fail(`C's open chat tab did not show B's message live; it shows: ${JSON.stringify(await pageC.textContent('#chat'))}`);
    }
    await shot('chat.png');
    await pageC.close();
    ok(step + ': B -> C, shown live on C\'s open tab');

    // ---- terminal --------------------------------------------------------------------------
    if (!withTerm) {
      console.log('skip terminal: the binary is built without hv-term (no terminal tab)');
    } else {
      step = 'terminal';
      const session = await page.evaluate(async () => (await fetch('/api/session')).json());
      if (!session.term) fail('the test expects the terminal but /api/session says term=false');
      await go('#/v/' + pkB + '/terminal');
      await waitFor('the terminal did not connect (#term-status)',
        () => /^connected to /.test((document.querySelector('#term-status') || {}).textContent || '')
          && !!window.hvTerm, null, 20000);
      const screen = () => page.evaluate(() => {
        const b = window.hvTerm.buffer.active, out = [];
        for (let i = 0; i < b.length; i++) { const l = b.getLine(i); if (l) out.push(l.translateToString(true)); }
        return out;
      });
      const lineIs = async (what, want, timeout) => {
        try {
          await page.waitForFunction((w) => {
            const b = window.hvTerm && window.hvTerm.buffer.active;
            if (!b) return false;
            for (let i = 0; i < b.length; i++) { const l = b.getLine(i); if (l && l.translateToString(true).trim() === w) return true; }
            return false;
          }, want, { timeout, polling: 100 });
        } catch (_) {
          fail(`${what}: no screen line is exactly ${JSON.stringify(want)} within ${timeout} ms; the screen: ${JSON.stringify((await screen()).filter(Boolean).slice(-15))}`);
        }
      };
      const type = async (text) => {
        await page.click('#term');
        await page.keyboard.type(text);
        await page.keyboard.press('Enter');
      };
      await type('echo $((6*7))');
      await lineIs('echo', '42', 10000);
      ok('terminal: echo $((6*7)) -> 42');

      // The size the terminal has now reaches the shell; a resize changes it.
      const size = async () => {
        const s = await page.textContent('#term-status');
        const m = s.match(/\((\d+)×(\d+)\)/);
        if (!m) fail('#term-status does not show R×C: ' + s);
        return [Number(m[1]), Number(m[2])];
      };
      const [r0, c0] = await size();
      const marker = (n) => `echo sz$((${n}+0)) $(stty size)`;
      await type(marker(1));
      await lineIs('stty size before the resize', `sz1 ${r0} ${c0}`, 10000);
      await page.setViewportSize({ width: 900, height: 560 });
      await waitFor('the terminal size in #term-status did not change after the resize',
        ([r, c]) => { const m = ((document.querySelector('#term-status') || {}).textContent || '').match(/\((\d+)×(\d+)\)/); return !!m && (Number(m[1]) !== r || Number(m[2]) !== c); },
        [r0, c0], 10000);
      const [r1, c1] = await size();
      await type(marker(2));
      await lineIs('stty size after the resize', `sz2 ${r1} ${c1}`, 10000);
      ok(`terminal: resize ${r0}x${c0} -> ${r1}x${c1} reached the shell`);

      // Ctrl-C ends a foreground `sleep 30`: a command typed after it runs within 3 s.
      await type('sleep 30');
      await page.waitForTimeout(500);
      const t0 = Date.now();
      await page.keyboard.press('Control+C');
      await type('echo back$((1+1))');
      await lineIs('Ctrl-C did not end sleep 30', 'back2', 3000);
      ok(`terminal: Ctrl-C ended sleep 30, the prompt was back in ${Date.now() - t0} ms`);
      await shot('terminal.png');
      ok(step);
    }

    // ---- power: restart D (it comes back, younger), then shut it down (listed offline) ------
    step = 'power';
    const visorD = async () => page.evaluate(async (pk) => {
      const r = await fetch('/api/visors');
      const vs = await r.json();
      return (vs.items || vs).find((v) => v.pk === pk) || null;
    }, pkD);
    const before = await visorD();
    if (!before || !before.online || !before.info) fail('D is not online before the restart: ' + JSON.stringify(before));
    await go('#/v/' + pkD + '/power');
    await page.waitForSelector('#tab-power button#restart', { timeout: 10000 })
      .catch(() => fail('no #restart button on the power tab'));
    await page.click('#tab-power button#restart');
    await waitFor('no "restart: done" toast after the restart button',
      () => /Restart: done/.test(document.querySelector('#toast').innerText), null, 10000);
    await shot('power.png');
    {
      const t0 = Date.now();
      let d = before;
      while (!(d && d.online && d.info && d.info.uptime_secs < before.info.uptime_secs)) {
        if (Date.now() - t0 > 30000) fail(`D did not come back younger after the restart (before: ${before.info.uptime_secs} s up; now: ${JSON.stringify(d)})`);
        await page.waitForTimeout(250);
        d = await visorD();
      }
      ok(`power: D restarted (${before.info.uptime_secs} s -> ${d.info.uptime_secs} s up)`);
    }
    await go('#/v/' + pkD + '/power');
    await page.waitForSelector('#tab-power button#shutdown', { timeout: 10000 });
    await page.click('#tab-power button#shutdown');
    await go('#/');
    await waitFor('D is not listed offline after the shutdown',
      (pk) => { const r = document.querySelector(`#visors tr[data-pk="${pk}"]`); return !!r && r.classList.contains('offline')
        && /offline since/.test((r.querySelector('td.status') || {}).textContent || ''); }, pkD, 30000);
    await shot('offline.png');
    ok('power: D shut down, listed offline (not dropped)');

    // ---- logout ----------------------------------------------------------------------------
    step = 'logout';
    await go('#/');
    await page.click('#logout');
    await waitFor('the login form did not come back after logging out',
      () => !!document.querySelector('#login #password') && !document.querySelector('#visors'));
    ok(step);

    step = 'old cookie';
    const r = await fetch(base + '/api/visors', { headers: { Cookie: 'hv=' + hv.value } });
    if (r.status !== 401) fail(`/api/visors with the logged-out cookie answered ${r.status}, not 401: ${await r.text()}`);
    ok(step + ': /api/visors with the old cookie is 401');

    step = 'page errors';
    if (errors.length) fail('page errors: ' + errors.join('; '));
    console.log('ok');
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => {
  console.log('FAILED: ' + step + ': ' + (e && e.message || e));
  if (e && e.stack) console.error(e.stack);
  process.exit(1);
});
