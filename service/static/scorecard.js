// The scorecard of one compound for one period: score, breakdown per section and item, the trend chart
// (server-rendered SVG) and the ledger (台账) exports.
(function () {
  "use strict";
  const $ = id => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  let trendUrl = null;

  async function load() {
    const compound = $("compound").value, period = $("period").value || CE.thisMonth();
    if (!compound) { $("score").textContent = "—"; $("outof").textContent = CE.t("score.pick_compound"); return; }
    history.replaceState(null, "", `/scorecard?compound=${encodeURIComponent(compound)}&period=${period}`);
    const base = `/api/v1/compounds/${encodeURIComponent(compound)}`;
    const card = await CE.json(`${base}/scorecard?period=${period}`);
    $("score").textContent = String(card.score);
    $("outof").textContent = CE.t("score.out_of", { points: card.points });
    $("deducted").textContent = `${CE.t("score.deducted")} ${card.deducted}`;
    $("breakdown").dataset.score = String(card.score);
    let rows = "";
    for (const s of card.sections) {
      rows += `<tr class="section"><td>${CE.esc(s.name)}</td><td class="num"></td><td class="num"></td><td class="num">${s.deducted} / ${s.points}</td></tr>`;
      rows += s.items.map(i => `<tr data-rule="${CE.esc(i.rule)}"><td>${CE.esc(i.name)}</td><td class="num">${i.points_each}</td>
        <td class="num count">${i.count}</td><td class="num">${i.deducted}</td></tr>`).join("");
    }
    $("breakdown").querySelector("tbody").innerHTML = rows;
    const res = await CE.api(`${base}/trend.svg?months=6&until=${period}`);
    if (res.ok) { if (trendUrl) URL.revokeObjectURL(trendUrl); trendUrl = URL.createObjectURL(await res.blob()); $("trend").src = trendUrl; }
  }
  function exportLedger(fmt) {
    const compound = $("compound").value, period = $("period").value || CE.thisMonth();
    if (!compound) return;
    CE.download(`/api/v1/compounds/${encodeURIComponent(compound)}/ledger.${fmt}?period=${period}`, `ledger-${compound}-${period}.${fmt}`)
      .catch(e => CE.toast(CE.t("common.error", { detail: e.message }), "error"));
  }
  CE.init("/scorecard").then(() => {
    CE.fillCompoundSelect($("compound"), false);
    if (params.get("compound")) $("compound").value = params.get("compound");
    $("period").value = params.get("period") || CE.thisMonth();
    $("compound").onchange = $("period").onchange = () => load().catch(e => CE.toast(CE.t("common.error", { detail: e.message }), "error"));
    $("csv").onclick = () => exportLedger("csv"); $("xlsx").onclick = () => exportLedger("xlsx");
    load().catch(e => CE.toast(CE.t("common.error", { detail: e.message }), "error"));
  });
})();
