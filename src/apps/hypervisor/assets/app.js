// The hypervisor page: plain DOM, no framework. Every value a visor sends is shown with
// textContent (never parsed as HTML): a remote visor's app names and errors are data.
"use strict";
(() => {
  const $ = (s) => document.querySelector(s);
  let csrf = "", session = null, timer = null, view = null;

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
      else if (k === "class") e.className = v;
      else if (v !== false && v != null) e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat()) if (k != null) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  function toast(msg, bad) {
    const d = h("div", { class: bad ? "bad" : "" }, msg);
    $("#toast").append(d);
    setTimeout(() => d.remove(), bad ? 8000 : 3000);
  }
  async function api(method, path, body) {
    const opt = { method, headers: {}, credentials: "same-origin" };
    if (method !== "GET") opt.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body);
    }
    const r = await fetch(path, opt);
    let j = null;
    try { j = await r.json(); } catch (_) { /* empty or not JSON */ }
    if (r.status === 401 && path !== "/api/login") { session = null; route(); throw new Error("logged out"); }
    if (!r.ok) throw new Error((j && j.error) || r.status + " " + r.statusText);
    return j;
  }
  const rpc = (pk, method, path, body) => api(method, "/api/visors/" + pk + path, body);
  const short = (pk) => pk ? pk.slice(0, 8) + "…" + pk.slice(-4) : "";
  function secs(s) {
    if (s == null) return "";
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d" + Math.floor((s % 86400) / 3600) + "h";
  }
  function bytes(n) {
    if (n == null) return "";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  const items = (x) => (x && x.items) || [];
  function table(cols, rows, id) {
    return h("table", { id },
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: cols.length, class: "muted" }, "none"))));
  }
  async function act(label, f) {
    try { await f(); toast(label + ": done"); refresh(); } catch (e) { toast(label + ": " + e.message, true); }
  }

  // ---- login ------------------------------------------------------------------------------
  function showLogin(msg) {
    stopTimer();
    $("#logout").hidden = true;
    $("#who").textContent = "";
    const pw = h("input", { type: "password", id: "password", autocomplete: "current-password", placeholder: "password", required: true });
    const err = h("p", { class: "err", id: "login-error" }, msg || "");
    const form = h("form", { class: "login", id: "login", on: { submit: async (e) => {
      e.preventDefault();
      try {
        const j = await api("POST", "/api/login", { password: pw.value });
        csrf = j.csrf; pw.value = ""; await start();
      } catch (x) { err.textContent = x.message; }
    } } }, h("h2", {}, "Log in"), pw, h("button", { type: "submit" }, "Log in"), err);
    $("#main").replaceChildren(form);
    pw.focus();
  }
  async function start() {
    try { session = await api("GET", "/api/session"); csrf = session.csrf; } catch (_) { session = null; }
    if (!session) return showLogin();
    $("#logout").hidden = false;
    $("#who").textContent = session.local ? "on " + short(session.local) : "standalone";
    route();
  }
  $("#logout").addEventListener("click", async () => {
    try { await api("POST", "/api/logout"); } catch (_) { /* gone already */ }
    session = null; csrf = ""; location.hash = "#/"; showLogin("Logged out.");
  });

  // ---- routing ----------------------------------------------------------------------------
  function stopTimer() { if (timer) clearInterval(timer); timer = null; }
  function route() {
    if (!session) return showLogin();
    stopTimer();
    if (view && view.close) view.close();
    const m = location.hash.match(/^#\/v\/([0-9a-f]{66}|[0-9a-f]{64})(?:\/(\w+))?/);
    view = m ? visorView(m[1], m[2] || "apps") : listView();
    refresh();
    timer = setInterval(refresh, 2000);
  }
  function refresh() { if (view && session) view.refresh().catch((e) => { if (e.message !== "logged out") toast(e.message, true); }); }
  window.addEventListener("hashchange", route);

  // ---- visor list -------------------------------------------------------------------------
  function listView() {
    const body = h("div", {}, h("h2", {}, "Visors"), h("p", { class: "muted" }, "Loading…"));
    $("#main").replaceChildren(body);
    return { refresh: async () => {
      const vs = items(await api("GET", "/api/visors"));
      const rows = vs.map((v) => {
        const i = v.info || {};
        const running = items(v.apps).filter((a) => a.state === "running").map((a) => a.name);
        return h("tr", { "data-pk": v.pk, class: v.online ? "online" : "offline" },
          h("td", { class: "mono" }, h("a", { href: "#/v/" + v.pk }, short(v.pk))),
          h("td", {}, v.local ? "this visor" : (i.label || "")),
          h("td", {}, i.version || ""),
          h("td", {}, secs(i.uptime_secs)),
          h("td", { class: "status" }, h("span", { class: "dot " + (v.online ? "on" : "off") }), v.online ? "online" : "offline since " + new Date(v.seen * 1000).toLocaleTimeString()),
          h("td", { title: running.join(", ") }, running.length + " / " + items(v.apps).length),
          h("td", {}, v.transports ? items(v.transports).length : "–"),
          h("td", {}, v.routes ? items(v.routes).length : "–"),
          h("td", {}, i.rss_kib != null ? bytes(i.rss_kib * 1024) : ""));
      });
      body.replaceChildren(h("h2", {}, "Visors ", h("code", {}, vs.filter((v) => v.online).length + " of " + vs.length + " online")),
        table(["PK", "label", "version", "uptime", "status", "apps running", "transports", "routes", "RSS"], rows, "visors"));
    } };
  }

  // ---- one visor --------------------------------------------------------------------------
  const TABS = ["apps", "transports", "routes", "logs", "info", "chat", "terminal", "power"];
  function visorView(pk, tab) {
    const content = h("div", { id: "tab-" + tab });
    const tabs = h("nav", { class: "tabs" }, TABS.filter((t) => t !== "terminal" || (session && session.term))
      .map((t) => h("a", { href: "#/v/" + pk + "/" + t, class: t === tab ? "cur" : "" }, t)));
    $("#main").replaceChildren(h("h2", {}, h("a", { href: "#/" }, "Visors"), " / ", h("code", { id: "visor-pk" }, pk)), tabs, content);
    const v = ({ apps: appsTab, transports: tpTab, routes: routesTab, logs: logsTab, info: infoTab,
                 chat: chatTab, terminal: termTab, power: powerTab }[tab] || appsTab)(pk, content);
    return v;
  }

  function appsTab(pk, el) {
    let editing = null;
    const editor = (a) => {
      const args = h("textarea", { rows: 3, cols: 50, name: "args", placeholder: "one argument per line" });
      const route = h("input", { name: "route", placeholder: "auto", size: 14 });
      const auto = h("input", { type: "checkbox", name: "auto_start" });
      auto.checked = !!a.auto_start;
      rpc(pk, "GET", "/v1/apps/" + a.name).then((full) => {
        if (full.args) args.value = full.args.join("\n");
        if (full.route) route.value = full.route;
      }).catch(() => {});
      return h("tr", { class: "edit" }, h("td", { colspan: 8 }, h("form", { class: "row", on: { submit: (e) => {
        e.preventDefault();
        const body = { args: args.value.split("\n").map((s) => s.trim()).filter(Boolean), auto_start: auto.checked };
        if (route.value.trim()) body.route = route.value.trim();
        act("save " + a.name, async () => {
          const r = await rpc(pk, "POST", "/v1/apps/" + a.name + "/settings", body);
          editing = null;
          if (r && r.restart_needed) toast(a.name + ": restart it for the new arguments to apply");
        });
      } } }, "args", args, "route", route, h("label", {}, auto, " autostart"), h("button", { type: "submit" }, "Save"),
        h("button", { type: "button", on: { click: () => { editing = null; refresh(); } } }, "Cancel"))));
    };
    const stop = (a, restart) => {
      let q = "";
      if (a.critical) {
        if (!confirm(a.name + " is a critical app (" + (a.summary || "") + "). " + (restart ? "Restart" : "Stop") + " it anyway?")) return;
        q = "?force=1";
      }
      act((restart ? "restart " : "stop ") + a.name, () => rpc(pk, "POST", "/v1/apps/" + a.name + (restart ? "/restart" : "/stop") + q));
    };
    return { refresh: async () => {
      if (editing) return;
      const apps = items(await rpc(pk, "GET", "/v1/apps"));
      if (editing) return;
      const rows = [];
      for (const a of apps) {
        rows.push(h("tr", { "data-app": a.name },
          h("td", {}, h("b", {}, a.name), a.critical ? h("span", { class: "muted" }, " critical") : null),
          h("td", { class: "state state-" + a.state }, a.state),
          h("td", {}, a.mode), h("td", {}, a.port || ""), h("td", {}, a.state === "running" ? secs(a.uptime_secs) : ""),
          h("td", {}, a.restarts), h("td", { class: "err" }, a.last_error || ""),
          h("td", {},
            a.state === "running" || a.state === "starting"
              ? [h("button", { class: "danger", "data-do": "stop", on: { click: () => stop(a, false) } }, "Stop"), " ",
                 h("button", { "data-do": "restart", on: { click: () => stop(a, true) } }, "Restart")]
              : h("button", { "data-do": "start", on: { click: () => act("start " + a.name, () => rpc(pk, "POST", "/v1/apps/" + a.name + "/start")) } }, "Start"),
            " ", h("button", { "data-do": "edit", on: { click: (ev) => {
              if (editing) return;
              editing = a.name;
              ev.target.closest("tr").after(editor(a));
            } } }, "Edit"))));
      }
      el.replaceChildren(table(["app", "state", "mode", "port", "uptime", "restarts", "last error", ""], rows, "apps"));
    } };
  }

  function tpTab(pk, el) {
    const peer = h("input", { name: "pk", placeholder: "peer PK (66 hex)", size: 70, required: true });
    const type = h("select", { name: "type" }, h("option", { value: "" }, "any type"), h("option", {}, "stcp"), h("option", {}, "dmsg"));
    const form = h("form", { class: "row", id: "tp-add", on: { submit: (e) => {
      e.preventDefault();
      const q = type.value ? "?type=" + type.value : "";
      act("add transport", async () => { await rpc(pk, "POST", "/v1/transports/" + peer.value.trim() + q); peer.value = ""; });
    } } }, "Add a transport to", peer, type, h("button", { type: "submit" }, "Add"));
    const list = h("div");
    el.replaceChildren(form, list);
    return { refresh: async () => {
      const tps = items(await rpc(pk, "GET", "/v1/transports"));
      list.replaceChildren(table(["id", "type", "peer", "state", "RTT", "rx", "tx", "age", ""], tps.map((t) => h("tr", { "data-peer": t.peer },
        h("td", { class: "mono" }, t.id.slice(0, 12) + "…"), h("td", {}, t.type), h("td", { class: "mono" }, short(t.peer)),
        h("td", {}, t.state, t.persistent ? h("span", { class: "muted" }, " kept") : null),
        h("td", {}, t.rtt_us ? (t.rtt_us / 1000).toFixed(1) + " ms" : ""), h("td", {}, bytes(t.rx_bytes)), h("td", {}, bytes(t.tx_bytes)),
        h("td", {}, secs(t.age_secs)),
        h("td", {}, h("button", { class: "danger", on: { click: () => act("remove transport", () => rpc(pk, "DELETE", "/v1/transports/" + t.id)) } }, "Remove")))), "transports"));
    } };
  }

  function routesTab(pk, el) {
    return { refresh: async () => {
      const [rules, groups] = await Promise.all([rpc(pk, "GET", "/v1/routes"), rpc(pk, "GET", "/v1/groups")]);
      const hop = (x) => x ? short(x.peer) + " #" + x.route_id : "";
      el.replaceChildren(h("h3", {}, "Route groups (by app)"),
        table(["peer", "apps", "policy", "state", "streams", "rx", "tx", "age", "legs"], items(groups).map((g) => h("tr", {},
          h("td", { class: "mono" }, (g.initiator ? "to " : "from ") + short(g.peer)), h("td", {}, (g.apps || []).join(", ")),
          h("td", {}, g.policy), h("td", {}, g.state), h("td", {}, g.streams), h("td", {}, bytes(g.rx_bytes)), h("td", {}, bytes(g.tx_bytes)),
          h("td", {}, secs(g.age_secs)), h("td", {}, (g.legs || []).map((l) => (l.hops || 0) + " hops " + (l.state || "")).join("; ")))), "groups"),
        h("h3", {}, "Rules"),
        table(["id", "kind", "state", "towards source", "towards destination", "age", "idle"], items(rules).map((r) => h("tr", {},
          h("td", {}, r.id), h("td", {}, r.kind), h("td", {}, r.state), h("td", { class: "mono" }, hop(r.towards_src)),
          h("td", { class: "mono" }, hop(r.towards_dst)), h("td", {}, secs(r.age_secs)), h("td", {}, secs(r.idle_secs)))), "rules"));
    } };
  }

  function logsTab(pk, el) {
    let since = 0;
    const pre = h("pre", { class: "log", id: "log" });
    el.replaceChildren(pre);
    return { refresh: async () => {
      const j = await rpc(pk, "GET", "/v1/logs?n=512&since=" + since);
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      for (const l of j.lines || []) pre.append(new Date(l.time * 1000).toLocaleTimeString() + " " + l.level + " " + l.text + "\n");
      since = j.next;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    } };
  }

  function infoTab(pk, el) {
    return { refresh: async () => {
      const [i, ports] = await Promise.all([rpc(pk, "GET", "/v1/info"), rpc(pk, "GET", "/v1/ports")]);
      el.replaceChildren(h("dl", { class: "kv", id: "info" }, Object.entries(i).flatMap(([k, v]) =>
        [h("dt", {}, k), h("dd", {}, Array.isArray(v) ? v.join(", ") : k === "uptime_secs" ? secs(v) : v)])),
        h("h3", {}, "Ports"), table(["port", "served by", "network", "since"], items(ports).map((p) => h("tr", {},
          h("td", {}, p.port), h("td", {}, p.owner), h("td", {}, p.network), h("td", {}, secs(p.since_secs)))), "ports"));
    } };
  }

  function chatTab(pk, el) {
    // skychat's own HTTP routes, run in the visor through its app control (docs/apps.md).
    const ctl = async (method, path, body) => {
      const r = await rpc(pk, "POST", "/v1/apps/skychat/control", { op: "http", method, path, body });
      if (r.status >= 400) throw new Error((r.body && r.body.error) || "skychat answered " + r.status);
      return r.body;
    };
    const log = h("div", { class: "chat", id: "chat" });
    const to = h("input", { name: "to", placeholder: "peer PK", size: 70, required: true });
    const text = h("input", { name: "text", placeholder: "message", size: 50, required: true });
    el.replaceChildren(log, h("form", { class: "row", id: "chat-send", on: { submit: (e) => {
      e.preventDefault();
      act("send", async () => {
        const r = await ctl("POST", "/message", { recipient: to.value.trim(), message: text.value });
        text.value = "";
        if (r && r.acked === false) toast("sent; no ack from the peer yet");
      });
    } } }, to, text, h("button", { type: "submit" }, "Send")));
    let shown = "";
    return { refresh: async () => {
      const msgs = (await ctl("GET", "/history?limit=100")) || [];
      const key = msgs.map((m) => m.id + m.peer).join();
      if (key === shown) return;
      shown = key;
      log.replaceChildren(...msgs.map((m) => h("p", { class: m.dir === "out" ? "me" : "" },
        h("span", { class: "muted" }, new Date(m.ts).toLocaleTimeString() + " "),
        (m.dir === "out" ? "→ " : "← ") + short(m.peer) + ": ", m.message)));
      log.scrollTop = log.scrollHeight;
    } };
  }

  function powerTab(pk, el) {
    const btn = (what, label) => h("button", { class: "danger", id: what, on: { click: () => {
      if (!confirm(label + " visor " + short(pk) + "?")) return;
      act(label, () => rpc(pk, "POST", "/v1/" + what));
    } } }, label);
    el.replaceChildren(h("p", {}, "Restart stops every app and starts the visor again; shutdown stops it (under systemd it stays down until started)."),
      h("p", {}, btn("restart", "Restart"), " ", btn("shutdown", "Shut down")));
    return { refresh: async () => {} };
  }

  // ---- terminal ---------------------------------------------------------------------------
  function loadOnce(tag, attrs) {
    return new Promise((ok, bad) => {
      const sel = tag === "script" ? `script[src="${attrs.src}"]` : `link[href="${attrs.href}"]`;
      if (document.querySelector(sel)) return ok();
      const e = h(tag, attrs); e.onload = ok; e.onerror = () => bad(new Error("cannot load " + (attrs.src || attrs.href)));
      document.head.append(e);
    });
  }
  function termTab(pk, el) {
    const box = h("div", { id: "term" });
    const status = h("p", { class: "muted", id: "term-status" }, "connecting…");
    el.replaceChildren(status, box);
    let ws = null, term = null, onResize = null;
    (async () => {
      await loadOnce("link", { rel: "stylesheet", href: "/xterm.css" });
      await loadOnce("script", { src: "/xterm.js" });
      await loadOnce("script", { src: "/fit.js" });
      term = new window.Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000 });
      const fit = new window.FitAddon.FitAddon();
      term.loadAddon(fit);
      term.open(box);
      fit.fit();
      window.hvTerm = term; // for the browser test: what the screen shows
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      ws = new WebSocket(`${proto}//${location.host}/api/visors/${pk}/term?rows=${term.rows}&cols=${term.cols}&csrf=${csrf}`);
      ws.binaryType = "arraybuffer";
      ws.onopen = () => { status.textContent = "connected to " + short(pk) + " (" + term.rows + "×" + term.cols + ")"; term.focus(); };
      ws.onmessage = (m) => {
        if (typeof m.data === "string") {
          if (m.data[0] === "x") status.textContent = "the shell exited (" + m.data.slice(1) + ")";
          else if (m.data[0] === "e") status.textContent = "error: " + m.data.slice(1);
        } else term.write(new Uint8Array(m.data));
      };
      ws.onclose = (e) => { if (!status.textContent.startsWith("the shell") && !status.textContent.startsWith("error")) status.textContent = "closed" + (e.reason ? ": " + e.reason : ""); };
      term.onData((d) => { if (ws.readyState === 1) ws.send("i" + d); });
      term.onResize(({ rows, cols }) => {
        if (ws.readyState === 1) ws.send("r" + rows + "," + cols);
        status.textContent = "connected to " + short(pk) + " (" + rows + "×" + cols + ")";
      });
      onResize = () => fit.fit();
      window.addEventListener("resize", onResize);
    })().catch((e) => { status.textContent = "error: " + e.message; });
    return { refresh: async () => {}, close: () => {
      if (onResize) window.removeEventListener("resize", onResize);
      if (ws) ws.close(); if (term) term.dispose(); window.hvTerm = null;
    } };
  }

  start();
})();
