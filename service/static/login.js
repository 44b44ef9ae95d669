// The login page: a user name and password for a token (POST /api/v1/auth/token), then back to ?next=.
// A file of its own, not an inline script, so the pages' Content-Security-Policy can forbid inline scripts.
CE.applyI18n();
document.getElementById("lang").textContent = CE.t("nav.lang");
document.getElementById("lang").onclick = () => CE.setLang(CE.lang === "en" ? "zh-CN" : "en");
const next = new URLSearchParams(location.search).get("next");
const target = next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
if (CE.loggedIn()) location.replace(target);
document.getElementById("form").onsubmit = async (ev) => {
  ev.preventDefault();
  const error = document.getElementById("error"); error.textContent = "";
  const body = new URLSearchParams({ username: document.getElementById("username").value,
                                     password: document.getElementById("password").value });
  try {
    const res = await fetch("/api/v1/auth/token", { method: "POST", body });
    if (res.status === 401) { error.textContent = CE.t("login.failed"); return; }
    if (!res.ok) { error.textContent = CE.t("login.error", { detail: "HTTP " + res.status }); return; }
    const token = await res.json();
    sessionStorage.setItem("ce_token", token.access_token); sessionStorage.removeItem("ce_key");
    location.replace(target);
  } catch (e) { error.textContent = CE.t("login.error", { detail: e.message }); }
};
