// End-to-end scenario of the hub's web front end in real headless Chromium, driven by
// hub/tests/dashboard_e2e.rs, which starts the hub and publishes alerts over MQTT for it.
//
// Line protocol with the Rust side: this script prints `STEP publish <what>` on stdout and
// waits for `published <case-id> <epoch-ms>` on stdin (epoch-ms: just before the publish).
// `<what>` is `snapshot` (a non-critical alert with a JPEG snapshot and detections),
// `escalate` (a critical alert nobody acknowledges; the test config gives it 2 s per level),
// `info` (an info-level line crossing: recorded only), `replayed` (an alert whose own time is
// 346 h before the hub's, as a replayed clip's), `silenced` (from SILENCED_CAMERA; the test
// checks the hub muted it) or `sightings <tag>` (the tag read at OTHER_SITE, then at SITE;
// the answer names the tag).
//
// Env: HUB_URL, SHOT_DIR, OP_USER, OP_PASS, MEMBER_USER, MEMBER_PASS, PHOTO, GPS, SITE,
// OTHER_SITE, M01, M01_NAME, OTHER_CELL, TAG, SILENCED_CAMERA, DEPT, DEPT_USER, DEPT_PASS,
// CHROMIUM (default /usr/bin/chromium),
// MAX_VISIBLE_MS (default 1000).

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v == null) throw new Error(`environment variable ${k} is not set`);
  return v;
};
const HUB = env("HUB_URL").replace(/\/$/, "");
const SHOTS = env("SHOT_DIR", "target/e2e-shots");
const OP = [env("OP_USER"), env("OP_PASS")];
const MEMBER = [env("MEMBER_USER"), env("MEMBER_PASS")];
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const MAX_VISIBLE_MS = Number(env("MAX_VISIBLE_MS", "1000"));
const PHOTO = env("PHOTO"); // a real camera JPEG, attached as the members' photos
const GPS = env("GPS").split(",").map(Number); // the phone's position: lon,lat
const SITE = env("SITE");
const OTHER_SITE = env("OTHER_SITE");
const M01 = env("M01"); // the member's micro-grid, where SITE is
const CELL_NAME_M01 = env("M01_NAME");
const OTHER_CELL = env("OTHER_CELL"); // OTHER_SITE's cell
const TAG = env("TAG");
const SILENCED_CAMERA = env("SILENCED_CAMERA");
const DEPT = env("DEPT"); // a department's code (交警)
const DEPT_LOGIN = [env("DEPT_USER"), env("DEPT_PASS")]; // its duty officer

mkdirSync(SHOTS, { recursive: true });
const log = (...a) => console.log("e2e:", ...a);

// --- stdin lines from the Rust side ---------------------------------------------------------
const lines = [];
const waiters = [];
createInterface({ input: process.stdin }).on("line", (l) => {
  const w = waiters.shift();
  if (w) w(l);
  else lines.push(l);
});
const nextLine = (ms = 30000) =>
  new Promise((resolve, reject) => {
    if (lines.length) return resolve(lines.shift());
    const timer = setTimeout(() => reject(new Error(`no answer on stdin within ${ms} ms`)), ms);
    waiters.push((l) => {
      clearTimeout(timer);
      resolve(l);
    });
  });

async function publish(what) {
  console.log(`STEP publish ${what}`);
  const line = (await nextLine()).trim();
  const m = /^published (\S+) (\d+)$/.exec(line);
  if (!m) throw new Error(`unexpected answer to STEP publish ${what}: ${line}`);
  return { id: m[1], at: Number(m[2]) };
}

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

// --- browser --------------------------------------------------------------------------------
// Playwright gives every launch a fresh temporary profile (user-data-dir) of its own and
// removes it on close; it refuses an explicit --user-data-dir in `launch`.
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

const pageErrors = [];
function watch(page, name) {
  page.on("pageerror", (e) => {
    pageErrors.push(`${name}: ${e.message}`);
    console.log(`e2e: [${name}] page error: ${e.message}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") console.log(`e2e: [${name}] console.${m.type()}: ${m.text()}`);
  });
}

let current = null; // for the failure screenshot
const shot = async (page, name) => {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  log(`screenshot ${path}`);
};

// Waits until an <img> has loaded a real image.
// (Photo thumbnails load lazily, with no size until then: scroll them into view first.)
async function loaded(page, img) {
  await img.waitFor({ state: "attached", timeout: 10000 });
  await img.evaluate((el) => el.scrollIntoView({ block: "center" }));
  await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle(), { timeout: 10000 });
  assert(await img.isVisible(), "the image is shown");
}

async function loginOn(page, path, [user, pass]) {
  await page.goto(`${HUB}${path}`);
  await page.getByTestId("login-username").fill(user);
  await page.getByTestId("login-password").fill(pass);
  await page.getByTestId("login-submit").click();
  await page.locator("#app").waitFor({ state: "visible", timeout: 10000 });
}

try {
  // 1. The operator logs in; the map and the live feed come up.
  const opCtx = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: "zh-CN" });
  const op = await opCtx.newPage();
  current = op;
  watch(op, "operator");
  await loginOn(op, "/", OP);
  await op.locator("[data-testid=cell]").first().waitFor({ state: "attached", timeout: 10000 });
  await op.locator("[data-testid=live-state][data-state=open]").waitFor({ timeout: 10000 });
  const cellCount = await op.locator("[data-testid=cell]").count();
  log(`operator logged in; map has ${cellCount} cells; live feed connected`);
  assert(cellCount > 0, "the map draws the grid cells");
  assert((await op.getByTestId("tab-feed").innerText()).includes("实时告警"), "Chinese by default");

  // Record when each case's row and pin first appear, and prove later that no reload happened.
  await op.evaluate(() => {
    window.__e2eNoReload = true;
    window.__seen = {};
    const note = (el) => {
      const id = el.getAttribute && el.getAttribute("data-case-id");
      const kind = el.getAttribute && el.getAttribute("data-testid");
      if (!id || (kind !== "feed-row" && kind !== "pin")) return;
      const s = (window.__seen[id] ||= {});
      if (!s[kind]) s[kind] = { at: Date.now(), level: el.getAttribute("data-level") };
    };
    new MutationObserver((muts) => {
      for (const m of muts) {
        if (m.type === "attributes") note(m.target);
        for (const n of m.addedNodes) if (n.nodeType === 1) note(n);
      }
    }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-case-id"] });
  });

  // 2. An alert published over MQTT shows in the feed and on the map within 1 s.
  const first = await publish("snapshot");
  const row = op.locator(`[data-testid=feed-row][data-case-id="${first.id}"]`);
  const pin = op.locator(`[data-testid=pin][data-case-id="${first.id}"]`);
  await row.waitFor({ state: "visible", timeout: 10000 });
  await pin.waitFor({ state: "visible", timeout: 10000 });
  const seen = await op.evaluate((id) => window.__seen[id], first.id);
  const visibleAt = Math.max(seen["feed-row"].at, seen.pin.at);
  const latency = visibleAt - first.at;
  log(`publish→visible: ${latency} ms (row ${seen["feed-row"].at - first.at} ms, pin ${seen.pin.at - first.at} ms)`);
  console.log(`METRIC publish_to_visible_ms ${latency}`);
  assert(latency <= MAX_VISIBLE_MS, `case visible ${latency} ms after publish (limit ${MAX_VISIBLE_MS} ms)`);
  assert(["on_time", "near", "overdue", "none"].includes(await pin.getAttribute("data-deadline-state")), "pin has a deadline state");
  const rowText = await row.innerText();
  assert(!/NaN|undefined/.test(rowText), `row text is well formed: ${rowText}`);
  await shot(op, "01-operator-feed");

  // 3. Open it: the snapshot loads and the detection boxes are drawn over it.
  await row.click();
  const detail = op.getByTestId("detail");
  await detail.locator(`[data-testid=f-id]`).filter({ hasText: first.id }).waitFor({ timeout: 10000 });
  const img = detail.getByTestId("snapshot");
  await img.waitFor({ state: "visible", timeout: 10000 });
  await op.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle(), { timeout: 10000 });
  const natural = await img.evaluate((el) => [el.naturalWidth, el.naturalHeight]);
  const boxes = await detail.locator("[data-testid=det-box]").count();
  const box = await detail.locator("[data-testid=det-box] rect").first().boundingBox();
  const imgBox = await img.boundingBox();
  log(`snapshot ${natural[0]}×${natural[1]} shown at ${Math.round(imgBox.width)}×${Math.round(imgBox.height)}, ${boxes} box(es)`);
  assert(natural[0] > 0, "snapshot image loaded (naturalWidth > 0)");
  assert(boxes > 0, "detection boxes drawn");
  assert(box && box.width > 2 && box.height > 2, "the box has a size on screen");
  assert(box.x >= imgBox.x - 1 && box.x + box.width <= imgBox.x + imgBox.width + 1, "the box lies over the image");
  assert((await detail.getByTestId("timeline").locator("li").count()) > 0, "timeline shown");
  await shot(op, "02-case-detail");

  // 4. The cell's grid member, on a phone, acknowledges with one tap.
  const phoneCtx = await browser.newContext({
    viewport: { width: 375, height: 812 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    locale: "zh-CN",
    geolocation: { longitude: GPS[0], latitude: GPS[1], accuracy: 8 },
    permissions: ["geolocation"],
  });
  const phone = await phoneCtx.newPage();
  watch(phone, "phone");
  current = phone;
  await loginOn(phone, "/m", MEMBER);
  const card = phone.locator(`[data-testid=m-case][data-case-id="${first.id}"]`);
  await card.waitFor({ state: "visible", timeout: 10000 });
  await shot(phone, "03-phone");
  await card.getByTestId("m-acknowledge").tap();
  await phone.locator(`[data-testid=m-case][data-case-id="${first.id}"][data-state=acknowledged]`).waitFor({ timeout: 10000 });
  await shot(phone, "04-phone-after-ack");
  log("member acknowledged on the phone");

  // 5. The operator's view follows live, without a reload.
  current = op;
  const tAck = Date.now();
  await op.locator(`[data-testid=feed-row][data-case-id="${first.id}"][data-state=acknowledged]`).waitFor({ timeout: 5000 });
  assert(await op.evaluate(() => window.__e2eNoReload === true), "operator page was not reloaded");
  // The open detail refetches the case on the event, a moment after the row changes.
  await op.getByTestId("detail-state").filter({ hasText: "已签收" }).waitFor({ timeout: 5000 });
  log(`operator row acknowledged ${Date.now() - tAck} ms after the tap returned`);
  await shot(op, "05-operator-after-ack");

  // 6. A critical case nobody acknowledges climbs from the micro-grid to the grid.
  const second = await publish("escalate");
  const row2 = op.locator(`[data-testid=feed-row][data-case-id="${second.id}"]`);
  const pin2 = op.locator(`[data-testid=pin][data-case-id="${second.id}"]`);
  await row2.waitFor({ state: "visible", timeout: 10000 });
  await pin2.waitFor({ state: "visible", timeout: 10000 });
  const firstLevel = (await op.evaluate((id) => window.__seen[id], second.id))["feed-row"].level;
  log(`escalation case ${second.id} first shown at level ${firstLevel}`);
  assert(firstLevel === "micro_grid", `the new case starts at micro_grid (got ${firstLevel})`);
  await op.locator(`[data-testid=feed-row][data-case-id="${second.id}"][data-level=grid]`).waitFor({ timeout: 8000 });
  await op.locator(`[data-testid=pin][data-case-id="${second.id}"][data-level=grid]`).waitFor({ state: "attached", timeout: 2000 });
  const climbedAt = Date.now() - second.at;
  log(`row and pin moved micro_grid → grid ${climbedAt} ms after publish`);
  assert(await op.evaluate(() => window.__e2eNoReload === true), "operator page was not reloaded");
  assert((await row2.getByTestId("row-level").innerText()).trim() === "网格", "row shows the level 网格");
  await row2.click();
  await op.getByTestId("detail").locator(`[data-testid=f-level]`).filter({ hasText: /^网格$/ }).waitFor({ timeout: 5000 });
  await shot(op, "06-after-escalation");

  // 7. On patrol, the member reports a fire hazard with the phone's position and a photo; it
  //    becomes a case of their micro-grid, on the phone and live on the operator's map.
  current = phone;
  await phone.getByTestId("tab-report").tap();
  await phone.getByTestId("report-locate").tap();
  await phone.waitForFunction(() => document.querySelector("[data-testid=report-lon]").value !== "", null, { timeout: 10000 });
  const [lon, lat] = [Number(await phone.getByTestId("report-lon").inputValue()), Number(await phone.getByTestId("report-lat").inputValue())];
  log(`phone position filled in from GPS: ${lon}, ${lat}`);
  assert(Math.abs(lon - GPS[0]) < 1e-5 && Math.abs(lat - GPS[1]) < 1e-5, `the form holds the phone's position (${lon}, ${lat})`);
  await phone.getByTestId("report-category").selectOption("fire_hazard");
  await phone.getByTestId("report-note").fill("楼道堆放电动车电池，存在火灾隐患");
  await phone.getByTestId("report-photo").setInputFiles(PHOTO);
  await phone.getByTestId("report-submit").tap();
  const okText = await phone.getByTestId("report-ok").filter({ hasText: /C-\S+/ }).innerText({ timeout: 10000 });
  const patrolId = /C-\S+/.exec(okText)[0];
  log(`patrol report filed as ${patrolId}`);
  await shot(phone, "07-phone-report");
  await phone.getByTestId("tab-mine").tap();
  await phone.locator(`[data-testid=m-case][data-case-id="${patrolId}"]`).waitFor({ timeout: 5000 });
  current = op;
  const patrolRow = op.locator(`[data-testid=feed-row][data-case-id="${patrolId}"]`);
  await patrolRow.waitFor({ state: "visible", timeout: 5000 });
  await op.locator(`[data-testid=pin][data-case-id="${patrolId}"]`).waitFor({ state: "attached", timeout: 5000 });
  await patrolRow.click();
  await op.getByTestId("detail-title").filter({ hasText: "巡查上报" }).waitFor({ timeout: 5000 });
  assert((await patrolRow.innerText()).includes("消防隐患"), "the row names the report's category");
  // The member's photo is the case's on-scene picture.
  await loaded(op, op.getByTestId("detail").getByTestId("snapshot"));
  assert((await op.getByTestId("detail").innerText()).includes(CELL_NAME_M01), "the report is filed in the member's micro-grid");
  await shot(op, "07-operator-patrol-case");
  log("operator sees the patrol report live, in the member's micro-grid, with its photo");

  // 8. The member resolves the first case with a note and a photo; the operator sees it
  //    resolved live, checks the photo and the note, and closes it (verification).
  current = phone;
  const firstCard = phone.locator(`[data-testid=m-case][data-case-id="${first.id}"]`);
  await firstCard.getByTestId("resolve-note").fill("已到场劝离，现场恢复正常");
  await firstCard.getByTestId("resolve-photo").setInputFiles(PHOTO);
  await firstCard.getByTestId("m-resolve").tap();
  await firstCard.waitFor({ state: "detached", timeout: 10000 });
  log("member resolved the first case; it left their open list");
  current = op;
  await op.locator(`[data-testid=feed-row][data-case-id="${first.id}"][data-state=resolved]`).waitFor({ timeout: 5000 });
  assert((await op.locator(`[data-testid=pin][data-case-id="${first.id}"]`).count()) === 0, "a resolved case has no pin");
  await row.click();
  await op.getByTestId("detail-state").filter({ hasText: "已办结" }).waitFor({ timeout: 5000 });
  await loaded(op, op.getByTestId("detail").getByTestId("photo").first());
  assert((await op.getByTestId("timeline").innerText()).includes("已到场劝离"), "the resolution note is in the timeline");
  assert((await op.getByTestId("detail").getByTestId("delivery").count()) > 0, "the notifications sent are listed");
  const detailText = await op.getByTestId("detail").innerText();
  assert(!/null|undefined|\[object /.test(detailText), "no stray text in the detail panel");
  await shot(op, "08-operator-resolved");
  await op.getByTestId("act-close").click();
  await op.getByTestId("detail-state").filter({ hasText: "已结案" }).waitFor({ timeout: 5000 });
  await op.locator(`[data-testid=feed-row][data-case-id="${first.id}"][data-state=closed]`).waitFor({ timeout: 5000 });
  log("operator verified and closed it");

  // 9. A stolen e-bike: the operator puts its tag on the watchlist (the test checks the signed
  //    command reaches the site), readers at two sites see it, and its trajectory is drawn.
  await op.getByTestId("tab-tags").click();
  await op.getByTestId("watch-tag").fill(TAG);
  await op.getByTestId("watch-case").fill("武公(刑)立字[2026]88号");
  await op.getByTestId("watch-note").fill("被盗电动车");
  await op.getByTestId("watch-add").click();
  await op.locator(`[data-testid=watch-entry][data-tag="${TAG}"]`).waitFor({ timeout: 5000 });
  const notified = await op.locator("#watch-msg").innerText();
  assert(/: 2$/.test(notified.trim()), `both sites were sent the watchlist entry (${notified})`);
  const seen2 = await publish(`sightings ${TAG}`);
  assert(seen2.id === TAG, `sightings published for ${TAG}`);
  await op.getByTestId("tag-input").fill(TAG);
  await op.getByTestId("tag-show").click();
  const sightings = op.getByTestId("sighting");
  await sightings.nth(1).waitFor({ timeout: 5000 });
  const texts = await sightings.allInnerTexts();
  log(`trajectory: ${texts.join(" | ")}`);
  assert(texts.length === 2, `two sightings (got ${texts.length})`);
  assert(texts[0].includes(OTHER_SITE) && texts[1].includes(SITE), "sightings in time order: the other site first");
  await op.getByTestId("track-line").waitFor({ state: "attached", timeout: 2000 });
  assert((await op.getByTestId("track-point").count()) === 2, "two points on the map");
  // Each point lies over its site's cell: the first over the other township's grid, the
  // second over the demo site's micro-grid (and not the other way round).
  const centre = async (loc) => {
    const b = await loc.boundingBox();
    return [b.x + b.width / 2, b.y + b.height / 2];
  };
  const within = ([x, y], b) => b && x >= b.x && x <= b.x + b.width && y >= b.y && y <= b.y + b.height;
  const p1 = await centre(op.locator("[data-testid=track-point][data-n='1']"));
  const p2 = await centre(op.locator("[data-testid=track-point][data-n='2']"));
  const cellBox = (code) => op.locator(`[data-testid=cell][data-code="${code}"]`).boundingBox();
  const [bOther, bM01] = [await cellBox(OTHER_CELL), await cellBox(M01)];
  assert(within(p1, bOther) && !within(p1, bM01), `point 1 ${p1} over ${OTHER_CELL}`);
  assert(within(p2, bM01) && !within(p2, bOther), `point 2 ${p2} over ${M01}`);
  await shot(op, "09-trajectory");

  // 10. The escalated case, still unacknowledged, has climbed to the county and missed the
  //     county's deadline too: nowhere higher to go, it stays marked overdue (row and pin).
  await op.getByTestId("tab-feed").click();
  await op.locator(`[data-testid=feed-row][data-case-id="${second.id}"][data-level=county][data-deadline-state=overdue]`).waitFor({ timeout: 20000 });
  await op.locator(`[data-testid=pin][data-case-id="${second.id}"][data-deadline-state=overdue]`).waitFor({ state: "attached", timeout: 2000 });
  const topText = await row2.getByTestId("row-deadline").innerText();
  assert(topText.includes("已超期"), `the row says it is overdue at the top (${topText})`);
  log(`escalated case overdue at the county ${Date.now() - second.at} ms after publish: ${topText}`);
  await shot(op, "10-overdue-at-top");

  // Statistics per micro-grid and the 红黑榜 reflect what just happened in M01.
  await op.getByTestId("tab-stats").click();
  await op.getByTestId("stats-level").selectOption("micro_grid");
  await op.locator("#stats-form button[type=submit]").click();
  const statsRow = op.locator(`[data-testid=stats-row][data-code="${M01}"]`);
  await statsRow.waitFor({ timeout: 5000 });
  const tds = await statsRow.locator("td").allInnerTexts();
  log(`stats of ${M01}: ${tds.slice(1).join(" / ")}`);
  // Cases: the snapshot case (closed), the escalated one (overdue) and the patrol report.
  assert(tds[1] === "3" && tds[2] === "2" && tds[3] === "1", `M01 has 3 cases, 2 open, 1 overdue (got ${tds[1]}, ${tds[2]}, ${tds[3]})`);
  assert(tds[4] !== "—" && tds[5] !== "—", `time to acknowledge and to resolve are shown (${tds[4]}, ${tds[5]})`);
  const codes = async (id) => op.getByTestId(id).locator("li").evaluateAll((lis) => lis.map((li) => li.dataset.code));
  const [red, black] = [await codes("rank-red"), await codes("rank-black")];
  assert(red.length > 0, "the red list has cells");
  assert(!red.some((c) => black.includes(c)), `no cell on both lists (red ${red}, black ${black})`);
  await shot(op, "10-stats");
  await op.getByTestId("tab-feed").click();

  // 11. The member's to-do list holds only what asks them to act: an info-level line
  //     crossing (recorded only, state `new`) shows in the operator's feed, never on the phone.
  const info = await publish("info");
  await op.locator(`[data-testid=feed-row][data-case-id="${info.id}"][data-state=new]`).waitFor({ timeout: 5000 });
  // A case published after it that does ask the member: once the phone shows this one, it
  // has had the info case's event too.
  const replayed = await publish("replayed");
  current = phone;
  const replayedCard = phone.locator(`[data-testid=m-case][data-case-id="${replayed.id}"]`);
  await replayedCard.waitFor({ timeout: 5000 });
  assert((await phone.locator(`[data-testid=m-case][data-case-id="${info.id}"]`).count()) === 0, "a record-only case is not on the member's to-do list");
  const mine = await phone.locator("[data-testid=m-case]").evaluateAll((els) => els.map((e) => e.dataset.state));
  assert(mine.every((st) => st === "dispatched" || st === "acknowledged" || st === "handling"), `only cases to act on are listed (${mine})`);
  assert(Number(await phone.getByTestId("mine-count").innerText()) === mine.length, "the count matches the list");
  log(`to-do list: ${mine.length} case(s) (${mine.join(", ")}); the info case is not among them`);

  // 12. One notion of a case's time: the replayed alert's own time is 346 h old, yet both
  //     pages show the case's time (when the hub opened it) and the same "… ago".
  const opTime = op.locator(`[data-testid=feed-row][data-case-id="${replayed.id}"] [data-testid=case-time]`);
  const phoneTime = replayedCard.getByTestId("case-time");
  await opTime.waitFor({ timeout: 5000 });
  const [opAt, phoneAt] = [Number(await opTime.getAttribute("data-at")), Number(await phoneTime.getAttribute("data-at"))];
  assert(opAt === phoneAt, `the same case time on both pages (${opAt} vs ${phoneAt})`);
  assert(Math.abs(opAt - replayed.at) < 60000, `the case time is the hub's (${opAt}), not the alert's (${replayed.at - 346 * 3600000})`);
  const [opText, phoneText] = [(await opTime.innerText()).trim(), (await phoneTime.innerText()).trim()];
  log(`case time: operator "${opText}", phone "${phoneText}"`);
  assert(!/小时前/.test(opText) && /(秒|分钟)前/.test(opText), `the operator sees a recent time (${opText})`);
  assert(opText.replace(/\d+/, "") === phoneText.replace(/\d+/, ""), `the same unit on both pages (${opText} / ${phoneText})`);
  await shot(phone, "11-phone-todo");

  // 12b. 提级 from the phone: the member takes the replayed case up a level with a reason (the
  //      hub refuses one without); it leaves their to-do list, and the operator sees it at the
  //      grid level with the escalation in its timeline.
  await replayedCard.getByTestId("m-escalate-box").locator("summary").tap();
  await replayedCard.getByTestId("m-escalate").tap();
  await replayedCard.getByTestId("card-error").filter({ hasText: /note|原因|reason/i }).waitFor({ timeout: 5000 });
  await replayedCard.getByTestId("escalate-reason").fill("现场人员较多，需上级协调");
  await replayedCard.getByTestId("m-escalate").tap();
  await replayedCard.waitFor({ state: "detached", timeout: 10000 });
  current = op;
  await op.locator(`[data-testid=feed-row][data-case-id="${replayed.id}"] [data-testid=row-level][data-level=grid]`).waitFor({ timeout: 10000 });
  log(`case ${replayed.id} escalated from the phone with a reason (refused without one); now at the grid level`);

  // 13. Silences: the operator silences one camera of the site in the panel; its alert is
  //     stored but opens no case (the test checks the hub's records); the panel counts it;
  //     "end now" ends the silence.
  current = op;
  await op.getByTestId("tab-silences").click();
  await op.getByTestId("silence-site").fill(SITE);
  await op.getByTestId("silence-camera").fill(SILENCED_CAMERA);
  await op.getByTestId("silence-hours").selectOption("2");
  await op.getByTestId("silence-reason").fill("更换摄像头支架");
  await op.getByTestId("silence-add").click();
  await op.getByTestId("silence-msg").filter({ hasText: /S-\S+/ }).waitFor({ timeout: 5000 });
  const silenceId = /S-\S+/.exec(await op.getByTestId("silence-msg").innerText())[0];
  const silenceRow = op.locator(`[data-testid=silence][data-id="${silenceId}"]`);
  await silenceRow.waitFor({ timeout: 5000 });
  assert((await silenceRow.getAttribute("data-status")) === "active", "the new silence is in force");
  const silenceText = await silenceRow.innerText();
  assert(silenceText.includes(SILENCED_CAMERA) && silenceText.includes("更换摄像头支架") && silenceText.includes("生效中"), `the row shows matcher, reason and state (${silenceText})`);
  const muted = await publish("silenced");
  await op.getByTestId("tab-feed").click();
  await op.waitForTimeout(1000);
  assert((await op.locator(`[data-testid=feed-row][data-case-id="${muted.id}"]`).count()) === 0, "the silenced camera's alert opened no case");
  await op.getByTestId("tab-silences").click();
  await silenceRow.getByTestId("silence-muted").filter({ hasText: "已屏蔽 1" }).waitFor({ timeout: 5000 });
  await shot(op, "13-silence");
  await silenceRow.getByTestId("silence-end").click();
  await op.locator(`[data-testid=silence][data-id="${silenceId}"][data-status=ended]`).waitFor({ timeout: 5000 });
  assert((await silenceRow.getByTestId("silence-end").count()) === 0, "an ended silence has no end button");
  assert((await silenceRow.innerText()).includes("已结束"), "the row says it ended");
  log(`silence ${silenceId} created, muted one alert, ended from the panel`);
  await shot(op, "13-silence-ended");
  await op.getByTestId("tab-feed").click();

  // 14. 分类交办: the operator transfers a case to the traffic police with a time limit; the
  //     department's duty officer finds it on the phone page, acknowledges and resolves it;
  //     the operator closes and archives it (销号归档).
  const handed = await publish("snapshot");
  const hrow = op.locator(`[data-testid=feed-row][data-case-id="${handed.id}"]`);
  await hrow.waitFor({ timeout: 10000 });
  await hrow.click();
  await detail.locator(`[data-testid=f-id]`).filter({ hasText: handed.id }).waitFor({ timeout: 10000 });
  await detail.getByTestId("action-unit").selectOption(DEPT);
  await detail.getByTestId("action-within").fill("60");
  await detail.getByTestId("action-note").fill("占道，请交警到场处置");
  await detail.getByTestId("act-transfer").click();
  await detail.getByTestId("detail-department").filter({ hasText: "交通警察大队" }).waitFor({ timeout: 5000 });
  assert((await detail.getByTestId("timeline").innerText()).includes("交办"), "the transfer is in the timeline");
  await shot(op, "14-transferred");
  // 督办 from the county: the case is marked in the detail and on its feed row.
  await detail.getByTestId("action-within").fill("30");
  await detail.getByTestId("action-note").fill("请加快处置");
  await detail.getByTestId("act-supervise").click();
  await detail.getByTestId("detail-supervised").waitFor({ timeout: 5000 });
  await hrow.getByTestId("row-supervised").waitFor({ timeout: 5000 });
  assert((await hrow.getByTestId("row-department").innerText()).includes("交通警察大队"), "the row names the department");
  assert((await detail.getByTestId("timeline").innerText()).includes("督办"), "the supervision is in the timeline");
  log(`case ${handed.id} supervised from the county: marked in the detail and the feed`);
  const deptCtx = await browser.newContext({ viewport: { width: 375, height: 812 }, isMobile: true, hasTouch: true, locale: "zh-CN" });
  const dept = await deptCtx.newPage();
  watch(dept, "department");
  current = dept;
  await loginOn(dept, "/m", DEPT_LOGIN);
  const dcard = () => dept.locator(`[data-testid=m-case][data-case-id="${handed.id}"]`);
  await dcard().waitFor({ state: "visible", timeout: 10000 });
  await dcard().getByTestId("m-supervised").waitFor({ timeout: 5000 });
  await dcard().getByTestId("m-acknowledge").tap();
  await dept.locator(`[data-testid=m-case][data-case-id="${handed.id}"][data-state=acknowledged]`).waitFor({ timeout: 10000 });
  await dcard().getByTestId("resolve-note").fill("车辆已挪走，道路畅通");
  await dcard().getByTestId("m-resolve").tap();
  await dcard().waitFor({ state: "detached", timeout: 10000 });
  await shot(dept, "14-department-phone");
  log("the department's duty officer acknowledged and resolved the transferred case on the phone");
  current = op;
  await detail.getByTestId("detail-state").filter({ hasText: "已办结" }).waitFor({ timeout: 5000 });
  await detail.getByTestId("act-close").click();
  await detail.getByTestId("detail-state").filter({ hasText: "已结案" }).waitFor({ timeout: 5000 });
  await detail.getByTestId("act-archive").click();
  await detail.getByTestId("detail-archived").waitFor({ timeout: 5000 });
  assert((await detail.locator("[data-testid^=act-]").count()) === 0, "an archived case offers no action");
  log(`case ${handed.id} transferred to ${DEPT}, handled by the department, closed and archived`);
  await shot(op, "14-archived");
  // The statistics follow the flow: the department's row counts the transfer and the
  // supervision, and the Excel export is a workbook.
  await op.getByTestId("tab-stats").click();
  const drow = op.locator(`[data-testid=dept-stats-row][data-code="${DEPT}"]`);
  await drow.waitFor({ timeout: 10000 });
  const cells = await drow.locator("td").allInnerTexts();
  assert(cells[6] === "1" && cells[7] === "1", `the department's row counts 1 supervised, 1 transferred: ${cells}`);
  const xlsx = await op.evaluate(async (href) => {
    const r = await fetch(href);
    const b = new Uint8Array(await r.arrayBuffer());
    return { status: r.status, type: r.headers.get("content-type"), magic: String.fromCharCode(b[0], b[1]) };
  }, await op.getByTestId("stats-xlsx").getAttribute("href"));
  assert(xlsx.status === 200 && xlsx.magic === "PK" && xlsx.type.includes("spreadsheetml"), `the Excel export: ${JSON.stringify(xlsx)}`);
  log("statistics tab: the department's row and the Excel export");
  await shot(op, "14-stats");
  await op.getByTestId("tab-feed").click();

  // 15. English: the toggle changes visible labels and is remembered.
  await op.getByTestId("lang-toggle").click();
  await op.getByTestId("tab-feed").filter({ hasText: "Live feed" }).waitFor({ timeout: 2000 });
  assert((await op.getByTestId("lang-toggle").innerText()).trim() === "中文", "toggle offers 中文 back");
  await op.reload();
  await op.getByTestId("tab-feed").filter({ hasText: "Live feed" }).waitFor({ timeout: 10000 });
  await op.locator(`[data-testid=feed-row][data-case-id="${second.id}"]`).waitFor({ timeout: 10000 });
  log("English toggle works and is remembered across a reload (session kept via /me)");
  await shot(op, "15-english");

  assert(pageErrors.length === 0, `no uncaught page errors (got: ${pageErrors.join("; ")})`);
  await browser.close();
  log("all steps passed");
  process.exit(0);
} catch (e) {
  console.log(`e2e: FAILED: ${e.stack || e}`);
  if (current) await shot(current, "failure").catch(() => {});
  await browser.close().catch(() => {});
  process.exit(1);
}
