// The monitoring wall: camera tiles fed by one multiplexed stream (/api/v1/live/wall), and the live alert
// feed (SSE /api/v1/feed/alerts) that flashes, sounds and links each new violation to its review.
(function () {
  "use strict";
  const STALL_S = 6;             // no new frame for this long: the tile shows "stalled"
  const state = { tiles: new Map(), connected: false, stream: null, feed: null, beeps: 0, alerts: 0, frames: 0 };
  window.CE_WALL = state;        // read by the browser tests and handy in the console
  const $ = id => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  let soundOn = localStorage.getItem("ce_sound") !== "off";
  let audio = null;

  function filters() { return { compound: $("compound").value, rule: $("rule").value }; }

  // --- tiles ---
  function tileFor(cam) {
    let tile = state.tiles.get(cam.id);
    if (tile) return tile;
    const el = document.createElement("div");
    el.className = "tile"; el.id = "tile-" + cam.id; el.dataset.camera = cam.id; el.dataset.frames = "0";
    el.innerHTML = `<canvas width="640" height="360"></canvas><span class="name"></span><span class="health"></span><span class="clock"></span>`;
    el.querySelector(".name").textContent = cam.name;
    el.querySelector(".name").title = CE.compoundName(cam.compound_id) + " / " + cam.name;
    $("tiles").appendChild(el);
    tile = { el, canvas: el.querySelector("canvas"), cam, lastFrameAt: null, serverHealth: null, ageS: null, drawing: false };
    state.tiles.set(cam.id, tile);
    return tile;
  }
  function applyRuleFilter() {
    const rule = filters().rule;
    for (const tile of state.tiles.values()) {
      const armed = (tile.cam.zones || []).some(z => (z.rules || []).includes(rule));
      tile.el.hidden = !!rule && !armed;
    }
    const shown = [...state.tiles.values()].filter(t => !t.el.hidden).length;
    // as many columns as make the tiles a square-ish grid: 1, 2×2, 3×3, 4×4 (and more rows past 16)
    const columns = shown <= 1 ? 1 : shown <= 4 ? 2 : shown <= 9 ? 3 : 4;
    $("tiles").style.gridTemplateColumns = `repeat(${columns}, minmax(0, 1fr))`;
    $("notiles").hidden = shown > 0;
  }
  function setHealth(tile) {
    let health;
    const sinceFrame = tile.lastFrameAt === null ? null : (performance.now() - tile.lastFrameAt) / 1000;
    if (!state.connected) health = "offline";
    else if (tile.serverHealth && tile.serverHealth !== "online" && CE.t("health." + tile.serverHealth) !== "health." + tile.serverHealth) health = tile.serverHealth;
    else if (tile.ageS === null && tile.lastFrameAt === null) health = "waiting";
    else if ((tile.ageS !== null && tile.ageS > STALL_S) || (sinceFrame !== null && sinceFrame > STALL_S)) health = "stalled";
    else health = "online";
    if (tile.el.dataset.health !== health) {
      tile.el.dataset.health = health;
      tile.el.classList.toggle("warn", !["online", "offline", "waiting"].includes(health));
      tile.el.querySelector(".health").textContent = CE.t("health." + health);
    }
  }
  // Camera health reported by the workers (offline, frozen, covered, …: /api/v1/camera-health), polled;
  // a server without that endpoint (404) is not asked again.
  const reported = new Map();
  async function pollHealth() {
    try {
      const res = await CE.api("/api/v1/camera-health?active=true&limit=500");
      if (res.status === 404) return;
      if (res.ok) {
        reported.clear();
        for (const h of await res.json()) if (!reported.has(h.camera_id)) reported.set(h.camera_id, h);
        for (const tile of state.tiles.values()) applyReported(tile);
      }
    } catch (e) { /* retried below */ }
    setTimeout(pollHealth, 5000);
  }
  function applyReported(tile) {
    const h = reported.get(tile.cam.id);
    tile.serverHealth = h ? h.kind : null;
    tile.el.querySelector(".health").title = h ? `${CE.fmt(h.started_at)} ${h.detail || ""}` : "";
    setHealth(tile);
  }
  function onStatus(status) {
    const ids = new Set();
    for (const cam of status.cameras) {
      ids.add(cam.id);
      const tile = tileFor(cam);
      tile.cam = cam; tile.ageS = cam.age_s; applyReported(tile);
      CE.cameraNames[cam.id] = cam.name;
    }
    for (const [id, tile] of state.tiles) if (!ids.has(id)) { tile.el.remove(); state.tiles.delete(id); }
    applyRuleFilter();
    state.tiles.forEach(setHealth);
  }
  async function onFrame(header, body) {
    const tile = state.tiles.get(header.camera_id);
    if (!tile || tile.el.hidden || tile.drawing) return;   // a tile still drawing skips a frame, never queues
    tile.drawing = true;
    try {
      const bitmap = await createImageBitmap(new Blob([body], { type: "image/jpeg" }));
      if (tile.canvas.width !== bitmap.width || tile.canvas.height !== bitmap.height) {
        tile.canvas.width = bitmap.width; tile.canvas.height = bitmap.height;
      }
      tile.canvas.getContext("2d").drawImage(bitmap, 0, 0);
      bitmap.close();
      tile.lastFrameAt = performance.now();
      tile.el.dataset.frames = String(Number(tile.el.dataset.frames) + 1);
      tile.el.dataset.frameTime = String(header.time_s);
      tile.el.querySelector(".clock").textContent = CE.fmt(header.time_s);
      state.frames += 1;
      setHealth(tile);
    } catch (e) { /* a broken JPEG: keep the previous picture */ } finally { tile.drawing = false; }
  }

  // The wall stream: records of u32 header length, header JSON, u32 body length, body.
  async function runStream() {
    const decoder = new TextDecoder();
    for (;;) {
      const controller = new AbortController(); state.stream = controller;
      try {
        const query = new URLSearchParams(); if (filters().compound) query.set("compound_id", filters().compound);
        const res = await fetch("/api/v1/live/wall?" + query, { headers: CE.authHeaders(), signal: controller.signal, cache: "no-store" });
        if (res.status === 401) { CE.toLogin(); return; }
        if (!res.ok) throw new Error("HTTP " + res.status);
        setConnected(true);
        const reader = res.body.getReader();
        let buf = new Uint8Array(0);
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const joined = new Uint8Array(buf.length + value.length); joined.set(buf); joined.set(value, buf.length); buf = joined;
          let off = 0;
          const view = new DataView(buf.buffer);
          while (buf.length - off >= 4) {
            const headLen = view.getUint32(off);
            if (buf.length - off < 8 + headLen) break;
            const bodyLen = view.getUint32(off + 4 + headLen);
            const end = off + 8 + headLen + bodyLen;
            if (buf.length < end) break;
            const header = JSON.parse(decoder.decode(buf.subarray(off + 4, off + 4 + headLen)));
            const body = buf.slice(off + 8 + headLen, end);
            if (header.type === "status") onStatus(header); else if (header.type === "frame") onFrame(header, body);
            off = end;
          }
          buf = buf.slice(off);
        }
      } catch (e) {
        if (controller.signal.aborted && state.stream !== controller) return;  // replaced by a new filter
      }
      setConnected(false);
      await new Promise(r => setTimeout(r, 2000));
      if (state.stream !== controller) return;
    }
  }
  function setConnected(on) {
    state.connected = on;
    $("status").textContent = on ? CE.t("wall.connected") : CE.t("wall.disconnected");
    state.tiles.forEach(setHealth);
  }

  // --- alerts ---
  function beep() {
    if (!soundOn) return;
    try {
      audio = audio || new AudioContext();
      if (audio.state === "suspended") audio.resume();
      const now = audio.currentTime;
      for (const [i, freq] of [[0, 880], [1, 660], [2, 880]]) {
        const osc = audio.createOscillator(), gain = audio.createGain();
        osc.frequency.value = freq; osc.type = "square";
        gain.gain.setValueAtTime(0.08, now + i * 0.18); gain.gain.exponentialRampToValueAtTime(0.001, now + i * 0.18 + 0.16);
        osc.connect(gain).connect(audio.destination); osc.start(now + i * 0.18); osc.stop(now + i * 0.18 + 0.17);
      }
      state.beeps += 1;
    } catch (e) { /* no audio device */ }
  }
  function alertItem(ev, fresh) {
    const li = document.createElement("li");
    li.id = "alert-" + ev.id; li.dataset.id = ev.id; li.dataset.rule = ev.rule;
    if (fresh) { li.className = "new"; li.dataset.receivedAt = String(Date.now()); }
    li.innerHTML = `<img alt=""><div><div class="title">${CE.esc(CE.rule(ev.rule))}
      <span class="tag ${CE.esc(ev.review_state)}">${CE.esc(CE.state(ev.review_state))}</span></div>
      <div class="muted">${CE.esc(CE.compoundName(ev.compound_id))} · ${CE.esc(CE.cameraName(ev.camera_id))} · ${CE.esc(ev.zone_id)}</div>
      <div class="muted">${CE.esc(CE.fmt(ev.start_time))} · ${Math.round(ev.confidence * 100)}%</div>
      <a class="review-link" href="/review?id=${encodeURIComponent(ev.id)}">${CE.esc(CE.t("wall.review_link"))}</a></div>`;
    if (ev.evidence && ev.evidence.snapshot) {
      CE.json(`/api/v1/events/${encodeURIComponent(ev.id)}/evidence/snapshot/link`)
        .then(link => { li.querySelector("img").src = link.url; }).catch(() => {});
    }
    return li;
  }
  function showAlert(ev) {
    const { compound, rule } = filters();
    if ((compound && ev.compound_id !== compound) || (rule && ev.rule !== rule)) return;
    if (document.getElementById("alert-" + ev.id)) return;
    $("alerts").prepend(alertItem(ev, true));
    $("noalerts").hidden = true;
    state.alerts += 1;
    state.total = (state.total || 0) + 1; showCount();
    const banner = $("banner");
    banner.textContent = CE.t("wall.new_alert", { rule: CE.rule(ev.rule), camera: CE.cameraName(ev.camera_id) });
    banner.classList.remove("show"); void banner.offsetWidth; banner.classList.add("show");
    const tile = state.tiles.get(ev.camera_id);
    if (tile) { tile.el.classList.remove("alarm"); void tile.el.offsetWidth; tile.el.classList.add("alarm"); }
    beep();
  }
  // the API counts at most 1000 (more when paging deeper): past that the figure is a lower bound
  function showCount() { $("count").textContent = `(${state.total}${state.totalCapped ? "+" : ""})`; }
  async function loadAlerts() {
    const { compound, rule } = filters();
    const query = new URLSearchParams({ limit: "30" });
    if (compound) query.set("compound_id", compound); if (rule) query.set("rule", rule);
    const page = await CE.json("/api/v1/events?" + query);
    $("alerts").innerHTML = "";
    for (const ev of page.items) $("alerts").appendChild(alertItem(ev, false));
    state.total = page.total; state.totalCapped = page.total_capped; showCount();
    $("noalerts").hidden = page.items.length > 0;
    if (state.feed) state.feed.close();
    const feedQuery = new URLSearchParams(); if (compound) feedQuery.set("compound_id", compound); if (rule) feedQuery.set("rule", rule);
    state.feed = CE.sse("/api/v1/feed/alerts?" + feedQuery, (type, data) => { if (type === "violation") showAlert(data); },
                        s => { state.feedState = s; });
  }

  function setSoundLabel() { $("sound").textContent = CE.t(soundOn ? "wall.sound_on" : "wall.sound_off"); }
  function restart() {
    const { compound, rule } = filters();
    const query = new URLSearchParams(); if (compound) query.set("compound", compound); if (rule) query.set("rule", rule);
    history.replaceState(null, "", "/" + (query.toString() ? "?" + query : ""));
    for (const tile of state.tiles.values()) tile.el.remove();
    state.tiles.clear();
    if (state.stream) state.stream.abort();
    runStream();
    loadAlerts().catch(e => CE.toast(CE.t("common.error", { detail: e.message }), "error"));
  }

  CE.init("/").then(() => {
    CE.fillCompoundSelect($("compound")); CE.fillRuleSelect($("rule"));
    $("compound").value = params.get("compound") || ""; $("rule").value = params.get("rule") || "";
    $("compound").onchange = restart; $("rule").onchange = restart;
    setSoundLabel();
    $("sound").onclick = () => {
      soundOn = !soundOn; localStorage.setItem("ce_sound", soundOn ? "on" : "off"); setSoundLabel();
      if (soundOn) { audio = audio || new AudioContext(); audio.resume(); }
    };
    // Browsers start audio only after a user gesture: the first click anywhere unlocks the alarm sound.
    document.addEventListener("click", () => { if (soundOn) { audio = audio || new AudioContext(); audio.resume(); } }, { once: true });
    setInterval(() => state.tiles.forEach(setHealth), 1000);
    restart();
    pollHealth();
  });
})();
