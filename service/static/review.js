// The review page: a keyboard-first queue. J/K move, C confirms, R then 1–4 (or 1–4 at once) rejects
// with a reason, Space plays the clip, Z zooms the snapshot. The clip's boxes come from the JSON sidecar
// and are drawn on a canvas over the <video>; each shown violation is claimed so two reviewers do not
// decide the same one (a 409 says who was first).
(function () {
  "use strict";
  const $ = id => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const state = { queue: [], index: 0, current: null, sidecar: null, busy: false, decided: 0, reasonsOpen: false, shown: 0 };
  window.CE_REVIEW = state;
  const zoom = { scale: 1, x: 0, y: 0 };

  function filters() { return { compound: $("compound").value, rule: $("rule").value }; }
  const enc = encodeURIComponent;

  // --- queue ---
  async function loadQueue(focusId) {
    const { compound, rule } = filters();
    const query = new URLSearchParams({ limit: "200" });
    if (compound) query.set("compound_id", compound); if (rule) query.set("rule", rule);
    const page = await CE.json("/api/v1/review-queue?" + query);
    state.queue = page.items;
    state.total = page.total;
    if (focusId && !state.queue.some(v => v.id === focusId)) {
      try { state.queue.unshift(await CE.json(`/api/v1/events/${enc(focusId)}`)); } catch (e) { CE.toast(CE.t("common.error", { detail: e.message }), "error"); }
    }
    const at = focusId ? state.queue.findIndex(v => v.id === focusId) : 0;
    renderQueue();
    await show(Math.max(0, at));
  }
  function renderQueue() {
    const pending = state.queue.filter(v => v.review_state === "unreviewed").length;
    $("qcount").textContent = CE.t("review.queue", { n: pending });
    $("queue").innerHTML = state.queue.map((v, i) => `<li data-index="${i}" data-id="${CE.esc(v.id)}" class="${i === state.index ? "current" : ""} ${v._claimed ? "claimed" : ""}">
      <div><b>${CE.esc(CE.rule(v.rule))}</b> <span class="tag ${CE.esc(v.review_state)}">${CE.esc(CE.state(v.review_state))}</span></div>
      <div class="muted">${CE.esc(CE.cameraName(v.camera_id))} · ${CE.esc(CE.fmt(v.start_time))}</div></li>`).join("");
    $("queue").querySelectorAll("li").forEach(li => { li.onclick = () => show(Number(li.dataset.index)); });
    const cur = $("queue").querySelector("li.current"); if (cur) cur.scrollIntoView({ block: "nearest" });
  }

  // --- one violation ---
  async function show(index) {
    closeReasons();
    if (!state.queue.length) {
      state.current = null; $("item").hidden = true; $("empty").hidden = false; $("actions").hidden = true;
      $("details").innerHTML = ""; $("casebox").textContent = ""; $("viewer").dataset.id = "";
      return;
    }
    state.index = Math.min(Math.max(0, index), state.queue.length - 1);
    const item = state.queue[state.index];
    $("item").hidden = false; $("empty").hidden = true; $("actions").hidden = false;
    renderQueue();
    let violation = item;
    if (item.review_state === "unreviewed") {
      try { violation = await CE.post(`/api/v1/events/${enc(item.id)}/claim`); item._claimed = false; }
      catch (e) {
        if (e.status !== 409) CE.toast(CE.t("common.error", { detail: e.message }), "error");
        violation = await CE.json(`/api/v1/events/${enc(item.id)}`);
        if (e.status === 409 && violation.review_state === "unreviewed") {
          item._claimed = true;
          $("decided").textContent = CE.t("review.claimed_by_other") + (violation.claimed_until ? " · " + CE.fmt(violation.claimed_until) : "");
        }
      }
    } else {
      violation = await CE.json(`/api/v1/events/${enc(item.id)}`);
    }
    if (state.queue[state.index] !== item) return;     // moved on while loading
    state.current = violation;
    Object.assign(item, violation);
    $("viewer").dataset.id = violation.id;
    $("title").textContent = `${CE.rule(violation.rule)} · ${CE.cameraName(violation.camera_id)} · ${CE.fmt(violation.start_time)}`;
    renderDetails(violation);
    const open = violation.review_state === "unreviewed" && !item._claimed;
    $("bconfirm").disabled = !open; $("breject").disabled = !open;
    if (!item._claimed) $("decided").textContent = violation.review ? `${CE.t("review.decided")}: ${CE.state(violation.review_state)}` : "";
    state.shown += 1;
    loadEvidence(violation);
    loadCase(violation);
    renderQueue();
  }
  function renderDetails(v) {
    const rows = [["common.compound", CE.compoundName(v.compound_id)], ["common.camera", CE.cameraName(v.camera_id)],
      ["common.zone", v.zone_id], ["review.start", CE.fmt(v.start_time)], ["review.last_seen", CE.fmt(v.last_seen_time)],
      ["common.confidence", Math.round(v.confidence * 100) + "%"], ["review.model", v.model_version], ["common.state", CE.state(v.review_state)]];
    if (v.review) {
      rows.push(["review.verdict", v.review.verdict === "confirm" ? CE.t("review.confirm") : CE.t("review.reject")]);
      if (v.review.reason) rows.push(["review.reason", CE.reason(v.review.reason)]);
      rows.push(["common.time", CE.fmt(v.review.decided_at)]);
    }
    rows.push(["ID", v.id]);
    $("details").innerHTML = rows.map(([k, val]) => `<dt>${CE.esc(k === "ID" ? k : CE.t(k))}</dt><dd>${CE.esc(val)}</dd>`).join("");
  }
  async function loadEvidence(v) {
    const video = $("clip"), snap = $("snap");
    state.sidecar = null; drawBoxes();
    resetZoom();
    const id = enc(v.id);
    const [clip, snapshot] = await Promise.all([
      v.evidence.clip ? CE.json(`/api/v1/events/${id}/evidence/clip/link`).catch(() => null) : null,
      v.evidence.snapshot ? CE.json(`/api/v1/events/${id}/evidence/snapshot/link`).catch(() => null) : null]);
    if (state.current !== v) return;
    video.src = clip ? clip.url : ""; snap.src = snapshot ? snapshot.url : "";
    if (v.evidence.sidecar) {
      try {
        const sidecar = await (await CE.api(`/api/v1/events/${id}/evidence/sidecar`)).json();
        if (state.current === v) { state.sidecar = sidecar; drawBoxes(); }
      } catch (e) { /* no boxes to draw */ }
    }
  }
  async function loadCase(v) {
    const box = $("casebox");
    let html = "";
    if (v.case_id) {
      try {
        const c = await CE.json(`/api/v1/cases/${v.case_id}`);
        html += `<div><a href="/cases?id=${c.id}">#${c.id}</a> <span class="tag ${c.overdue ? "overdue" : c.state}">${CE.esc(CE.caseState(c.overdue ? "overdue" : c.state))}</span></div>
          <div>${CE.esc(CE.t("cases.deadline"))}: ${CE.esc(c.deadline ? CE.fmt(c.deadline) : CE.t("cases.no_deadline"))} · ${CE.esc(CE.t("cases.assignee"))}: ${CE.esc(c.assignee || "—")}</div>
          <div>${CE.esc(CE.t("cases.violations"))}: ${c.violation_ids.length} · ${CE.esc(CE.t("cases.inspections"))}: ${c.inspections.length}</div>`;
      } catch (e) { html += CE.esc(e.message); }
    } else {
      html += `<div>${CE.esc(CE.t("review.no_case"))}</div>`;
    }
    try {
      const query = new URLSearchParams({ compound_id: v.compound_id, camera_id: v.camera_id, rule: v.rule, limit: "5" });
      const spot = (await CE.json("/api/v1/cases?" + query)).items.filter(c => c.id !== v.case_id && c.zone_id === v.zone_id);
      if (spot.length) {
        html += `<div style="margin-top:6px">${CE.esc(CE.t("review.spot_history"))}:</div><ul>` + spot.map(c =>
          `<li><a href="/cases?id=${c.id}">#${c.id}</a> ${CE.esc(CE.fmt(c.created_at))} <span class="tag ${c.state}">${CE.esc(CE.caseState(c.state))}</span></li>`).join("") + "</ul>";
      }
    } catch (e) { /* a viewer without case access sees none */ }
    if (state.current === v) box.innerHTML = html;
  }

  // --- boxes from the sidecar, over the playing clip ---
  function frameAt(t) {
    const sc = state.sidecar; if (!sc || !sc.frames || !sc.frames.length) return null;
    const base = sc.clip_start_s ?? sc.frames[0].time_s;
    let best = null;
    for (const f of sc.frames) {
      const off = f.clip_offset_s ?? (f.time_s - base);
      if (off <= t + 0.05) best = { f, off }; else break;
    }
    return best && t - best.off <= 1.0 ? best.f : null;
  }
  function drawBoxes() {
    const video = $("clip"), canvas = $("overlay");
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const ctx = canvas.getContext("2d"); ctx.clearRect(0, 0, w, h);
    const frame = frameAt(video.currentTime || 0);
    canvas.dataset.boxes = frame ? String(frame.boxes.length) : "0";
    if (!frame || !video.videoWidth) return;
    const sc = state.sidecar, fw = sc.frame_width || video.videoWidth, fh = sc.frame_height || video.videoHeight;
    const scale = Math.min(w / video.videoWidth, h / video.videoHeight);     // object-fit: contain
    const dx = (w - video.videoWidth * scale) / 2, dy = (h - video.videoHeight * scale) / 2;
    const sx = scale * video.videoWidth / fw, sy = scale * video.videoHeight / fh;
    ctx.lineWidth = 2; ctx.font = "12px system-ui, sans-serif";
    for (const b of frame.boxes) {
      const [x1, y1, x2, y2] = b.xyxy;
      ctx.strokeStyle = "#ff3b3b"; ctx.strokeRect(dx + x1 * sx, dy + y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
      const label = `#${b.track_id} ${b.class_name} ${Math.round(b.confidence * 100)}%`;
      ctx.fillStyle = "rgba(0,0,0,.65)"; ctx.fillRect(dx + x1 * sx, dy + y1 * sy - 16, ctx.measureText(label).width + 8, 16);
      ctx.fillStyle = "#fff"; ctx.fillText(label, dx + x1 * sx + 4, dy + y1 * sy - 4);
    }
  }
  function animate() { drawBoxes(); if (!$("clip").paused) requestAnimationFrame(animate); }

  // --- snapshot zoom and pan ---
  function applyZoom() { $("snap").style.transform = `translate(${zoom.x}px, ${zoom.y}px) scale(${zoom.scale})`; $("zoombox").dataset.scale = zoom.scale.toFixed(2); }
  function resetZoom() { zoom.scale = 1; zoom.x = 0; zoom.y = 0; applyZoom(); }
  function zoomBy(factor, cx, cy) {
    const box = $("zoombox").getBoundingClientRect();
    cx = cx ?? box.width / 2; cy = cy ?? box.height / 2;
    const next = Math.min(8, Math.max(1, zoom.scale * factor));
    zoom.x = cx - (cx - zoom.x) * (next / zoom.scale); zoom.y = cy - (cy - zoom.y) * (next / zoom.scale);
    zoom.scale = next; if (next === 1) { zoom.x = 0; zoom.y = 0; }
    applyZoom();
  }

  // --- decisions ---
  async function decide(verdict, reason) {
    const v = state.current, item = state.queue[state.index];
    if (state.busy || !v || v.review_state !== "unreviewed" || item._claimed) return;
    state.busy = true; closeReasons();
    try {
      await CE.post(`/api/v1/events/${enc(v.id)}/review`, verdict === "confirm" ? { verdict } : { verdict, reason });
      state.decided += 1;
      CE.toast(CE.t(verdict === "confirm" ? "review.confirmed" : "review.rejected", { id: v.id.slice(0, 8) }), "ok");
      state.queue.splice(state.index, 1);
    } catch (e) {
      CE.toast(e.status === 409 ? CE.t("review.conflict", { detail: e.message }) : CE.t("common.error", { detail: e.message }), "error");
      if (e.status === 409) state.queue.splice(state.index, 1);
    } finally {
      state.busy = false;
    }
    if (!state.queue.length) { await loadQueue(); return; }
    await show(state.index);
  }
  function openReasons() { state.reasonsOpen = true; $("reasons").classList.add("show"); }
  function closeReasons() { state.reasonsOpen = false; $("reasons").classList.remove("show"); }

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") return;
    const key = ev.key;
    const actions = {
      j: () => show(state.index + 1), ArrowDown: () => show(state.index + 1), n: () => show(state.index + 1),
      k: () => show(state.index - 1), ArrowUp: () => show(state.index - 1), p: () => show(state.index - 1),
      c: () => decide("confirm"), Enter: () => decide("confirm"),
      r: () => (state.reasonsOpen ? closeReasons() : openReasons()),
      Escape: () => { closeReasons(); $("zoombox").classList.remove("big"); resetZoom(); },
      " ": () => { const v = $("clip"); if (v.paused) v.play().catch(() => {}); else v.pause(); },
      z: () => $("zoombox").classList.toggle("big"),
      "+": () => zoomBy(1.5), "=": () => zoomBy(1.5), "-": () => zoomBy(1 / 1.5),
    };
    const n = "1234".indexOf(key);
    if (n >= 0) { ev.preventDefault(); decide("reject", CE.REASONS[n]); return; }
    const action = actions[key] || (key.length === 1 ? actions[key.toLowerCase()] : undefined);
    if (action) { ev.preventDefault(); action(); }
  }

  CE.init("/review").then(async () => {
    CE.fillCompoundSelect($("compound")); CE.fillRuleSelect($("rule"));
    $("compound").onchange = () => loadQueue(); $("rule").onchange = () => loadQueue();
    $("reasons").insertAdjacentHTML("beforeend", CE.REASONS.map((r, i) =>
      `<button class="reject" data-reason="${r}"><kbd>${i + 1}</kbd> ${CE.esc(CE.reason(r))}</button>`).join(""));
    $("reasons").querySelectorAll("button").forEach(b => { b.onclick = () => decide("reject", b.dataset.reason); });
    $("bconfirm").onclick = () => decide("confirm");
    $("breject").onclick = () => (state.reasonsOpen ? closeReasons() : openReasons());
    $("bnext").onclick = () => show(state.index + 1); $("bprev").onclick = () => show(state.index - 1);
    const video = $("clip");
    video.addEventListener("play", () => requestAnimationFrame(animate));
    for (const name of ["seeked", "loadeddata", "pause", "timeupdate"]) video.addEventListener(name, drawBoxes);
    window.addEventListener("resize", drawBoxes);
    const box = $("zoombox"); let drag = null;
    box.addEventListener("wheel", ev => { ev.preventDefault(); const r = box.getBoundingClientRect(); zoomBy(ev.deltaY < 0 ? 1.25 : 0.8, ev.clientX - r.left, ev.clientY - r.top); }, { passive: false });
    box.addEventListener("mousedown", ev => { drag = { x: ev.clientX - zoom.x, y: ev.clientY - zoom.y }; });
    window.addEventListener("mousemove", ev => { if (drag && zoom.scale > 1) { zoom.x = ev.clientX - drag.x; zoom.y = ev.clientY - drag.y; applyZoom(); } });
    window.addEventListener("mouseup", () => { drag = null; });
    box.addEventListener("dblclick", () => box.classList.toggle("big"));
    document.addEventListener("keydown", onKey);
    await loadQueue(params.get("id"));
  });
})();
