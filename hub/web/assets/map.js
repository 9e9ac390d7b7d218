// "一图式" map: the grid cells (GeoJSON, WGS-84) drawn as SVG with an equirectangular
// projection scaled by cos(latitude), case pins, and a trajectory layer. Zoom with the wheel,
// pan by dragging (both by changing the viewBox). With a configured tile server (on the local
// network: the centre has no internet) its XYZ raster tiles lie under the cells.

const NS = "http://www.w3.org/2000/svg";
const K = 10000; // SVG units per degree of latitude
const LEVELS = ["county", "township", "village", "grid", "micro_grid"];

function el(tag, attrs = {}) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) e.setAttribute(k, v);
  return e;
}

function rings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return [geometry.coordinates];
  if (geometry.type === "MultiPolygon") return geometry.coordinates;
  return [];
}

export class GridMap {
  constructor(svg) {
    this.svg = svg;
    this.svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    this.tilesLayer = el("g", { class: "tiles", "data-testid": "tiles" });
    this.cellsLayer = el("g", { class: "cells" });
    this.trackLayer = el("g", { class: "track" });
    this.pinLayer = el("g", { class: "pins" });
    // A trajectory is only drawn while the operator looks at it: on top of the pins.
    svg.append(this.tilesLayer, this.cellsLayer, this.pinLayer, this.trackLayer);
    this.tileUrl = null;
    this.tiles = new Map(); // "z/x/y" -> <image>
    this.cells = new Map(); // code -> {feature, centroid:[lon,lat]}
    this.pins = new Map(); // case id -> <g>
    this.onPinClick = null;
    this.cosLat = 1;
    this.bounds = null;
    this.view = null;
    this.installZoomPan();
    new ResizeObserver(() => this.rescale()).observe(svg);
  }

  project([lon, lat]) {
    const [minLon, , , maxLat] = this.bounds;
    return [(lon - minLon) * this.cosLat * K, (maxLat - lat) * K];
  }

  setGrid(fc) {
    this.cellsLayer.replaceChildren();
    this.cells.clear();
    const features = (fc && fc.features) || [];
    let b = [Infinity, Infinity, -Infinity, -Infinity];
    for (const f of features)
      for (const poly of rings(f.geometry))
        for (const ring of poly)
          for (const [lon, lat] of ring) {
            b = [Math.min(b[0], lon), Math.min(b[1], lat), Math.max(b[2], lon), Math.max(b[3], lat)];
          }
    if (!isFinite(b[0])) b = [102.2, 25.4, 102.6, 25.7];
    this.bounds = b;
    this.cosLat = Math.cos((((b[1] + b[3]) / 2) * Math.PI) / 180);
    // Big cells first so the small ones lie on top and take the clicks.
    const sorted = [...features].sort(
      (a, b2) => LEVELS.indexOf(a.properties?.level) - LEVELS.indexOf(b2.properties?.level),
    );
    for (const f of sorted) {
      const p = f.properties || {};
      const code = p.code ?? p.id;
      let d = "";
      let sx = 0, sy = 0, n = 0;
      for (const poly of rings(f.geometry)) {
        for (const ring of poly) {
          ring.forEach((pt, i) => {
            const [x, y] = this.project(pt);
            d += `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
          });
          d += "Z";
        }
        for (const [lon, lat] of poly[0] || []) {
          sx += lon;
          sy += lat;
          n++;
        }
      }
      const path = el("path", {
        d,
        class: `cell lvl-${p.level}`,
        "data-testid": "cell",
        "data-code": code,
        "data-level": p.level,
      });
      const title = el("title");
      title.textContent = `${p.name ?? ""} ${code}`;
      path.append(title);
      this.cellsLayer.append(path);
      this.cells.set(code, { feature: f, centroid: n ? [sx / n, sy / n] : null });
    }
    // Open on where the detail is: the villages and the grids under them (the county and
    // township outlines stay drawn around them); all of it when there are none.
    let fb = [Infinity, Infinity, -Infinity, -Infinity];
    for (const f of features) {
      if (LEVELS.indexOf(f.properties?.level) < 2) continue;
      for (const poly of rings(f.geometry))
        for (const [lon, lat] of poly[0] || [])
          fb = [Math.min(fb[0], lon), Math.min(fb[1], lat), Math.max(fb[2], lon), Math.max(fb[3], lat)];
    }
    this.home = isFinite(fb[0]) ? fb : b;
    this.fit();
  }

  /** Fits the view to the whole grid (or to [minLon,minLat,maxLon,maxLat]). */
  fit(b = this.home || this.bounds) {
    if (!b) return;
    const [x0, y1] = this.project([b[0], b[1]]);
    const [x1, y0] = this.project([b[2], b[3]]);
    const w = Math.max(x1 - x0, 50), hh = Math.max(y1 - y0, 50);
    const pad = 0.04 * Math.max(w, hh);
    this.setView([x0 - pad, y0 - pad, w + 2 * pad, hh + 2 * pad]);
  }

  /** Centres the view on [lon, lat], zoomed to about `span` degrees across (never zooms out). */
  focus(ll, span = 0.03) {
    if (!ll || !this.bounds || !this.view) return;
    const [x, y] = this.project(ll);
    const w = Math.min(this.view[2], span * K);
    const hh = (w * this.view[3]) / this.view[2];
    this.setView([x - w / 2, y - hh / 2, w, hh]);
  }

  setView(v) {
    this.view = v;
    this.svg.setAttribute("viewBox", v.map((n) => n.toFixed(2)).join(" "));
    this.rescale();
  }

  /** SVG units per screen pixel. */
  unit() {
    if (!this.view) return 1;
    const r = this.svg.getBoundingClientRect();
    if (!r.width || !r.height) return this.view[2] / 800;
    return Math.max(this.view[2] / r.width, this.view[3] / r.height);
  }

  /** Keeps pins and markers the same size on screen whatever the zoom; redraws the tiles. */
  rescale() {
    const u = this.unit();
    this.svg.style.setProperty("--u", u);
    for (const g of this.svg.querySelectorAll("g.marker")) {
      g.setAttribute("transform", `translate(${g.dataset.x},${g.dataset.y}) scale(${u})`);
    }
    this.drawTiles();
  }

  /** Draws an XYZ tile server's tiles under the cells; `url` has {z}, {x} and {y}. */
  setTiles(url) {
    this.tileUrl = url || null;
    this.svg.classList.toggle("has-tiles", !!this.tileUrl);
    this.tilesLayer.replaceChildren();
    this.tiles.clear();
    this.drawTiles();
  }

  /**
   * The tiles that cover what is on screen, at the zoom where a tile is about 256 screen
   * pixels wide. Tiles are Web Mercator; the map is equirectangular, so each tile is placed
   * by its exact corners (at city scale the stretch inside one tile is far below a pixel).
   */
  drawTiles() {
    if (!this.tileUrl || !this.view || !this.bounds) return;
    const r = this.svg.getBoundingClientRect();
    if (!r.width || !r.height) return;
    const s = this.unit();
    const [vx, vy, vw, vh] = this.view;
    // What is visible: the viewBox grown to the element's aspect ("meet").
    const cx = vx + vw / 2, cy = vy + vh / 2;
    const x0 = cx - (r.width * s) / 2, x1 = cx + (r.width * s) / 2;
    const y0 = cy - (r.height * s) / 2, y1 = cy + (r.height * s) / 2;
    const [minLon, , , maxLat] = this.bounds;
    const lonAt = (x) => minLon + x / (this.cosLat * K);
    const latAt = (y) => Math.max(-85, Math.min(85, maxLat - y / K));
    const pxPerDegLon = (this.cosLat * K) / s;
    const z = Math.max(0, Math.min(19, Math.round(Math.log2((360 * pxPerDegLon) / 256))));
    const n = 2 ** z;
    const tx = (lon) => Math.floor(((lon + 180) / 360) * n);
    const ty = (lat) => {
      const a = (lat * Math.PI) / 180;
      return Math.floor(((1 - Math.log(Math.tan(a) + 1 / Math.cos(a)) / Math.PI) / 2) * n);
    };
    const clamp = (i) => Math.max(0, Math.min(n - 1, i));
    const [ax, bx] = [clamp(tx(lonAt(x0))), clamp(tx(lonAt(x1)))];
    const [ay, by] = [clamp(ty(latAt(y0))), clamp(ty(latAt(y1)))];
    // A screen holds a few dozen tiles; more means a degenerate view, not a map to fetch.
    if ((bx - ax + 1) * (by - ay + 1) > 150) return;
    const lonOf = (x) => (x / n) * 360 - 180;
    const latOf = (y) => (Math.atan(Math.sinh(Math.PI * (1 - (2 * y) / n))) * 180) / Math.PI;
    const want = new Set();
    for (let x = ax; x <= bx; x++) {
      for (let y = ay; y <= by; y++) {
        const key = `${z}/${x}/${y}`;
        want.add(key);
        if (this.tiles.has(key)) continue;
        const [px0, py0] = this.project([lonOf(x), latOf(y)]);
        const [px1, py1] = this.project([lonOf(x + 1), latOf(y + 1)]);
        const href = this.tileUrl.replace("{z}", z).replace("{x}", x).replace("{y}", y);
        const img = el("image", {
          href,
          x: px0.toFixed(2),
          y: py0.toFixed(2),
          width: (px1 - px0).toFixed(2),
          height: (py1 - py0).toFixed(2),
          preserveAspectRatio: "none",
          "data-tile": key,
        });
        this.tilesLayer.append(img);
        this.tiles.set(key, img);
      }
    }
    for (const [key, img] of this.tiles) {
      if (!want.has(key)) {
        img.remove();
        this.tiles.delete(key);
      }
    }
  }

  installZoomPan() {
    const svg = this.svg;
    const toSvg = (cx, cy) => {
      const r = svg.getBoundingClientRect();
      const [vx, vy, vw, vh] = this.view;
      const s = Math.max(vw / r.width, vh / r.height);
      const ox = vx + vw / 2 - (r.width * s) / 2;
      const oy = vy + vh / 2 - (r.height * s) / 2;
      return [ox + (cx - r.left) * s, oy + (cy - r.top) * s];
    };
    svg.addEventListener(
      "wheel",
      (e) => {
        if (!this.view) return;
        e.preventDefault();
        const f = Math.exp(Math.sign(e.deltaY) * 0.2);
        const [px, py] = toSvg(e.clientX, e.clientY);
        const [vx, vy, vw, vh] = this.view;
        this.setView([px - (px - vx) * f, py - (py - vy) * f, vw * f, vh * f]);
      },
      { passive: false },
    );
    let drag = null;
    svg.addEventListener("pointerdown", (e) => {
      if (!this.view || e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, view: this.view, moved: false, id: e.pointerId };
    });
    svg.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) svg.setPointerCapture(drag.id);
      drag.moved = true;
      const s = this.unit();
      const [vx, vy, vw, vh] = drag.view;
      this.setView([vx - dx * s, vy - dy * s, vw, vh]);
    });
    const end = (e) => {
      if (drag && drag.moved) e.stopPropagation();
      drag = null;
    };
    svg.addEventListener("pointerup", end);
    svg.addEventListener("pointercancel", end);
  }

  /** Where a case goes on the map: its location, else its cell's centroid. */
  caseLonLat(c) {
    if (c.location && isFinite(c.location.lon)) return [c.location.lon, c.location.lat];
    const code = c.cell?.code ?? c.path?.[c.path.length - 1]?.code;
    const cell = code && this.cells.get(code);
    if (cell && cell.centroid) return cell.centroid;
    for (const p of [...(c.path || [])].reverse()) {
      const x = this.cells.get(p.code);
      if (x && x.centroid) return x.centroid;
    }
    return null;
  }

  marker(x, y, cls) {
    const g = el("g", { class: `marker ${cls}` });
    g.dataset.x = x.toFixed(2);
    g.dataset.y = y.toFixed(2);
    g.setAttribute("transform", `translate(${g.dataset.x},${g.dataset.y}) scale(${this.unit()})`);
    return g;
  }

  /** Adds or updates the pin of case `c`; `ds` is the deadline state to show. */
  upsertPin(c, ds, selected) {
    const ll = this.caseLonLat(c);
    let g = this.pins.get(c.id);
    if (!ll || !this.bounds) {
      if (g) g.remove();
      this.pins.delete(c.id);
      return;
    }
    const [x, y] = this.project(ll);
    if (!g) {
      g = this.marker(x, y, "pin");
      g.setAttribute("data-testid", "pin");
      g.append(el("circle", { r: 9, class: "halo" }), el("circle", { r: 6, class: "dot" }), el("title"));
      g.addEventListener("click", () => this.onPinClick && this.onPinClick(c.id));
      this.pinLayer.append(g);
      this.pins.set(c.id, g);
    } else if (g.dataset.x !== x.toFixed(2) || g.dataset.y !== y.toFixed(2)) {
      g.dataset.x = x.toFixed(2);
      g.dataset.y = y.toFixed(2);
      g.setAttribute("transform", `translate(${g.dataset.x},${g.dataset.y}) scale(${this.unit()})`);
    }
    g.setAttribute("data-case-id", c.id);
    g.setAttribute("data-deadline-state", ds);
    g.setAttribute("data-level", c.level ?? "");
    g.setAttribute("data-state", c.state);
    g.setAttribute("class", `marker pin dl-${ds} sev-${c.severity}${selected ? " selected" : ""}`);
    g.querySelector("title").textContent = `${c.id} ${c.rule ?? ""} ${c.cell?.name ?? ""}`;
  }

  removePin(id) {
    const g = this.pins.get(id);
    if (g) g.remove();
    this.pins.delete(id);
  }

  clearPins() {
    this.pinLayer.replaceChildren();
    this.pins.clear();
  }

  /** Sightings in time order: numbered points joined by a polyline; fits the view to them. */
  showTrack(points) {
    this.trackLayer.replaceChildren();
    const pts = points.filter((p) => p && isFinite(p[0]) && isFinite(p[1]));
    if (!pts.length || !this.bounds) return;
    const xy = pts.map((p) => this.project(p));
    this.trackLayer.append(
      el("polyline", {
        points: xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "),
        class: "track-line",
        "data-testid": "track-line",
      }),
    );
    xy.forEach(([x, y], i) => {
      const g = this.marker(x, y, "track-pt");
      g.setAttribute("data-testid", "track-point");
      g.setAttribute("data-n", i + 1);
      const tx = el("text", { "text-anchor": "middle", dy: "4" });
      tx.textContent = String(i + 1);
      g.append(el("circle", { r: 9 }), tx);
      this.trackLayer.append(g);
    });
    let b = [Infinity, Infinity, -Infinity, -Infinity];
    for (const [lon, lat] of pts)
      b = [Math.min(b[0], lon), Math.min(b[1], lat), Math.max(b[2], lon), Math.max(b[3], lat)];
    // A margin keeps the first and last points (and their numbers) off the map's edge.
    const m = Math.max(0.002, 0.15 * Math.max(b[2] - b[0], b[3] - b[1]));
    this.fit([b[0] - m, b[1] - m, b[2] + m, b[3] + m]);
  }

  clearTrack() {
    this.trackLayer.replaceChildren();
  }
}
