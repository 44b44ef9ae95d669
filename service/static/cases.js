// Rectification cases (整改单): open ones first by deadline, overdue highlighted; a case's violations,
// re-inspections with before/after photos, and the moves the caller's role allows.
(function () {
  "use strict";
  const $ = id => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  let cases = [], selected = Number(params.get("id")) || null;
  const MANAGE = ["supervisor", "admin"], RECTIFY = ["reviewer", "supervisor", "admin"];

  function roleIn(compoundId) {
    const c = CE.compounds.find(x => x.id === compoundId);
    return c ? c.role : (CE.me.roles["*"] || null);
  }
  async function load() {
    const query = new URLSearchParams({ limit: "200" });
    if ($("compound").value) query.set("compound_id", $("compound").value);
    if ($("rule").value) query.set("rule", $("rule").value);
    if ($("unassigned").checked) query.set("assigned", "false");
    const page = await CE.json("/api/v1/cases?" + query);
    cases = page.items.filter(c => !$("onlyopen").checked || c.state !== "closed");
    const far = Number.MAX_SAFE_INTEGER;
    cases.sort((a, b) => (a.deadline ? Date.parse(a.deadline) : far) - (b.deadline ? Date.parse(b.deadline) : far)
                         || Date.parse(a.created_at) - Date.parse(b.created_at));
    render();
  }
  // who answers for the case: the assignee, tagged when the grid chose them; unassigned in red
  function assigneeCell(c) {
    if (!c.assignee) return `<span class="tag unassigned" title="${CE.esc(CE.t("cases.unassigned_long"))}">${CE.esc(CE.t("cases.unassigned"))}</span>`;
    const tag = c.assigned_by === "grid" ? `<span class="tag grid" title="${CE.esc(CE.t("cases.by_grid_long"))}">${CE.esc(CE.t("cases.by_grid"))}</span>` : "";
    return CE.esc(c.assignee) + tag;
  }
  function render() {
    $("nocases").hidden = cases.length > 0;
    $("cases").querySelector("tbody").innerHTML = cases.map(c => {
      const st = c.overdue ? "overdue" : c.state;
      return `<tr class="clickable ${c.overdue ? "overdue" : ""} ${c.id === selected ? "selected" : ""}" data-id="${c.id}">
        <td>${c.id}</td><td>${CE.esc(CE.compoundName(c.compound_id))}</td><td>${CE.esc(CE.cameraName(c.camera_id))}</td>
        <td>${CE.esc(c.zone_id)}</td><td>${CE.esc(CE.rule(c.rule))}</td>
        <td><span class="tag ${st}">${CE.esc(CE.caseState(st))}</span></td>
        <td class="deadline">${CE.esc(c.deadline ? CE.fmt(c.deadline) : CE.t("cases.no_deadline"))}${c.overdue ? ` <span class="tag overdue">${CE.esc(CE.t("cases.overdue_tag"))}</span>` : ""}</td>
        <td class="assignee">${assigneeCell(c)}</td><td>${CE.esc(CE.fmt(c.created_at))}</td><td class="num">${c.violation_ids.length}</td></tr>`;
    }).join("");
    $("cases").querySelectorAll("tbody tr").forEach(tr => { tr.onclick = () => { selected = Number(tr.dataset.id); render(); }; });
    detail();
  }
  async function blobImg(img, path) {
    try { const res = await CE.api(path); if (res.ok) img.src = URL.createObjectURL(await res.blob()); } catch (e) { /* missing photo */ }
  }
  function detail() {
    const box = $("detail"), c = cases.find(x => x.id === selected);
    if (!c) { box.innerHTML = ""; return; }
    const role = roleIn(c.compound_id);
    let html = `<h2>#${c.id} · ${CE.esc(CE.rule(c.rule))} · ${CE.esc(CE.cameraName(c.camera_id))}</h2>
      <div class="assignment">${c.assignee ? `${CE.esc(CE.t("cases.assignee"))}: ${CE.esc(c.assignee)} · ${CE.esc(CE.t(c.assigned_by === "grid" ? "cases.by_grid_long" : "cases.by_manual"))}${c.deadline ? ` · ${CE.esc(CE.t("cases.deadline"))} ${CE.esc(CE.fmt(c.deadline))}` : ""}`
        : `<span class="tag unassigned">${CE.esc(CE.t("cases.unassigned_long"))}</span>`}</div>
      <div class="muted">${CE.esc(c.rectification_note || "")}</div>
      <div>${c.violation_ids.map(id => `<a href="/review?id=${encodeURIComponent(id)}">${CE.esc(id.slice(0, 8))}</a>`).join(" · ")}</div>
      <div class="decide" id="moves"></div><h2>${CE.esc(CE.t("cases.inspections"))}</h2>`;
    html += c.inspections.map(i => `<div class="panel" style="margin-bottom:8px"><div>${CE.esc(CE.fmt(i.inspected_at))} ·
      ${CE.esc(CE.t(i.scene_clear ? "cases.scene_clear" : "cases.scene_not_clear"))}</div>
      <div style="display:flex;gap:8px"><figure>${i.before_url ? `<img data-src="${CE.esc(i.before_url)}" alt="before"><figcaption class="muted">${CE.esc(CE.t("cases.before"))}</figcaption>` : ""}</figure>
      <figure><img data-src="${CE.esc(i.after_url)}" alt="after"><figcaption class="muted">${CE.esc(CE.t("cases.after"))}</figcaption></figure></div></div>`).join("")
      || `<p class="muted">${CE.esc(CE.t("common.none"))}</p>`;
    box.innerHTML = html;
    box.querySelectorAll("img[data-src]").forEach(img => blobImg(img, img.dataset.src));
    const moves = box.querySelector("#moves");
    const add = (label, fn) => { const b = document.createElement("button"); b.textContent = label; b.onclick = async () => {
      try { await fn(); CE.toast("OK", "ok"); await load(); } catch (e) { CE.toast(CE.t("common.error", { detail: e.message }), "error"); } };
      moves.appendChild(b); };
    if (MANAGE.includes(role) && ["open", "reopened", "overdue"].includes(c.state)) {
      const who = document.createElement("input"); who.placeholder = CE.t("cases.assignee"); who.value = c.assignee || ""; who.id = "assignee";
      const days = document.createElement("input"); days.type = "number"; days.min = "1"; days.value = "3"; days.style.width = "5em"; days.title = CE.t("cases.assign_days");
      moves.append(who, days);
      add(CE.t("cases.assign"), () => CE.post(`/api/v1/cases/${c.id}/assign`, { assignee: who.value,
        deadline: new Date(Date.now() + Number(days.value) * 86400000).toISOString() }));
    }
    if (RECTIFY.includes(role) && ["open", "reopened", "overdue"].includes(c.state) && c.assignee) {
      add(CE.t("cases.rectify"), () => { const note = prompt(CE.t("cases.rectify_note")); if (!note) throw new Error("—"); return CE.post(`/api/v1/cases/${c.id}/rectify`, { note }); });
    }
    if (MANAGE.includes(role) && c.state === "reinspected") add(CE.t("cases.close"), () => CE.post(`/api/v1/cases/${c.id}/close`));
    if (MANAGE.includes(role) && ["rectified", "reinspected", "overdue", "closed"].includes(c.state)) add(CE.t("cases.reopen"), () => CE.post(`/api/v1/cases/${c.id}/reopen`));
  }
  CE.init("/cases").then(() => {
    CE.fillCompoundSelect($("compound")); CE.fillRuleSelect($("rule"));
    for (const id of ["compound", "rule", "onlyopen", "unassigned"]) $(id).onchange = () => load().catch(e => CE.toast(e.message, "error"));
    load().catch(e => CE.toast(CE.t("common.error", { detail: e.message }), "error"));
  });
})();
