// The hub's HTTP API (v1): cookie session + CSRF token on every POST/DELETE.

let csrf = null;

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "http";
    this.field = e.field || null;
    // A body checked as a whole lists every problem, each with its field.
    this.problems = e.problems || [];
  }
}

export function setCsrf(token) {
  csrf = token || null;
}

/** `api("GET", "/api/v1/me")`; JSON in and out; throws ApiError on a non-2xx answer. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrf) headers["X-CSRF-Token"] = csrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  let data = null;
  const type = res.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      data = await res.json();
    } catch {
      data = null;
    }
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export async function login(username, password) {
  const r = await api("POST", "/api/v1/auth/login", { username, password });
  setCsrf(r.csrf);
  return r.user;
}

/** The login form's submit handler, shared by both pages: logs in, clears the password, then
 * `start(user)`; a refusal is shown in the form's `login-error` element. */
export function loginHandler(start, t) {
  return async (e) => {
    e.preventDefault();
    const f = e.target;
    const err = document.querySelector("[data-testid=login-error]");
    err.hidden = true;
    try {
      const user = await login(f.username.value.trim(), f.password.value);
      f.password.value = "";
      start(user);
    } catch (ex) {
      err.textContent = `${t("login.failed")}: ${ex.message}`;
      err.hidden = false;
    }
  };
}

export async function logout() {
  try {
    await api("POST", "/api/v1/auth/logout", {});
  } finally {
    setCsrf(null);
  }
}

/** The logged-in user, or null when not logged in. */
export async function me() {
  try {
    const m = await api("GET", "/api/v1/me");
    if (m && m.csrf) setCsrf(m.csrf);
    return m;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

export const caseAction = (id, body) =>
  api("POST", `/api/v1/cases/${encodeURIComponent(id)}/actions`, body);

/**
 * The live feed. `onCase(event)` gets each `case` event's data; `onReset()` is called when
 * the hub's log no longer reaches back to what we had; `onState(open)` on (dis)connection.
 * EventSource reconnects by itself and sends Last-Event-ID.
 */
export function liveFeed({ onCase, onReset, onState }) {
  const es = new EventSource("/api/v1/events", { withCredentials: true });
  es.addEventListener("case", (ev) => {
    let d;
    try {
      d = JSON.parse(ev.data);
    } catch {
      return;
    }
    onCase(d);
  });
  es.addEventListener("reset", () => onReset && onReset());
  es.onopen = () => onState && onState(true);
  es.onerror = () => onState && onState(false);
  return es;
}

/** A time as ms since the epoch: the API's integers, or RFC 3339 strings (the protocol's). */
export function toMs(v) {
  if (v == null) return null;
  if (typeof v === "number") return v;
  const n = Date.parse(v);
  return Number.isNaN(n) ? null : n;
}

/** A CaseSummary with every time as ms (mutated in place and returned). */
export function normCase(c) {
  if (!c) return c;
  for (const k of ["opened_at", "updated_at", "last_alert_at", "acked_at", "resolved_at"]) if (k in c) c[k] = toMs(c[k]);
  if (c.deadline) c.deadline.at = toMs(c.deadline.at);
  return c;
}

/**
 * The case's time, shown as "… ago" on every page: when the hub opened it (the hub's clock).
 * Not the alert's own time: that is the box's clock or, in a replay, the video's, and can be
 * days off, so the same case would read differently on two pages.
 */
export const caseTime = (c) => c.opened_at;

/**
 * Whether a case asks this member to act (the phone's to-do list): dispatched to one of their
 * cells and waiting for someone to acknowledge it, or acknowledged / being handled by them.
 * A `new` case is recorded only (info severity, or nobody to send it to): nothing to do.
 */
export function asksMe(c, user) {
  if (!user) return false;
  // Dispatched to one of their cells, or to a department of theirs (routed or transferred).
  if (c.state === "dispatched") return (user.cells || []).some((m) => m.code === c.cell?.code || m.code === c.department?.code);
  if (c.state === "acknowledged" || c.state === "handling") return c.handler === (user.person ?? user.id);
  return false;
}

/** True for states that still need someone (not resolved/closed). */
export const isOpen = (c) => c.state !== "resolved" && c.state !== "closed";

/**
 * The deadline state to show: the hub's, except that a deadline that has passed since the
 * hub computed it shows as overdue right away. A case whose deadline passed at the top cell
 * has no deadline left (nowhere higher to climb) but stays overdue until someone acts.
 */
export const overdueAtTop = (c) => !c.deadline && c.deadline_state === "overdue";

export function deadlineState(c, now = Date.now()) {
  if (!c.deadline) return overdueAtTop(c) ? "overdue" : "none";
  if (now >= c.deadline.at) return "overdue";
  return c.deadline_state || "on_time";
}

/** `h("div", {class: "x", dataset: {a: 1}, onclick}, child, "text", ...)` */
export function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  el.append(...nodes(children));
  return el;
}

/**
 * Children as DOM nodes: nested arrays flattened, null and false left out, the rest as text.
 * (The DOM's own append/replaceChildren would print an array or a null as text.)
 */
export function nodes(children) {
  return children
    .flat(Infinity)
    .filter((c) => c != null && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

/**
 * Reads an image file as base64 JPEG, downscaled so neither side exceeds `max` pixels
 * (a phone photo of 4000×3000 becomes 1600×1200, well under the hub's 2 MB limit).
 */
export async function fileToJpegBase64(file, max = 1600, quality = 0.85) {
  const url = URL.createObjectURL(file);
  try {
    const img = await new Promise((resolve, reject) => {
      const i = new Image();
      i.onload = () => resolve(i);
      i.onerror = () => reject(new Error("not an image"));
      i.src = url;
    });
    const scale = Math.min(1, max / Math.max(img.naturalWidth, img.naturalHeight));
    const w = Math.max(1, Math.round(img.naturalWidth * scale));
    const hh = Math.max(1, Math.round(img.naturalHeight * scale));
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = hh;
    canvas.getContext("2d").drawImage(img, 0, 0, w, hh);
    const dataUrl = canvas.toDataURL("image/jpeg", quality);
    return dataUrl.slice(dataUrl.indexOf(",") + 1);
  } finally {
    URL.revokeObjectURL(url);
  }
}
