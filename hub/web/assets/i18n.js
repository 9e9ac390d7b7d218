// Every UI string of the dashboard (index.html) and the grid-member page (m.html).
// Chinese is the default; English is switched with the toggle and remembered in localStorage.

const zh = {
  "app.title": "网格化管理 · 告警调度中心",
  "m.title": "网格员工作台",
  "lang.toggle": "English",
  "login.title": "登录",
  "login.username": "用户名",
  "login.password": "密码",
  "login.submit": "登录",
  "login.failed": "登录失败",
  "logout": "退出",
  "tab.feed": "实时告警",
  "tab.queues": "分级队列",
  "tab.sites": "站点与摄像头",
  "tab.tags": "电动车轨迹",
  "tab.stats": "统计",
  "map.title": "一图式",
  "map.fit": "复位",
  "feed.empty": "暂无未办结案件",
  "feed.live": "实时",
  "feed.offline": "连接中断，正在重连…",
  "queues.filter": "筛选（网格、规则、编号）",
  "queues.all": "全部",
  "detail.close": "关闭",
  "detail.snapshot": "现场抓拍",
  "detail.noSnapshot": "无抓拍图片",
  "detail.fields": "案件信息",
  "detail.timeline": "处置时间线",
  "detail.deliveries": "通知送达",
  "detail.photos": "现场照片",
  "detail.actions": "处置操作",
  "detail.note": "备注 / 处置说明",
  "detail.until": "延期至",
  "detail.returnCell": "退回至网格编码",
  "detail.alerts": "告警次数",
  "f.id": "案件编号",
  "f.state": "状态",
  "f.severity": "级别",
  "f.kind": "类型",
  "f.rule": "规则",
  "f.site": "站点",
  "f.source": "来源",
  "f.cell": "当前网格",
  "f.path": "网格路径",
  "f.level": "层级",
  "f.opened": "立案时间",
  "f.updated": "更新时间",
  "f.deadline": "时限",
  "f.handler": "处置人",
  "f.tag": "电子标签",
  "f.label": "目标",
  "f.location": "位置",
  "act.acknowledge": "签收",
  "act.start_handling": "开始处置",
  "act.resolve": "办结",
  "act.close": "结案",
  "act.reopen": "重新打开",
  "act.return": "退回",
  "act.extend": "延期",
  "act.comment": "备注",
  "act.done": "操作成功",
  "audit.open": "立案",
  "audit.dispatch": "派发",
  "audit.notify": "通知",
  "audit.nobody_on_duty": "无人值班",
  "audit.escalate": "超时上报",
  "audit.overdue_at_top": "顶层超时",
  "audit.acknowledge": "签收",
  "audit.start_handling": "开始处置",
  "audit.resolve": "办结",
  "audit.close": "结案",
  "audit.reopen": "重新打开",
  "audit.return": "退回",
  "audit.extend": "延期",
  "audit.comment": "备注",
  "state.new": "新建",
  "state.dispatched": "已派发",
  "state.acknowledged": "已签收",
  "state.handling": "处置中",
  "state.resolved": "已办结",
  "state.closed": "已结案",
  "sev.info": "提示",
  "sev.warning": "警告",
  "sev.minor": "一般",
  "sev.major": "重要",
  "sev.critical": "紧急",
  "level.county": "县",
  "level.township": "乡镇",
  "level.village": "村/社区",
  "level.grid": "网格",
  "level.micro_grid": "微网格",
  "kind.zone": "区域入侵",
  "kind.line": "越线",
  "kind.loiter": "徘徊",
  "kind.crowd": "人员聚集",
  "kind.camera_offline": "摄像头离线",
  "kind.watchlist": "布控车辆",
  "kind.possible_theft": "疑似被盗",
  "kind.patrol": "巡查上报",
  "dl.on_time": "正常",
  "dl.near": "临期",
  "dl.overdue": "超期",
  "dl.none": "无时限",
  "dl.top": "已超期，已无更高层级",
  "dl.ack": "签收时限",
  "dl.resolve": "办结时限",
  "sites.online": "在线",
  "sites.offline": "离线",
  "sites.lastSeen": "最后上线",
  "sites.cameras": "摄像头",
  "sites.readers": "读卡器",
  "sites.empty": "暂无站点",
  "tags.tag": "标签号",
  "tags.show": "查询轨迹",
  "tags.sightings": "识读记录",
  "tags.none": "无识读记录",
  "tags.watchlist": "布控名单",
  "tags.caseRef": "关联案件",
  "tags.note": "说明",
  "tags.add": "加入布控",
  "tags.remove": "撤控",
  "tags.sitesNotified": "已下发站点数",
  "stats.cell": "网格",
  "stats.cases": "案件",
  "stats.open": "未办结",
  "stats.overdue": "超期",
  "stats.ack": "平均签收",
  "stats.resolve": "平均办结",
  "stats.level": "统计层级",
  "stats.red": "红榜（最好）",
  "stats.black": "黑榜（最差）",
  "stats.reload": "刷新",
  "m.mine": "我的待办",
  "m.report": "巡查上报",
  "m.empty": "暂无待办案件",
  "m.new": "新案件！",
  "m.photo": "拍照",
  "m.resolveNote": "处置说明",
  "m.category": "类别",
  "m.note": "情况说明",
  "m.lon": "经度",
  "m.lat": "纬度",
  "m.locate": "获取定位",
  "m.locating": "正在定位…",
  "m.locateFailed": "无法定位，请手动填写经纬度",
  "m.submit": "提交",
  "m.submitted": "已上报",
  "cat.fire_hazard": "消防隐患",
  "cat.road_damage": "道路损坏",
  "cat.dispute": "矛盾纠纷",
  "cat.illegal_parking": "违章停放",
  "cat.suspicious": "可疑情况",
  "cat.other": "其他",
  "err.generic": "出错了",
  "loading": "加载中…",
  "ago.s": "秒前",
  "ago.m": "分钟前",
  "ago.h": "小时前",
  "left": "剩余",
  "over": "已超",
};

const en = {
  "app.title": "Grid Management · Alert Dispatch",
  "m.title": "Grid member",
  "lang.toggle": "中文",
  "login.title": "Sign in",
  "login.username": "Username",
  "login.password": "Password",
  "login.submit": "Sign in",
  "login.failed": "Sign-in failed",
  "logout": "Sign out",
  "tab.feed": "Live feed",
  "tab.queues": "Queues",
  "tab.sites": "Sites & cameras",
  "tab.tags": "E-bike tracks",
  "tab.stats": "Statistics",
  "map.title": "Map",
  "map.fit": "Reset",
  "feed.empty": "No open cases",
  "feed.live": "Live",
  "feed.offline": "Disconnected, reconnecting…",
  "queues.filter": "Filter (cell, rule, id)",
  "queues.all": "All",
  "detail.close": "Close",
  "detail.snapshot": "Snapshot",
  "detail.noSnapshot": "No snapshot",
  "detail.fields": "Case",
  "detail.timeline": "Timeline",
  "detail.deliveries": "Deliveries",
  "detail.photos": "Photos",
  "detail.actions": "Actions",
  "detail.note": "Note",
  "detail.until": "Extend until",
  "detail.returnCell": "Return to cell code",
  "detail.alerts": "Alerts",
  "f.id": "Case",
  "f.state": "State",
  "f.severity": "Severity",
  "f.kind": "Kind",
  "f.rule": "Rule",
  "f.site": "Site",
  "f.source": "Source",
  "f.cell": "Cell",
  "f.path": "Path",
  "f.level": "Level",
  "f.opened": "Opened",
  "f.updated": "Updated",
  "f.deadline": "Deadline",
  "f.handler": "Handler",
  "f.tag": "Tag",
  "f.label": "Object",
  "f.location": "Location",
  "act.acknowledge": "Acknowledge",
  "act.start_handling": "Start handling",
  "act.resolve": "Resolve",
  "act.close": "Close",
  "act.reopen": "Reopen",
  "act.return": "Return",
  "act.extend": "Extend",
  "act.comment": "Comment",
  "act.done": "Done",
  "audit.open": "Opened",
  "audit.dispatch": "Dispatched",
  "audit.notify": "Notified",
  "audit.nobody_on_duty": "Nobody on duty",
  "audit.escalate": "Escalated",
  "audit.overdue_at_top": "Overdue at top",
  "audit.acknowledge": "Acknowledged",
  "audit.start_handling": "Handling started",
  "audit.resolve": "Resolved",
  "audit.close": "Closed",
  "audit.reopen": "Reopened",
  "audit.return": "Returned",
  "audit.extend": "Extended",
  "audit.comment": "Comment",
  "state.new": "New",
  "state.dispatched": "Dispatched",
  "state.acknowledged": "Acknowledged",
  "state.handling": "Handling",
  "state.resolved": "Resolved",
  "state.closed": "Closed",
  "sev.info": "Info",
  "sev.warning": "Warning",
  "sev.minor": "Minor",
  "sev.major": "Major",
  "sev.critical": "Critical",
  "level.county": "County",
  "level.township": "Township",
  "level.village": "Village",
  "level.grid": "Grid",
  "level.micro_grid": "Micro-grid",
  "kind.zone": "Zone intrusion",
  "kind.line": "Line crossing",
  "kind.loiter": "Loitering",
  "kind.crowd": "Crowd",
  "kind.camera_offline": "Camera offline",
  "kind.watchlist": "Watchlisted tag",
  "kind.possible_theft": "Possible theft",
  "kind.patrol": "Patrol report",
  "dl.on_time": "On time",
  "dl.near": "Near",
  "dl.overdue": "Overdue",
  "dl.none": "No deadline",
  "dl.top": "Overdue, no higher level",
  "dl.ack": "Ack by",
  "dl.resolve": "Resolve by",
  "sites.online": "Online",
  "sites.offline": "Offline",
  "sites.lastSeen": "Last seen",
  "sites.cameras": "Cameras",
  "sites.readers": "Readers",
  "sites.empty": "No sites",
  "tags.tag": "Tag",
  "tags.show": "Show track",
  "tags.sightings": "Sightings",
  "tags.none": "No sightings",
  "tags.watchlist": "Watchlist",
  "tags.caseRef": "Case ref",
  "tags.note": "Note",
  "tags.add": "Add",
  "tags.remove": "Remove",
  "tags.sitesNotified": "Sites updated",
  "stats.cell": "Cell",
  "stats.cases": "Cases",
  "stats.open": "Open",
  "stats.overdue": "Overdue",
  "stats.ack": "Mean ack",
  "stats.resolve": "Mean resolve",
  "stats.level": "Level",
  "stats.red": "Red list (best)",
  "stats.black": "Black list (worst)",
  "stats.reload": "Reload",
  "m.mine": "My open cases",
  "m.report": "Patrol report",
  "m.empty": "Nothing to do",
  "m.new": "New case!",
  "m.photo": "Photo",
  "m.resolveNote": "What was done",
  "m.category": "Category",
  "m.note": "Note",
  "m.lon": "Longitude",
  "m.lat": "Latitude",
  "m.locate": "Locate me",
  "m.locating": "Locating…",
  "m.locateFailed": "No position; enter longitude/latitude",
  "m.submit": "Submit",
  "m.submitted": "Reported",
  "cat.fire_hazard": "Fire hazard",
  "cat.road_damage": "Road damage",
  "cat.dispute": "Dispute",
  "cat.illegal_parking": "Illegal parking",
  "cat.suspicious": "Suspicious",
  "cat.other": "Other",
  "err.generic": "Error",
  "loading": "Loading…",
  "ago.s": "s ago",
  "ago.m": "min ago",
  "ago.h": "h ago",
  "left": "left",
  "over": "over",
};

export const TABLES = { "zh-CN": zh, en };
const KEY = "hub.lang";

export function getLang() {
  const l = localStorage.getItem(KEY);
  return l === "en" ? "en" : "zh-CN";
}

export function setLang(lang) {
  localStorage.setItem(KEY, lang);
  applyI18n(document);
}

/** The string for `key` in the current language (falls back to Chinese, then the key). */
export function t(key) {
  const lang = getLang();
  return TABLES[lang][key] ?? zh[key] ?? key;
}

/** `t(prefix + value)` when known, else the raw value (unknown enum values show as they are). */
export function tv(prefix, value) {
  if (value == null) return "";
  const k = prefix + value;
  const s = TABLES[getLang()][k] ?? zh[k];
  return s ?? String(value);
}

/** A case's rule as people read it: a patrol report's rule is its category. */
export function ruleLabel(c) {
  if (!c.rule) return "";
  return c.kind === "patrol" ? tv("cat.", c.rule) : c.rule;
}

/** Fills `[data-i18n]` text, `[data-i18n-ph]` placeholders and `[data-i18n-title]` titles. */
export function applyI18n(root) {
  document.documentElement.lang = getLang();
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-ph]")) el.placeholder = t(el.dataset.i18nPh);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
}

export function toggleLang() {
  setLang(getLang() === "en" ? "zh-CN" : "en");
}

/** Local date-time, short. */
export function fmtTime(ms) {
  if (ms == null) return "";
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return String(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** "12 s ago" style. */
export function fmtAgo(ms, now = Date.now()) {
  if (ms == null) return "";
  if (typeof ms !== "number") ms = Date.parse(ms);
  if (Number.isNaN(ms)) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} ${t("ago.s")}`;
  if (s < 3600) return `${Math.floor(s / 60)} ${t("ago.m")}`;
  return `${Math.floor(s / 3600)} ${t("ago.h")}`;
}

/** A duration in ms as "1h 02m", "3m 05s", "12s". */
export function fmtDur(ms) {
  if (ms == null) return "—";
  const s = Math.round(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const p = (n) => String(n).padStart(2, "0");
  if (h) return `${h}h ${p(m)}m`;
  if (m) return `${m}m ${p(r)}s`;
  return `${r}s`;
}
