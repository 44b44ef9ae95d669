// Shared by every page: credentials, API calls, translations, times in the site's zone, the top bar,
// and an SSE reader that can send the Authorization header (EventSource cannot).
(function () {
  "use strict";
  const CE = (window.CE = {});
  const store = window.sessionStorage;

  // --- credentials: a user's token (login page) or an API key (#key=… link of the demo) ---
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("key")) {
    store.setItem("ce_key", hash.get("key"));
    store.removeItem("ce_token");
    history.replaceState(null, "", location.pathname + location.search);
  }
  CE.authHeaders = function () {
    const token = store.getItem("ce_token"), key = store.getItem("ce_key");
    if (token) return { Authorization: "Bearer " + token };
    if (key) return { "X-API-Key": key };
    return {};
  };
  CE.loggedIn = () => !!(store.getItem("ce_token") || store.getItem("ce_key"));
  CE.toLogin = function () {
    store.removeItem("ce_token"); store.removeItem("ce_key");
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  };
  CE.logout = async function () {
    if (store.getItem("ce_token")) {
      try { await fetch("/api/v1/auth/logout", { method: "POST", headers: CE.authHeaders() }); } catch (e) { /* offline */ }
    }
    store.removeItem("ce_token"); store.removeItem("ce_key");
    location.href = "/login";
  };

  // --- API ---
  CE.api = async function (path, opts = {}) {
    const res = await fetch(path, { ...opts, headers: { ...CE.authHeaders(), ...(opts.headers || {}) } });
    if (res.status === 401) { CE.toLogin(); throw new Error("401"); }
    return res;
  };
  CE.json = async function (path, opts = {}) {
    const res = await CE.api(path, opts);
    if (!res.ok) {
      let detail = res.statusText;
      try { const body = await res.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (e) { /* not JSON */ }
      const err = new Error(detail); err.status = res.status; throw err;
    }
    return res.status === 204 ? null : res.json();
  };
  CE.post = (path, body) => CE.json(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: body === undefined ? undefined : JSON.stringify(body) });

  // --- language and translations ---
  CE.lang = localStorage.getItem("ce_lang") || "zh-CN";
  if (!window.CE_I18N[CE.lang]) CE.lang = "zh-CN";
  document.documentElement.lang = CE.lang;
  CE.t = function (key, vars) {
    let text = (window.CE_I18N[CE.lang] || {})[key] ?? window.CE_I18N["zh-CN"][key] ?? key;
    if (vars) for (const [k, v] of Object.entries(vars)) text = text.replaceAll("{" + k + "}", v);
    return text;
  };
  CE.applyI18n = function (root = document) {
    root.querySelectorAll("[data-i18n]").forEach(el => { el.textContent = CE.t(el.dataset.i18n); });
    root.querySelectorAll("[data-i18n-placeholder]").forEach(el => { el.placeholder = CE.t(el.dataset.i18nPlaceholder); });
    root.querySelectorAll("[data-i18n-title]").forEach(el => { el.title = CE.t(el.dataset.i18nTitle); });
  };
  CE.setLang = function (lang) { localStorage.setItem("ce_lang", lang); location.reload(); };
  CE.rule = r => CE.t("rule." + r);
  CE.state = s => CE.t("state." + s);
  CE.reason = r => CE.t("reason." + r);
  CE.caseState = s => CE.t("case." + s);
  CE.REASONS = ["false_alarm", "not_a_violation", "duplicate", "already_handled"];
  CE.RULES = ["fire_lane", "bin_overflow", "corridor_clutter", "ebike_indoor"];

  // --- times, always in the site's time zone ---
  CE.tz = "Asia/Shanghai";
  CE.fmt = function (value, opts = {}) {
    if (value === null || value === undefined || value === "") return "—";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return date.toLocaleString(CE.lang === "en" ? "en-GB" : "zh-CN", { timeZone: CE.tz, hour12: false,
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", ...opts });
  };
  CE.fmtClock = value => CE.fmt(value, { year: undefined, month: undefined, day: undefined });
  // "YYYY-MM" of now in the site's zone (the scorecard's default period).
  CE.thisMonth = function () {
    const parts = new Intl.DateTimeFormat("en-CA", { timeZone: CE.tz, year: "numeric", month: "2-digit" }).formatToParts(new Date());
    return parts.find(p => p.type === "year").value + "-" + parts.find(p => p.type === "month").value;
  };
  CE.esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  // --- top bar ---
  CE.header = function (active) {
    const bar = document.createElement("header");
    bar.className = "topbar";
    const links = [["/", "nav.wall"], ["/review", "nav.review"], ["/cases", "nav.cases"], ["/scorecard", "nav.scorecard"]];
    bar.innerHTML = `<a class="brand" href="/">${CE.esc(CE.t("app.name"))}</a><nav>` +
      links.map(([href, key]) => `<a href="${href}" class="${href === active ? "active" : ""}" data-nav="${key}">${CE.esc(CE.t(key))}</a>`).join("") +
      `</nav><span class="spacer"></span><span class="who" id="who"></span>` +
      `<button type="button" class="linkish" id="lang">${CE.esc(CE.t("nav.lang"))}</button>` +
      `<button type="button" class="linkish" id="logout">${CE.esc(CE.t("nav.logout"))}</button>`;
    document.body.prepend(bar);
    bar.querySelector("#lang").onclick = () => CE.setLang(CE.lang === "en" ? "zh-CN" : "en");
    bar.querySelector("#logout").onclick = CE.logout;
  };

  // Load config (time zone), the caller and their compounds. Sends the browser to /login when needed.
  CE.init = async function (active) {
    CE.applyI18n();
    if (!CE.loggedIn()) { CE.toLogin(); return new Promise(() => {}); }
    CE.header(active);
    const config = await (await fetch("/api/v1/ui/config")).json();
    CE.tz = config.timezone || CE.tz;
    CE.me = await CE.json("/api/v1/auth/me");
    CE.compounds = await CE.json("/api/v1/compounds");
    try { for (const cam of await CE.json("/api/v1/cameras/live")) CE.cameraNames[cam.id] = cam.name; } catch (e) { /* no live view */ }
    document.getElementById("who").textContent = CE.me.name;
    return CE.me;
  };
  CE.fillCompoundSelect = function (select, withAll = true) {
    select.innerHTML = (withAll ? `<option value="">${CE.esc(CE.t("common.all_compounds"))}</option>` : "") +
      CE.compounds.map(c => `<option value="${CE.esc(c.id)}">${CE.esc(c.name)}</option>`).join("");
  };
  CE.fillRuleSelect = function (select) {
    select.innerHTML = `<option value="">${CE.esc(CE.t("common.all_rules"))}</option>` +
      CE.RULES.map(r => `<option value="${r}">${CE.esc(CE.rule(r))}</option>`).join("");
  };
  CE.compoundName = id => (CE.compounds.find(c => c.id === id) || {}).name || id;
  CE.cameraNames = {};  // filled from the live camera list (the wall), which knows names the catalog may not
  CE.cameraName = function (id) {
    if (CE.cameraNames[id]) return CE.cameraNames[id];
    for (const c of CE.compounds || []) { const cam = c.cameras.find(x => x.id === id); if (cam) return cam.name; }
    return id;
  };

  // A short message at the bottom of the page.
  CE.toast = function (text, kind = "info") {
    let box = document.getElementById("toast");
    if (!box) { box = document.createElement("div"); box.id = "toast"; document.body.appendChild(box); }
    box.textContent = text; box.className = "show " + kind;
    clearTimeout(CE._toastTimer); CE._toastTimer = setTimeout(() => { box.className = ""; }, 2500);
  };

  // Download a file from the API (the credential is a header, so a plain link would not do).
  CE.download = async function (path, filename) {
    const res = await CE.api(path);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement("a"); a.href = url; a.download = filename; document.body.appendChild(a); a.click();
    setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 1000);
  };

  // Server-Sent Events over fetch, so the Authorization header can be sent. Reconnects with
  // Last-Event-ID after a drop. onEvent(type, data, id); onState("open" | "closed").
  CE.sse = function (path, onEvent, onState) {
    let lastId = null, stopped = false, controller = null;
    async function run() {
      while (!stopped) {
        controller = new AbortController();
        try {
          const headers = { ...CE.authHeaders(), Accept: "text/event-stream" };
          if (lastId) headers["Last-Event-ID"] = lastId;
          const res = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
          if (res.status === 401) { CE.toLogin(); return; }
          if (!res.ok) throw new Error("HTTP " + res.status);
          onState && onState("open");
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value.replace(/\r\n?/g, "\n");
            let cut;
            while ((cut = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
              let type = "message", data = [], id = null;
              for (const line of block.split("\n")) {
                if (line.startsWith(":")) continue;
                const colon = line.indexOf(":"), field = colon < 0 ? line : line.slice(0, colon);
                const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
                if (field === "event") type = val; else if (field === "data") data.push(val); else if (field === "id") id = val;
              }
              if (id !== null) lastId = id;
              if (data.length) { try { onEvent(type, JSON.parse(data.join("\n")), id); } catch (e) { console.error(e); } }
            }
          }
        } catch (e) {
          if (stopped) return;
        }
        onState && onState("closed");
        await new Promise(r => setTimeout(r, 2000));
      }
    }
    run();
    return { close() { stopped = true; controller && controller.abort(); } };
  };
})();
