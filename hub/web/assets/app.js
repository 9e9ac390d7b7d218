// Operator dashboard: login, live feed, per-level queues, map, case detail, sites, e-bike
// trajectories and watchlist, statistics.

import { api, ApiError, loginHandler, logout, me, caseAction, liveFeed, isOpen, caseTime, deadlineState, overdueAtTop, h, nodes, normCase, toMs } from "./api.js";
import { t, tv, ruleLabel, applyI18n, toggleLang, fmtTime, fmtAgo, fmtDur } from "./i18n.js";
import { GridMap } from "./map.js";

const LEVELS = ["county", "township", "village", "grid", "micro_grid"];
const $ = (sel) => document.querySelector(sel);

const state = {
  user: null,
  cases: new Map(), // id -> CaseSummary (open ones and any seen closing since)
  selected: null,
  detail: null,
  es: null,
  level: "all",
  filter: "",
  map: null,
  gridCells: [], // [{code, name, level}]
};

// ---------------------------------------------------------------------------------------------
// Login

async function boot() {
  applyI18n(document);
  $("[data-testid=lang-toggle]").addEventListener("click", () => {
    toggleLang();
    rerenderAll();
  });
  $("#login-form").addEventListener("submit", onLogin);
  $("#logout").addEventListener("click", onLogout);
  for (const b of document.querySelectorAll(".tabs [data-tab]"))
    b.addEventListener("click", () => showTab(b.dataset.tab));
  $("#queue-filter").addEventListener("input", (e) => {
    state.filter = e.target.value.trim().toLowerCase();
    renderQueues();
  });
  $("#tag-form").addEventListener("submit", onTrack);
  $("#watch-form").addEventListener("submit", onWatchAdd);
  $("#silence-form").addEventListener("submit", onSilenceAdd);
  $("#stats-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadStats();
  });
  $("#q-more").addEventListener("click", () => loadQuarantine(true));
  $("#map-fit").addEventListener("click", () => state.map && (state.map.clearTrack(), state.map.fit()));
  state.map = new GridMap($("#map"));
  state.map.onPinClick = (id) => openCase(id);
  setInterval(tick, 1000);

  const user = await me().catch(() => null);
  if (user) start(user);
  else showLogin();
}

function showLogin() {
  $("#login").hidden = false;
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("[data-testid=user-name]").textContent = "";
  $("[data-testid=live-state]").hidden = true;
  $("[data-testid=login-username]").focus();
}

const onLogin = loginHandler((user) => start(user), (key) => t(key));

async function onLogout() {
  if (state.es) state.es.close();
  state.es = null;
  await logout().catch(() => {});
  state.user = null;
  state.cases.clear();
  state.selected = null;
  $("#feed").replaceChildren();
  state.map.clearPins();
  closeDetail();
  showLogin();
}

async function start(user) {
  state.user = user;
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  $("[data-testid=user-name]").textContent = `${user.name} (${user.role})`;
  document.body.dataset.role = user.role;
  api("GET", "/api/v1/config/ui")
    .then((ui) => {
      if (ui && ui.title) document.title = ui.title;
      if (ui && ui.tile_url) state.map.setTiles(ui.tile_url);
    })
    .catch(() => {});
  try {
    const grid = await api("GET", "/api/v1/grid");
    state.map.setGrid(grid);
    state.gridCells = (grid.features || []).map((f) => ({
      code: f.properties.code ?? f.properties.id,
      name: f.properties.name,
      level: f.properties.level,
    }));
  } catch (ex) {
    console.warn("grid", ex);
  }
  // Departments for transfers and assists (分类交办, 协办).
  state.departments = [];
  api("GET", "/api/v1/departments")
    .then((r) => { state.departments = (r && r.departments) || []; })
    .catch((ex) => console.warn("departments", ex));
  // Live feed first, then the list, so nothing falls between the two; the newer copy of a
  // case wins when both have it.
  connectLive();
  await loadCases();
}

// ---------------------------------------------------------------------------------------------
// Cases: list, live feed, rows, pins, queues

function connectLive() {
  if (state.es) state.es.close();
  const live = $("[data-testid=live-state]");
  state.es = liveFeed({
    onCase: (ev) => {
      if (!ev || !ev.case) return;
      const fresh = !state.cases.has(ev.case.id);
      upsert(ev.case, fresh && (ev.kind === "opened" || ev.kind === "alert"));
      if (state.selected === ev.case.id) refreshDetailSoon();
    },
    onReset: () => loadCases(true),
    onState: (open) => {
      live.hidden = false;
      live.dataset.state = open ? "open" : "closed";
      live.textContent = open ? `● ${t("feed.live")}` : t("feed.offline");
    },
  });
}

async function loadCases(reset = false) {
  const r = await api("GET", "/api/v1/cases?state=open&limit=200").catch((ex) => {
    console.warn("cases", ex);
    return null;
  });
  if (!r) return;
  if (reset) {
    state.cases.clear();
    $("#feed").replaceChildren();
    state.map.clearPins();
  }
  for (const c of [...r.cases].reverse()) upsert(c, false);
}

function newer(a, b) {
  return (a.updated_at ?? 0) >= (b.updated_at ?? 0);
}

/** Adds or updates a case everywhere it shows (feed row, pin, queues, counts). */
function upsert(c, flash) {
  normCase(c);
  const old = state.cases.get(c.id);
  if (old && !newer(c, old)) return;
  state.cases.set(c.id, c);
  const row = renderRow(c, "feed-row");
  const feed = $("#feed");
  const existing = feed.querySelector(`[data-case-id="${CSS.escape(c.id)}"]`);
  if (existing) existing.replaceWith(row);
  else insertSorted(feed, row, c);
  if (flash) {
    row.classList.add("flash");
    setTimeout(() => row.classList.remove("flash"), 3000);
  }
  if (isOpen(c)) state.map.upsertPin(c, deadlineState(c), state.selected === c.id);
  else state.map.removePin(c.id);
  renderCounts();
  renderQueues();
}

function insertSorted(list, row, c) {
  for (const other of list.children) {
    const o = state.cases.get(other.dataset.caseId);
    if (o && (o.opened_at < c.opened_at || (o.opened_at === c.opened_at && o.id < c.id))) {
      list.insertBefore(row, other);
      return;
    }
  }
  list.append(row);
}

function deadlineText(c, now = Date.now()) {
  if (!c.deadline) return overdueAtTop(c) ? t("dl.top") : "";
  const left = c.deadline.at - now;
  const kind = tv("dl.", c.deadline.kind);
  return left >= 0 ? `${kind} ${t("left")} ${fmtDur(left)}` : `${kind} ${t("over")} ${fmtDur(-left)}`;
}

function renderRow(c, testid) {
  const ds = deadlineState(c);
  const cell = c.cell || (c.path && c.path[c.path.length - 1]) || {};
  return h(
    "li",
    {
      class: `row sev-${c.severity} st-${c.state}${state.selected === c.id ? " selected" : ""}`,
      "data-testid": testid,
      dataset: { caseId: c.id, state: c.state, level: c.level ?? "", deadlineState: ds, severity: c.severity },
      tabindex: 0,
      onclick: () => openCase(c.id),
      onkeydown: (e) => e.key === "Enter" && openCase(c.id),
    },
    h("div", { class: "l1" },
      h("span", { class: `badge sev-${c.severity}`, "data-testid": "row-severity" }, tv("sev.", c.severity)),
      h("b", { class: "kind" }, tv("kind.", c.kind)),
      h("span", { class: "rule" }, ruleLabel(c)),
      c.count > 1 ? h("span", { class: "n" }, `×${c.count}`) : null,
      h("span", { class: "grow" }),
      h("time", { class: "ago", "data-testid": "case-time", "data-at": caseTime(c) }, fmtAgo(caseTime(c))),
    ),
    h("div", { class: "l2" },
      h("span", { class: "cell" }, cell.name || cell.code || ""),
      h("span", { class: `lvl lvl-${c.level}`, "data-testid": "row-level", "data-level": c.level }, tv("level.", c.level)),
      h("span", { class: `state st-${c.state}`, "data-testid": "row-state", "data-state": c.state }, tv("state.", c.state)),
      c.department ? h("span", { class: "dept", "data-testid": "row-department" }, c.department.name) : null,
      supervisedBadge(c, "row-supervised"),
      h("span", { class: "grow" }),
      h("span", { class: `dl dl-${ds}`, "data-testid": "row-deadline" }, deadlineText(c)),
    ),
  );
}

// 督办: a badge while a supervision runs (red once its deadline passed), or nothing.
function supervisedBadge(c, testid) {
  if (!c.supervised) return null;
  const late = c.supervised.overdue;
  return h("span", { class: `badge ${late ? "sev-critical" : "sev-major"}`, "data-testid": testid },
    t(late ? "detail.supervisedOverdue" : "detail.supervised"));
}

function openCases() {
  return [...state.cases.values()].filter(isOpen).sort((a, b) => b.opened_at - a.opened_at);
}

function renderCounts() {
  const open = openCases();
  $("[data-testid=open-count]").textContent = String(open.length);
  $("#feed-empty").hidden = $("#feed").children.length > 0;
}

function renderQueues() {
  const open = openCases();
  const counts = Object.fromEntries(LEVELS.map((l) => [l, 0]));
  for (const c of open) if (c.level in counts) counts[c.level]++;
  const tabs = $("#level-tabs");
  tabs.replaceChildren(
    ...["all", ...LEVELS].map((l) =>
      h(
        "button",
        {
          type: "button",
          class: state.level === l ? "on" : "",
          "data-testid": "level-tab",
          "data-level": l,
          onclick: () => {
            state.level = l;
            renderQueues();
          },
        },
        l === "all" ? t("queues.all") : tv("level.", l),
        " ",
        h("b", { class: "count", "data-testid": "level-count" }, String(l === "all" ? open.length : counts[l])),
      ),
    ),
  );
  const f = state.filter;
  const rows = open
    .filter((c) => state.level === "all" || c.level === state.level)
    .filter(
      (c) =>
        !f ||
        [c.id, c.rule, ruleLabel(c), c.site, c.cell?.name, c.cell?.code, c.tag, tv("kind.", c.kind)]
          .filter(Boolean)
          .some((s) => String(s).toLowerCase().includes(f)),
    )
    .map((c) => renderRow(c, "queue-row"));
  $("#queue").replaceChildren(...rows);
}

/** Once a second: countdowns, "ago" times, deadlines that just passed. */
function tick() {
  if (!state.user) return;
  const now = Date.now();
  for (const row of document.querySelectorAll("[data-testid=feed-row], [data-testid=queue-row]")) {
    const c = state.cases.get(row.dataset.caseId);
    if (!c) continue;
    const ds = deadlineState(c, now);
    const dl = row.querySelector("[data-testid=row-deadline]");
    dl.textContent = deadlineText(c, now);
    if (row.dataset.deadlineState !== ds) {
      row.dataset.deadlineState = ds;
      dl.className = `dl dl-${ds}`;
      if (isOpen(c)) state.map.upsertPin(c, ds, state.selected === c.id);
    }
    const ago = row.querySelector("time.ago");
    if (ago) ago.textContent = fmtAgo(Number(ago.dataset.at), now);
  }
}

function rerenderAll() {
  for (const c of state.cases.values()) {
    const row = $(`#feed [data-case-id="${CSS.escape(c.id)}"]`);
    if (row) row.replaceWith(renderRow(c, "feed-row"));
  }
  renderQueues();
  renderCounts();
  if (state.detail) renderDetail(state.detail);
  const pane = document.querySelector(".tabs .on")?.dataset.tab;
  if (pane === "sites") loadSites();
  if (pane === "stats") loadStats();
  if (pane === "tags") loadWatchlist();
  if (pane === "quarantine") loadQuarantine();
  if (pane === "silences") loadSilences();
}

function showTab(name) {
  for (const b of document.querySelectorAll(".tabs [data-tab]")) b.classList.toggle("on", b.dataset.tab === name);
  for (const p of document.querySelectorAll(".pane")) p.hidden = p.dataset.pane !== name;
  if (name === "sites") loadSites();
  if (name === "stats") loadStats();
  if (name === "tags") loadWatchlist();
  if (name === "quarantine") loadQuarantine();
  if (name === "silences") loadSilences();
  if (name !== "tags") state.map.clearTrack();
}

// ---------------------------------------------------------------------------------------------
// Case detail

async function openCase(id) {
  const prev = state.selected;
  state.selected = id;
  for (const r of document.querySelectorAll(".row.selected")) r.classList.remove("selected");
  for (const r of document.querySelectorAll(`.row[data-case-id="${CSS.escape(id)}"]`)) r.classList.add("selected");
  for (const pid of [prev, id]) {
    const c = pid && state.cases.get(pid);
    if (c && isOpen(c)) state.map.upsertPin(c, deadlineState(c), pid === id);
  }
  const panel = $("#detail");
  panel.hidden = false;
  $("#app").classList.add("with-detail");
  if (prev !== id) {
    const c = state.cases.get(id);
    if (c) state.map.focus(state.map.caseLonLat(c));
  }
  if (prev !== id) panel.replaceChildren(h("p", { class: "muted" }, t("loading")));
  try {
    const d = await api("GET", `/api/v1/cases/${encodeURIComponent(id)}`);
    if (state.selected !== id) return;
    state.detail = d;
    if (d.case) upsert(d.case, false);
    renderDetail(d);
  } catch (ex) {
    panel.replaceChildren(closeButton(), h("p", { class: "error", "data-testid": "detail-error" }, ex.message));
  }
}

let refreshTimer = null;
function refreshDetailSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => state.selected && openCase(state.selected), 150);
}

function closeDetail() {
  const prev = state.selected;
  state.selected = null;
  state.detail = null;
  $("#detail").hidden = true;
  $("#detail").replaceChildren();
  $("#app").classList.remove("with-detail");
  for (const r of document.querySelectorAll(".row.selected")) r.classList.remove("selected");
  const c = prev && state.cases.get(prev);
  if (c && isOpen(c)) state.map.upsertPin(c, deadlineState(c), false);
}

function closeButton() {
  return h("button", { type: "button", class: "link close", "data-testid": "detail-close", onclick: closeDetail }, t("detail.close"));
}

/** Box of a detection in snapshot pixels as [x, y, w, h] (accepts bbox [x,y,w,h] or box_xyxy). */
function detBox(d) {
  if (Array.isArray(d.bbox) && d.bbox.length === 4) return d.bbox;
  if (Array.isArray(d.box_xyxy) && d.box_xyxy.length === 4) {
    const [x1, y1, x2, y2] = d.box_xyxy;
    return [x1, y1, x2 - x1, y2 - y1];
  }
  return null;
}

export function snapshotView(snap) {
  if (!snap) return h("p", { class: "muted", "data-testid": "no-snapshot" }, t("detail.noSnapshot"));
  const img = h("img", { src: snap.url, alt: t("detail.snapshot"), "data-testid": "snapshot", decoding: "async" });
  const svg = h("svg:svg", { class: "boxes", "data-testid": "snapshot-boxes", preserveAspectRatio: "none" });
  const draw = (w, hh) => {
    svg.setAttribute("viewBox", `0 0 ${w} ${hh}`);
    svg.replaceChildren();
    for (const d of snap.detections || []) {
      const b = detBox(d);
      if (!b) continue;
      const [x, y, bw, bh] = b;
      const label = `${d.label ?? ""} ${d.score != null ? Math.round(d.score * 100) + "%" : ""}`;
      const g = h("svg:g", { class: "det", "data-testid": "det-box", "data-label": d.label ?? "" },
        h("svg:rect", { x, y, width: bw, height: bh }),
        h("svg:text", { x: x + 2, y: Math.max(y - 4, 12) }, label),
      );
      svg.append(g);
    }
  };
  if (snap.width && snap.height) draw(snap.width, snap.height);
  img.addEventListener("load", () => {
    if (!snap.width || !snap.height) draw(img.naturalWidth, img.naturalHeight);
  });
  return h("div", { class: "snap" }, img, svg);
}

function fieldRows(c) {
  const src = c.source ? Object.entries(c.source).map(([k, v]) => `${k}: ${v}`).join(", ") : "";
  const rows = [
    ["f.id", c.id, "f-id"],
    ["f.state", tv("state.", c.state), "f-state"],
    ["f.severity", tv("sev.", c.severity)],
    ["f.kind", tv("kind.", c.kind)],
    ["f.rule", ruleLabel(c)],
    ["f.site", c.site],
    ["f.source", src],
    ["f.level", tv("level.", c.level), "f-level"],
    ["f.cell", c.cell ? `${c.cell.name} (${c.cell.code})` : ""],
    ["f.path", (c.path || []).map((p) => p.name).join(" / ")],
    ["f.opened", fmtTime(c.opened_at)],
    ["f.updated", fmtTime(c.updated_at)],
    ["f.deadline", c.deadline ? `${tv("dl.", c.deadline.kind)} ${fmtTime(c.deadline.at)} (${tv("dl.", deadlineState(c))})` : overdueAtTop(c) ? t("dl.top") : t("dl.none")],
    ["f.handler", c.handler],
    ["detail.alerts", c.count],
    ["f.label", c.label],
    ["f.tag", c.tag],
    ["f.location", c.location ? `${c.location.lon.toFixed(5)}, ${c.location.lat.toFixed(5)}` : ""],
  ];
  return h("dl", { class: "fields" },
    rows.filter(([, v]) => v != null && v !== "").map(([k, v, id]) => [h("dt", {}, t(k)), h("dd", id ? { "data-testid": id } : {}, String(v))]));
}

/** The flag of a case whose site claimed a position it is not trusted with (text only). */
function untrustedView(u) {
  if (!u) return null;
  const pos = `${Number(u.claimed.lon).toFixed(5)}, ${Number(u.claimed.lat).toFixed(5)}`;
  const dist = u.distance_m != null ? `${Math.round(u.distance_m)} m` : "?";
  const text = t("f.untrustedText")
    .replace("{pos}", pos)
    .replace("{dist}", dist)
    .replace("{limit}", String(Math.round(u.limit_m)))
    .replace("{reason}", u.reason ?? "");
  return h("div", { class: "flag", "data-testid": "position-untrusted" },
    h("b", {}, t("f.untrusted")), " ", text);
}

// The box's clock was off: the case was filed at receipt; its own time is shown beside.
function timeUntrustedView(u) {
  if (!u) return null;
  const text = t("f.timeUntrustedText")
    .replace("{claimed}", fmtTime(u.claimed))
    .replace("{received}", fmtTime(u.received))
    .replace("{reason}", u.reason ?? "");
  return h("div", { class: "flag", "data-testid": "time-untrusted" },
    h("b", {}, t("f.timeUntrusted")), " ", text);
}

/** Which actions make sense in a state, for a role (the hub has the last word). */
function actionsFor(c, role) {
  const member = role === "member";
  const by = {
    new: ["acknowledge", "return", "extend", "comment"],
    dispatched: ["acknowledge", "return", "extend", "comment"],
    acknowledged: ["start_handling", "resolve", "return", "extend", "comment"],
    handling: ["resolve", "return", "extend", "comment"],
    resolved: ["close", "reopen", "comment"],
    closed: ["reopen", "comment"],
  };
  const list = [...(by[c.state] || ["comment"])];
  if (c.archived) return [];
  if (["new", "dispatched", "acknowledged", "handling"].includes(c.state)) list.push("escalate");
  if (!member) {
    if (["new", "dispatched", "acknowledged", "handling"].includes(c.state)) list.push("transfer", "supervise");
    if (c.state !== "closed") list.push("assist");
    if ((c.state === "resolved" || c.state === "closed") && c.source && c.source.person) list.push("reply");
    if (c.state === "closed") list.push("archive");
  }
  return member ? list.filter((a) => !["close", "reopen", "extend"].includes(a)) : list;
}

function renderDetail(d) {
  const c = d.case;
  const panel = $("#detail");
  panel.dataset.caseId = c.id;
  panel.dataset.state = c.state;
  panel.dataset.level = c.level ?? "";

  const note = h("textarea", { rows: 2, "data-testid": "action-note", placeholder: t("detail.note") });
  const until = h("input", { type: "datetime-local", "data-testid": "action-until", title: t("detail.until") });
  const cellList = h("datalist", { id: "cell-codes" }, state.gridCells.map((x) => h("option", { value: x.code }, `${x.name} (${tv("level.", x.level)})`)));
  const retCell = h("input", { list: "cell-codes", "data-testid": "action-cell", placeholder: t("detail.returnCell") });
  const unit = h("select", { "data-testid": "action-unit", title: t("detail.unit") },
    h("option", { value: "" }, t("detail.unit")),
    (state.departments || []).map((x) => h("option", { value: x.code }, `${x.name}（${x.kind}）`)));
  const within = h("input", { type: "number", min: 1, max: 129600, value: 60, "data-testid": "action-within", title: t("detail.within") });
  const satisfaction = h("select", { "data-testid": "action-satisfaction" },
    ["satisfied", "basically_satisfied", "unsatisfied", "no_answer"].map((v) => h("option", { value: v }, tv("sat.", v))));
  const err = h("p", { class: "error", "data-testid": "action-error", hidden: true });
  const ok = h("p", { class: "ok", "data-testid": "action-ok", hidden: true });

  const run = async (action, btn) => {
    err.hidden = true;
    ok.hidden = true;
    const body = { action };
    if (note.value.trim()) body.note = note.value.trim();
    if (action === "extend") {
      const ms = until.value ? new Date(until.value).getTime() : NaN;
      if (isFinite(ms)) body.until = ms;
    }
    if (action === "return" && retCell.value.trim()) body.cell = retCell.value.trim();
    if ((action === "transfer" || action === "assist") && unit.value) body.unit = unit.value;
    if (action === "transfer" || action === "supervise") body.within_minutes = Number(within.value);
    if (action === "reply") body.satisfaction = satisfaction.value;
    btn.disabled = true;
    try {
      const nd = await caseAction(c.id, body);
      note.value = "";
      ok.textContent = `${t("act.done")}: ${t("act." + action)}`;
      ok.hidden = false;
      if (nd && nd.case) {
        normCase(nd.case);
        state.detail = nd;
        upsert(nd.case, false);
        renderDetail(nd);
        const p = $("[data-testid=action-ok]");
        if (p) {
          p.textContent = ok.textContent;
          p.hidden = false;
        }
      }
    } catch (ex) {
      err.textContent = ex instanceof ApiError ? `${ex.message}${ex.field ? ` (${ex.field})` : ""}` : String(ex);
      err.hidden = false;
    } finally {
      btn.disabled = false;
    }
  };

  const buttons = actionsFor(c, state.user?.role).map((a) => {
    const b = h("button", { type: "button", class: a === "acknowledge" || a === "resolve" ? "primary" : "", "data-testid": `act-${a}` }, t(`act.${a}`));
    b.addEventListener("click", () => run(a, b));
    return b;
  });

  const audit = (d.audit || []).map((r) =>
    h("li", { "data-testid": "audit", "data-action": r.action },
      h("time", {}, fmtTime(r.at)), " ",
      h("b", {}, tv("audit.", r.action)), " ",
      r.actor ? h("span", { class: "muted" }, r.actor.id) : null, " ",
      r.from_state !== r.to_state ? h("span", { class: "muted" }, `${tv("state.", r.from_state)} → ${tv("state.", r.to_state)}`) : null, " ",
      r.level ? h("span", { class: `lvl lvl-${r.level}` }, tv("level.", r.level)) : null,
      r.note ? h("div", { class: "note" }, r.note) : null,
      r.detail ? h("div", { class: "muted small" }, r.detail) : null,
    ));

  const deliveries = (d.deliveries || []).map((x) => {
    const target = x.target ? Object.values(x.target).join("") : "";
    return h("li", { "data-testid": "delivery", "data-outcome": x.outcome },
      h("span", { class: `out out-${x.outcome}` }, x.outcome), ` ${target} · ${x.channel} · #${x.step} · ${fmtTime(x.at)}`,
      x.error ? h("span", { class: "error small" }, ` ${x.error}`) : null);
  });

  // A patrol report's own photo (named after its alert) is the case's on-scene picture.
  const alertIds = new Set((d.alerts || []).map((a) => a.id));
  const reportPhoto = c.kind === "patrol" ? (d.photos || []).find((p) => alertIds.has(p.id)) : null;
  const photos = (d.photos || []).filter((p) => p !== reportPhoto).map((p) =>
    h("a", { href: p.url, target: "_blank", rel: "noopener" }, h("img", { src: p.url, alt: p.id, loading: "lazy", "data-testid": "photo" })));

  panel.replaceChildren(...nodes([
    h("div", { class: "dhead" },
      h("span", { class: `badge sev-${c.severity}` }, tv("sev.", c.severity)),
      h("b", { "data-testid": "detail-title" }, `${tv("kind.", c.kind)} · ${c.cell?.name ?? ""}`),
      h("span", { class: `state st-${c.state}`, "data-testid": "detail-state" }, tv("state.", c.state)),
      c.department ? h("span", { class: "badge dept", "data-testid": "detail-department" }, `${t("detail.department")}: ${c.department.name}`) : null,
      supervisedBadge(c, "detail-supervised"),
      c.archived ? h("span", { class: "badge", "data-testid": "detail-archived" }, t("detail.archived")) : null,
      h("span", { class: "grow" }),
      closeButton()),
    h("h3", {}, t("detail.snapshot")),
    snapshotView(d.snapshot ?? (reportPhoto ? { url: reportPhoto.url } : null)),
    h("h3", {}, t("detail.actions")),
    h("div", { class: "actions" }, buttons),
    h("div", { class: "act-inputs" }, note,
      c.state === "resolved" || c.state === "closed" ? null : h("label", { class: "small" }, t("detail.until"), " ", until),
      c.state === "resolved" || c.state === "closed" ? null : retCell, cellList,
      c.state === "closed" ? null : h("label", { class: "small" }, t("detail.unit"), " ", unit),
      c.state === "resolved" || c.state === "closed" ? null : h("label", { class: "small" }, t("detail.within"), " ", within),
      c.source && c.source.person && (c.state === "resolved" || c.state === "closed") ? h("label", { class: "small" }, t("detail.satisfaction"), " ", satisfaction) : null),
    err, ok,
    untrustedView(d.position_untrusted),
    timeUntrustedView(d.time_untrusted),
    h("h3", {}, t("detail.fields")),
    fieldRows(c),
    h("h3", {}, t("detail.timeline")),
    h("ol", { class: "timeline", "data-testid": "timeline" }, audit),
    deliveries.length ? [h("h3", {}, t("detail.deliveries")), h("ul", { class: "deliveries" }, deliveries)] : null,
    photos.length ? [h("h3", {}, t("detail.photos")), h("div", { class: "photos" }, photos)] : null,
  ]));
}

// ---------------------------------------------------------------------------------------------
// Sites and cameras

async function loadSites() {
  const ul = $("#sites");
  try {
    const r = await api("GET", "/api/v1/sites");
    const sites = r.sites || [];
    if (!sites.length) {
      ul.replaceChildren(h("li", { class: "muted" }, t("sites.empty")));
      return;
    }
    ul.replaceChildren(...sites.map((s) =>
      h("li", { class: `site ${s.online ? "on" : "off"}`, "data-testid": "site", "data-site": s.id, "data-online": String(!!s.online) },
        h("div", { class: "l1" },
          h("span", { class: `dot ${s.online ? "on" : "off"}` }),
          h("b", {}, s.name || s.id), " ",
          h("span", { class: "muted" }, s.id),
          h("span", { class: "grow" }),
          h("span", { class: s.online ? "ok" : "error" }, s.online ? t("sites.online") : t("sites.offline"))),
        h("div", { class: "l2 small muted" },
          s.cell ? `${s.cell.name} · ` : "",
          `${t("sites.lastSeen")}: ${s.last_seen ? `${fmtTime(s.last_seen)} (${fmtAgo(s.last_seen)})` : "—"}`,
          s.clock_offset_ms != null
            ? h("span", { class: s.clock_off ? "error" : "", "data-testid": "site-clock", "data-offset-ms": String(s.clock_offset_ms), "data-off": String(!!s.clock_off) },
              ` · ${t(s.clock_off ? "sites.clockOff" : "sites.clock")}: ${s.clock_offset_ms > 0 ? "+" : "−"}${fmtDur(Math.abs(s.clock_offset_ms))}`)
            : null),
        (s.cameras || []).length
          ? h("ul", { class: "cams" }, s.cameras.map((cam) =>
            h("li", { "data-testid": "camera", "data-state": cam.state },
              h("span", { class: `cam cam-${cam.state}` }, cam.state), ` ${cam.id}`, cam.fps != null ? ` · ${Number(cam.fps).toFixed(1)} fps` : "")))
          : null,
        (s.readers || []).length
          ? h("div", { class: "small muted" }, `${t("sites.readers")}: ${s.readers.map((x) => `${x.id ?? ""} ${x.state ?? ""}`.trim()).join(", ")}`)
          : null,
      )));
  } catch (ex) {
    ul.replaceChildren(h("li", { class: "error" }, ex.message));
  }
}

// ---------------------------------------------------------------------------------------------
// E-bike trajectory and watchlist

async function onTrack(e) {
  e.preventDefault();
  const tag = e.target.tag.value.trim();
  const ol = $("#sightings");
  if (!tag) return;
  try {
    const r = await api("GET", `/api/v1/tags/${encodeURIComponent(tag)}/trajectory`);
    const s = (r.sightings || []).slice().sort((a, b) => toMs(a.first) - toMs(b.first));
    if (!s.length) {
      ol.replaceChildren(h("li", { class: "muted" }, t("tags.none")));
      state.map.clearTrack();
      return;
    }
    ol.replaceChildren(...s.map((x, i) =>
      h("li", { "data-testid": "sighting" },
        h("b", {}, `${i + 1}. `), `${fmtTime(x.first)} – ${fmtTime(x.last)} · ${x.site}/${x.reader} · ${x.reads}× · ${x.rssi ?? ""} dBm`)));
    state.map.showTrack(s.map((x) => (x.location ? [x.location.lon, x.location.lat] : null)));
  } catch (ex) {
    ol.replaceChildren(h("li", { class: "error" }, ex.message));
  }
}

async function loadWatchlist() {
  const ul = $("#watchlist");
  try {
    const r = await api("GET", "/api/v1/watchlist");
    const mayEdit = state.user && state.user.role !== "member";
    $("#watch-form").hidden = !mayEdit;
    if (mayEdit) fillWatchCells();
    ul.replaceChildren(...(r.entries || []).map((w) =>
      h("li", { "data-testid": "watch-entry", "data-tag": w.tag },
        h("code", {}, w.tag), ` ${w.case_ref ?? ""} ${w.note ?? ""} · ${w.scope ? w.scope.name : t("tags.everywhere")} · ${fmtTime(w.added_at)} · ${w.added_by ?? ""} `,
        mayEdit ? h("button", { type: "button", class: "link", "data-testid": "watch-remove", onclick: () => onWatchRemove(w.tag) }, t("tags.remove")) : null,
        h("button", { type: "button", class: "link", onclick: () => { $("#tag-form").tag.value = w.tag; $("#tag-form").requestSubmit(); } }, t("tags.show")))));
  } catch (ex) {
    ul.replaceChildren(h("li", { class: "error" }, ex.message));
  }
}

// Where a new entry applies: one of the user's cells (the server allows those and the cells
// under them), or, for an admin, every site.
function fillWatchCells() {
  const sel = $("#watch-form").cell;
  const keep = sel.value;
  const opts = (state.user.cells || []).map((c) => h("option", { value: c.code }, `${c.name} (${c.code})`));
  if (state.user.role === "admin") opts.unshift(h("option", { value: "" }, t("tags.everywhere")));
  sel.replaceChildren(...opts);
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

async function onWatchAdd(e) {
  e.preventDefault();
  const f = e.target;
  const msg = $("#watch-msg");
  try {
    const body = { tag: f.tag.value.trim(), case_ref: f.case_ref.value.trim(), note: f.note.value.trim() };
    if (f.cell.value) body.cell = f.cell.value;
    const r = await api("POST", "/api/v1/watchlist", body);
    msg.textContent = `${t("tags.sitesNotified")}: ${r.sites ?? 0}`;
    msg.className = "msg ok";
    f.reset();
    loadWatchlist();
  } catch (ex) {
    msg.textContent = ex.message;
    msg.className = "msg error";
  }
}

async function onWatchRemove(tag) {
  const msg = $("#watch-msg");
  try {
    const r = await api("DELETE", `/api/v1/watchlist/${encodeURIComponent(tag)}`);
    msg.textContent = `${t("tags.sitesNotified")}: ${r?.sites ?? 0}`;
    msg.className = "msg ok";
    loadWatchlist();
  } catch (ex) {
    msg.textContent = ex.message;
    msg.className = "msg error";
  }
}

// ---------------------------------------------------------------------------------------------
// Silences (operators, admins): maintenance windows. Matching alerts are stored and counted
// by the hub but open no case; the list shows what each matches, until when, why, who set it
// and how many alerts it muted.

const SILENCE_KINDS = ["zone", "line", "loiter", "crowd", "camera_offline", "watchlist", "possible_theft"];

function fillSilenceForm() {
  const f = $("#silence-form");
  const keepKind = f.kind.value, keepCell = f.cell.value;
  f.kind.replaceChildren(h("option", { value: "" }, t("sil.anyKind")), ...SILENCE_KINDS.map((k) => h("option", { value: k }, tv("kind.", k))));
  f.cell.replaceChildren(h("option", { value: "" }, t("sil.anyCell")), ...(state.user.cells || []).map((c) => h("option", { value: c.code }, `${c.name} (${c.code})`)));
  f.kind.value = keepKind;
  if ([...f.cell.options].some((o) => o.value === keepCell)) f.cell.value = keepCell;
}

function silenceMatchers(s) {
  const cell = s.cell ? state.gridCells.find((c) => c.code === s.cell) : null;
  return [
    s.site && `${t("sil.site")} ${s.site}`,
    s.camera && `${t("sil.camera")} ${s.camera}`,
    s.rule && `${t("sil.rule")} ${s.rule}`,
    s.kind && tv("kind.", s.kind),
    s.cell && `${t("sil.cell")} ${cell ? cell.name : s.cell}`,
  ].filter(Boolean).join(" · ");
}

async function loadSilences() {
  const ul = $("#silences");
  if (!state.user || state.user.role === "member") return;
  fillSilenceForm();
  try {
    const r = await api("GET", "/api/v1/silences");
    const now = Date.now();
    const rows = (r.silences || []).map((s) => {
      const end = toMs(s.ended_at) ?? toMs(s.until);
      const status = s.active ? "active" : toMs(s.from) > now && !s.ended_at ? "planned" : "ended";
      const endBtn = status !== "ended"
        ? h("button", { type: "button", class: "link", "data-testid": "silence-end", onclick: () => onSilenceEnd(s.id) }, t("sil.end"))
        : null;
      return h("li", { "data-testid": "silence", "data-id": s.id, "data-status": status, class: status === "ended" ? "ended" : "" },
        h("b", {}, silenceMatchers(s)), " ",
        h("span", { class: `state`, "data-testid": "silence-status" }, t(`sil.${status}`)), h("br"),
        `${fmtTime(toMs(s.from))} – ${fmtTime(end)} · ${s.reason} · ${t("sil.by")} ${s.created_by}`,
        s.ended_by ? ` · ${t("sil.endedBy")} ${s.ended_by}` : "",
        " · ", h("span", { "data-testid": "silence-muted" }, `${t("sil.muted")} ${s.muted}`), " ",
        endBtn);
    });
    ul.replaceChildren(...(rows.length ? rows : [h("li", { class: "muted" }, t("sil.none"))]));
  } catch (ex) {
    ul.replaceChildren(h("li", { class: "error" }, ex.message));
  }
}

async function onSilenceAdd(e) {
  e.preventDefault();
  const f = e.target;
  const msg = $("#silence-msg");
  const body = { until: new Date(Date.now() + Number(f.hours.value) * 3600_000).toISOString(), reason: f.reason.value.trim() };
  for (const k of ["site", "camera", "rule", "kind", "cell"]) if (f[k].value.trim()) body[k] = f[k].value.trim();
  try {
    const r = await api("POST", "/api/v1/silences", body);
    msg.textContent = `${t("sil.created")}: ${r.silence.id}`;
    msg.className = "msg ok";
    f.reset();
    loadSilences();
  } catch (ex) {
    // Every problem the hub found, each with its field.
    const problems = ex.problems;
    msg.textContent = problems?.length ? problems.map((p) => `${p.field}: ${p.message}`).join("；") : ex.message;
    msg.className = "msg error";
  }
}

async function onSilenceEnd(id) {
  const msg = $("#silence-msg");
  try {
    await api("POST", `/api/v1/silences/${encodeURIComponent(id)}/end`);
    msg.textContent = `${t("sil.done")}: ${id}`;
    msg.className = "msg ok";
    loadSilences();
  } catch (ex) {
    msg.textContent = ex.message;
    msg.className = "msg error";
  }
}

// ---------------------------------------------------------------------------------------------
// Quarantine (admins): refused alerts, re-ingest and delete. Everything a site sent is shown
// as text nodes only (the preview is already printable; it is still never parsed as HTML).

const quarantine = { before: null };

async function loadQuarantine(more = false) {
  const ol = $("#quarantine");
  const moreBtn = $("#q-more");
  if (!more) quarantine.before = null;
  try {
    const q = quarantine.before ? `?before=${encodeURIComponent(quarantine.before)}` : "";
    const r = await api("GET", `/api/v1/quarantine${q}`);
    const rows = (r.records || []).map(quarantineRow);
    if (more) ol.append(...rows);
    else ol.replaceChildren(...(rows.length ? rows : [h("li", { class: "muted" }, t("q.empty"))]));
    quarantine.before = r.next_before;
    moreBtn.hidden = !r.next_before;
  } catch (ex) {
    ol.replaceChildren(h("li", { class: "error" }, ex.message));
  }
}

function quarantineRow(x) {
  const msg = $("#q-msg");
  const say = (text, cls) => {
    msg.textContent = text;
    msg.className = `msg ${cls}`;
  };
  const reingest = async (btn) => {
    btn.disabled = true;
    try {
      const r = await api("POST", `/api/v1/quarantine/${encodeURIComponent(x.id)}/reingest`);
      say(`${t("q.stored")} ${r.case}`, "ok");
      loadQuarantine();
    } catch (ex) {
      say(ex.message, "error");
      loadQuarantine();
    } finally {
      btn.disabled = false;
    }
  };
  const remove = async (btn) => {
    if (!window.confirm(t("q.confirmDelete"))) return;
    btn.disabled = true;
    try {
      await api("DELETE", `/api/v1/quarantine/${encodeURIComponent(x.id)}`);
      say(t("q.deleted"), "ok");
      loadQuarantine();
    } catch (ex) {
      say(ex.message, "error");
      btn.disabled = false;
    }
  };
  return h("li", { "data-testid": "quarantine-row", "data-id": x.id, "data-code": x.code },
    h("div", { class: "l1" },
      h("b", {}, x.site), " · ",
      h("span", { class: `badge q-${x.code}` }, tv("q.code.", x.code)), " · ",
      h("time", {}, fmtTime(x.at)), " · ",
      `${x.bytes} ${t("q.bytes")}`, x.truncated ? ` ${t("q.truncated")}` : ""),
    h("div", { class: "small" }, x.reason),
    h("div", { class: "preview muted" }, x.preview),
    h("div", { class: "actions" },
      h("button", { type: "button", "data-testid": "q-reingest", onclick: (e) => reingest(e.currentTarget) }, t("q.reingest")),
      h("button", { type: "button", "data-testid": "q-delete", onclick: (e) => remove(e.currentTarget) }, t("q.delete")),
      h("a", { href: `/api/v1/quarantine/${encodeURIComponent(x.id)}/raw`, download: `quarantine-${x.id}.bin` }, t("q.raw"))));
}

// ---------------------------------------------------------------------------------------------
// Statistics and 红黑榜

async function loadStats() {
  const level = $("#stats-form").level.value;
  const q = `?level=${encodeURIComponent(level)}`;
  $("#stats-csv").href = `/api/v1/stats.csv${q}`;
  $("#stats-xlsx").href = `/api/v1/stats.xlsx${q}`;
  const body = $("#stats-body");
  const deptBody = $("#dept-stats-body");
  const pct = (v) => (v == null ? "—" : `${Math.round(v * 100)}%`);
  const rows = (list, testid) => (list || []).map((x) =>
    h("tr", { "data-testid": testid, "data-code": x.cell.code },
      h("td", {}, x.cell.name, h("div", { class: "small muted" }, x.cell.code)),
      h("td", {}, x.cases), h("td", {}, x.open),
      h("td", { class: x.overdue ? "error" : "" }, x.overdue),
      h("td", {}, fmtDur(x.mean_ack_ms)), h("td", {}, fmtDur(x.mean_resolve_ms)),
      h("td", {}, x.supervised), h("td", {}, x.transferred),
      h("td", {}, pct(x.satisfaction_ratio)), h("td", {}, x.score.toFixed(2))));
  try {
    const r = await api("GET", `/api/v1/stats${q}`);
    const names = new Map([...(r.cells || []), ...(r.departments || [])].map((x) => [x.cell.code, x.cell.name]));
    body.replaceChildren(...rows(r.cells, "stats-row"));
    deptBody.replaceChildren(...rows(r.departments, "dept-stats-row"));
    const rank = (codes) => (codes || []).map((code) => h("li", { "data-code": code }, names.get(code) || code));
    $("#rank-red").replaceChildren(...rank(r.ranking?.red));
    $("#rank-black").replaceChildren(...rank(r.ranking?.black));
    $("#dept-rank-red").replaceChildren(...rank(r.department_ranking?.red));
    $("#dept-rank-black").replaceChildren(...rank(r.department_ranking?.black));
  } catch (ex) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "error" }, ex.message)));
    deptBody.replaceChildren();
  }
}

boot();
