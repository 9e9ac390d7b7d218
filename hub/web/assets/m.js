// Grid-member phone page: my open cases (live), one-tap acknowledge, resolve with note and
// photo, patrol reports.

import { api, ApiError, loginHandler, logout, me, caseAction, liveFeed, asksMe, caseTime, deadlineState, overdueAtTop, h, fileToJpegBase64, normCase } from "./api.js";
import { t, tv, ruleLabel, applyI18n, toggleLang, fmtAgo, fmtDur } from "./i18n.js";

const $ = (sel) => document.querySelector(sel);
const state = { user: null, cases: new Map(), es: null, open: new Set() };

async function boot() {
  applyI18n(document);
  $("[data-testid=lang-toggle]").addEventListener("click", () => {
    toggleLang();
    render();
  });
  $("#login-form").addEventListener("submit", onLogin);
  $("#logout").addEventListener("click", onLogout);
  for (const b of document.querySelectorAll(".tabs [data-tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("#report-form").addEventListener("submit", onReport);
  $("#locate").addEventListener("click", locate);
  setInterval(tickDeadlines, 1000);
  const user = await me().catch(() => null);
  if (user) start(user);
  else showLogin();
}

function showLogin() {
  $("#login").hidden = false;
  $("#app").hidden = true;
  $("#logout").hidden = true;
}

const onLogin = loginHandler((user) => start(user), (key) => t(key));

async function onLogout() {
  if (state.es) state.es.close();
  await logout().catch(() => {});
  state.user = null;
  state.cases.clear();
  $("#mine").replaceChildren();
  showLogin();
}

async function start(user) {
  state.user = user;
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  $("[data-testid=user-name]").textContent = `${user.name} · ${(user.cells || []).map((c) => c.name).join("、")}`;
  if (state.es) state.es.close();
  state.es = liveFeed({
    onCase: (ev) => {
      if (!ev || !ev.case) return;
      const fresh = !state.cases.has(ev.case.id) && asksMe(ev.case, state.user);
      upsert(ev.case);
      if (fresh) announce(ev.case.id);
    },
    onReset: () => load(true),
  });
  await load(false);
}

async function load(reset) {
  try {
    const r = await api("GET", "/api/v1/cases?state=open&limit=200");
    if (reset) state.cases.clear();
    for (const c of r.cases) {
      normCase(c);
      const old = state.cases.get(c.id);
      if (!old || (c.updated_at ?? 0) >= (old.updated_at ?? 0)) state.cases.set(c.id, c);
    }
    render();
  } catch (ex) {
    console.warn(ex);
  }
}

function upsert(c) {
  normCase(c);
  const old = state.cases.get(c.id);
  if (old && (c.updated_at ?? 0) < (old.updated_at ?? 0)) return;
  state.cases.set(c.id, c);
  render();
}

function announce(id) {
  const b = $("#banner");
  b.hidden = false;
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => (b.hidden = true), 5000);
  if (navigator.vibrate) {
    try {
      navigator.vibrate([200, 100, 200]);
    } catch {
      /* not allowed without a user gesture: the highlight still shows */
    }
  }
  const card = document.querySelector(`#mine [data-case-id="${CSS.escape(id)}"]`);
  if (card) {
    card.classList.add("flash");
    setTimeout(() => card.classList.remove("flash"), 4000);
  }
}

function showTab(name) {
  for (const b of document.querySelectorAll(".tabs [data-tab]")) b.classList.toggle("on", b.dataset.tab === name);
  for (const p of document.querySelectorAll(".pane")) p.hidden = p.dataset.pane !== name;
}

function deadlineText(c, now = Date.now()) {
  if (!c.deadline) return overdueAtTop(c) ? t("dl.top") : "";
  const left = c.deadline.at - now;
  return `${tv("dl.", c.deadline.kind)} ${left >= 0 ? t("left") : t("over")} ${fmtDur(Math.abs(left))}`;
}

function tickDeadlines() {
  for (const el of document.querySelectorAll("#mine time.ago")) el.textContent = fmtAgo(Number(el.dataset.at));
  for (const el of document.querySelectorAll("#mine [data-testid=card-deadline]")) {
    const c = state.cases.get(el.closest("[data-case-id]").dataset.caseId);
    if (c) {
      el.textContent = deadlineText(c);
      el.className = `dl dl-${deadlineState(c)}`;
    }
  }
}

function render() {
  const list = [...state.cases.values()].filter((c) => asksMe(c, state.user)).sort((a, b) => caseTime(b) - caseTime(a));
  const ol = $("#mine");
  const keep = new Map([...ol.children].map((li) => [li.dataset.caseId, li]));
  const cards = list.map((c) => {
    const old = keep.get(c.id);
    // Keep a card whose inputs the member is typing in; otherwise rebuild it.
    if (old && old.dataset.sig === sig(c) && old.dataset.lang === document.documentElement.lang) return old;
    const card = renderCard(c);
    if (old && old.classList.contains("flash")) card.classList.add("flash");
    return card;
  });
  ol.replaceChildren(...cards);
  $("#mine-empty").hidden = cards.length > 0;
  $("[data-testid=mine-count]").textContent = String(cards.length);
}

const sig = (c) => `${c.state}|${c.level}|${c.updated_at}|${c.count}|${c.department?.code ?? ""}|${c.supervised ? (c.supervised.overdue ? 2 : 1) : 0}`;

function renderCard(c) {
  const cell = c.cell || {};
  const err = h("p", { class: "error", "data-testid": "card-error", hidden: true });
  const note = h("textarea", { rows: 2, "data-testid": "resolve-note", placeholder: t("m.resolveNote") });
  const photo = h("input", { type: "file", accept: "image/*", capture: "environment", "data-testid": "resolve-photo" });

  const act = async (action, btn, extra = {}) => {
    err.hidden = true;
    btn.disabled = true;
    try {
      const body = { action, ...extra };
      if (action === "resolve") {
        if (note.value.trim()) body.note = note.value.trim();
        if (photo.files && photo.files[0]) body.photo = await fileToJpegBase64(photo.files[0]);
      }
      const d = await caseAction(c.id, body);
      if (d && d.case) upsert(d.case);
    } catch (ex) {
      err.textContent = ex instanceof ApiError ? ex.message : String(ex);
      err.hidden = false;
      btn.disabled = false;
    }
  };
  const button = (action, cls) => {
    const b = h("button", { type: "button", class: cls, "data-testid": `m-${action}` }, t(`act.${action}`));
    b.addEventListener("click", () => act(action, b));
    return b;
  };

  const buttons = [];
  if (c.state === "new" || c.state === "dispatched") buttons.push(button("acknowledge", "primary big"));
  if (c.state === "acknowledged") buttons.push(button("start_handling", "big"));
  const canResolve = c.state === "acknowledged" || c.state === "handling";
  // 提级: beyond what the member can handle, taken up a level now, with the reason (the hub
  // requires one).
  const reason = h("input", { type: "text", "data-testid": "escalate-reason", placeholder: t("m.escalateReason") });
  const up = h("button", { type: "button", "data-testid": "m-escalate" }, t("act.escalate"));
  up.addEventListener("click", () => act("escalate", up, reason.value.trim() ? { note: reason.value.trim() } : {}));
  const escalateBox = ["new", "dispatched", "acknowledged", "handling"].includes(c.state)
    ? h("details", { class: "escalate", "data-testid": "m-escalate-box" }, h("summary", {}, t("m.escalate")), reason, up)
    : null;

  const card = h("li", {
    class: `mcard sev-${c.severity} st-${c.state}`,
    "data-testid": "m-case",
    dataset: { caseId: c.id, state: c.state, level: c.level ?? "", sig: sig(c), lang: document.documentElement.lang },
  },
    h("div", { class: "l1" },
      h("span", { class: `badge sev-${c.severity}` }, tv("sev.", c.severity)),
      h("b", {}, tv("kind.", c.kind)),
      // 督办: the handler sees that a level above is watching this case.
      c.supervised
        ? h("span", { class: `badge ${c.supervised.overdue ? "sev-critical" : "sev-major"}`, "data-testid": "m-supervised" },
          t(c.supervised.overdue ? "detail.supervisedOverdue" : "detail.supervised"))
        : null,
      h("span", { class: "grow" }),
      h("span", { class: `state st-${c.state}`, "data-testid": "card-state" }, tv("state.", c.state))),
    h("div", { class: "l2" },
      `${cell.name ?? ""} · ${tv("level.", c.level)} · `,
      c.department ? h("span", { "data-testid": "m-department" }, `${c.department.name} · `) : null,
      h("time", { class: "ago", "data-testid": "case-time", "data-at": caseTime(c) }, fmtAgo(caseTime(c))),
      c.rule ? ` · ${ruleLabel(c)}` : ""),
    h("div", { class: `dl dl-${deadlineState(c)}`, "data-testid": "card-deadline" }, deadlineText(c)),
    c.kind !== "patrol" && c.has_snapshot !== false ? h("button", { type: "button", class: "link small", onclick: (e) => showSnapshot(c.id, e.target) }, t("detail.snapshot")) : null,
    h("div", { class: "mbtns" }, buttons),
    escalateBox,
    canResolve
      ? h("div", { class: "resolve" }, note, h("label", { class: "file small" }, t("m.photo"), " ", photo), button("resolve", "primary big"))
      : null,
    err,
  );
  return card;
}

async function showSnapshot(id, btn) {
  try {
    const d = await api("GET", `/api/v1/cases/${encodeURIComponent(id)}`);
    if (d.snapshot) btn.replaceWith(h("img", { class: "thumb", src: d.snapshot.url, alt: t("detail.snapshot"), "data-testid": "m-snapshot" }));
  } catch (ex) {
    btn.textContent = ex.message;
  }
}

function locate() {
  const msg = $("#locate-msg");
  const f = $("#report-form");
  if (!navigator.geolocation) {
    msg.textContent = t("m.locateFailed");
    return;
  }
  msg.textContent = t("m.locating");
  navigator.geolocation.getCurrentPosition(
    (pos) => {
      f.lon.value = pos.coords.longitude.toFixed(6);
      f.lat.value = pos.coords.latitude.toFixed(6);
      msg.textContent = `±${Math.round(pos.coords.accuracy)} m`;
    },
    () => (msg.textContent = t("m.locateFailed")),
    { enableHighAccuracy: true, timeout: 10000, maximumAge: 30000 },
  );
}

async function onReport(e) {
  e.preventDefault();
  const f = e.target;
  const err = $("[data-testid=report-error]");
  const ok = $("[data-testid=report-ok]");
  err.hidden = true;
  ok.hidden = true;
  const lon = Number(f.lon.value), lat = Number(f.lat.value);
  if (!isFinite(lon) || !isFinite(lat) || !f.lon.value || !f.lat.value) {
    err.textContent = t("m.locateFailed");
    err.hidden = false;
    return;
  }
  const btn = f.querySelector("[type=submit]");
  btn.disabled = true;
  try {
    const body = { kind: "patrol", category: f.category.value, note: f.note.value.trim(), location: { lon, lat } };
    if (f.photo.files && f.photo.files[0]) body.photo = await fileToJpegBase64(f.photo.files[0]);
    const r = await api("POST", "/api/v1/reports", body);
    ok.textContent = `${t("m.submitted")}: ${r.case?.id ?? ""}`;
    ok.hidden = false;
    f.note.value = "";
    f.photo.value = "";
    if (r.case) upsert(r.case);
  } catch (ex) {
    err.textContent = ex.message;
    err.hidden = false;
  } finally {
    btn.disabled = false;
  }
}

boot();
