// The map of a collection on a canvas: one dot per file, coloured by cluster, cluster
// names at their centres, a legend whose boxes show or hide clusters, a picture and the
// name on hover, the file on click, zoom with the wheel and pan by dragging.
// Data: an inline <script type="application/json" id="map-data"> (a written map.html,
// offline) or GET /api/map with this page's query (the web app).
"use strict";

(function () {
  const PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#17becf", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
    "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#fd8d3c",
  ];
  const OTHER = -1;
  const canvas = document.getElementById("map");
  const ctx = canvas.getContext("2d");
  const tip = document.getElementById("tip");
  const legend = document.getElementById("legend");
  const info = document.getElementById("info");
  let data = null;
  const hidden = new Set();
  const view = { scale: 1, dx: 0, dy: 0 };
  let drag = null;

  function colour(c) {
    return c === OTHER ? "#b0b0b0" : PALETTE[c % PALETTE.length];
  }

  function screen(p) {
    const w = canvas.clientWidth, h = canvas.clientHeight;
    const s = (Math.min(w, h) / 2 - 30) * view.scale;
    return [w / 2 + p.x * s + view.dx, h / 2 - p.y * s + view.dy];
  }

  function draw() {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== w * ratio || canvas.height !== h * ratio) {
      canvas.width = w * ratio;
      canvas.height = h * ratio;
    }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const r = data.points.length > 5000 ? 1.8 : 3.5;
    const centres = new Map();
    for (const p of data.points) {
      if (hidden.has(p.cluster)) continue;
      const [sx, sy] = screen(p);
      p.sx = sx;
      p.sy = sy;
      ctx.fillStyle = colour(p.cluster);
      ctx.beginPath();
      ctx.arc(sx, sy, r, 0, 2 * Math.PI);
      ctx.fill();
      if (p.cluster !== OTHER) {
        const c = centres.get(p.cluster) || [0, 0, 0];
        centres.set(p.cluster, [c[0] + sx, c[1] + sy, c[2] + 1]);
      }
    }
    ctx.font = "bold 13px system-ui, sans-serif";
    ctx.textAlign = "center";
    for (const cl of data.clusters) {
      const c = centres.get(cl.id);
      if (!c) continue;
      const x = c[0] / c[2], y = c[1] / c[2];
      ctx.lineWidth = 4;
      ctx.strokeStyle = "rgba(255,255,255,0.85)";
      ctx.strokeText(cl.label, x, y);
      ctx.fillStyle = "#111";
      ctx.fillText(cl.label, x, y);
    }
  }

  function nearest(mx, my) {
    let best = null, bestD = 64;
    for (const p of data.points) {
      if (hidden.has(p.cluster) || p.sx === undefined) continue;
      const d = (p.sx - mx) ** 2 + (p.sy - my) ** 2;
      if (d < bestD) {
        bestD = d;
        best = p;
      }
    }
    return best;
  }

  function picture(p) {
    if (data.thumbs) return data.thumbs[p.id] || null;
    if (p.type === "image" || p.type === "video") return "/api/files/" + p.id + "/thumb?size=160";
    return null;
  }

  function opener(p) {
    return p.url || "/api/files/" + p.id + "/media";
  }

  function showTip(p, mx, my) {
    if (!p) {
      tip.hidden = true;
      return;
    }
    tip.replaceChildren();
    const src = picture(p);
    if (src) {
      const img = document.createElement("img");
      img.src = src;
      img.alt = "";
      tip.append(img);
    }
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = p.path.split(/[\\/]/).pop();
    const sub = document.createElement("div");
    sub.className = "sub";
    const cl = data.clusters.find((c) => c.id === p.cluster);
    sub.textContent = p.type + (cl ? " · " + cl.label : "");
    tip.append(name, sub);
    tip.hidden = false;
    const w = canvas.clientWidth;
    tip.style.left = Math.min(mx + 14, w - 240) + "px";
    tip.style.top = my + 14 + "px";
  }

  function buildLegend() {
    legend.replaceChildren();
    const counts = new Map();
    for (const p of data.points) counts.set(p.cluster, (counts.get(p.cluster) || 0) + 1);
    for (const cl of data.clusters) {
      const row = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = true;
      box.dataset.cluster = String(cl.id);
      box.addEventListener("change", () => {
        if (box.checked) hidden.delete(cl.id);
        else hidden.add(cl.id);
        draw();
      });
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour(cl.id);
      const text = document.createElement("span");
      text.textContent = cl.label + " (" + (counts.get(cl.id) || 0) + ")";
      row.append(box, swatch, text);
      legend.append(row);
    }
    info.textContent =
      data.space + " space · " + data.points.length + " files · " + data.method +
      (data.unplaced ? " · " + data.unplaced + " not placed yet" : "");
  }

  function start(loaded) {
    data = loaded;
    buildLegend();
    draw();
    // where each shown point is on the screen (for a test or a script driving the page)
    window.mapPoints = () =>
      data.points
        .filter((p) => !hidden.has(p.cluster))
        .map((p) => ({ id: p.id, type: p.type, cluster: p.cluster, x: p.sx, y: p.sy }));
    document.body.dataset.ready = "1";
  }

  canvas.addEventListener("mousemove", (e) => {
    const rect = canvas.getBoundingClientRect();
    const mx = e.clientX - rect.left, my = e.clientY - rect.top;
    if (drag) {
      view.dx = drag.dx + mx - drag.x;
      view.dy = drag.dy + my - drag.y;
      drag.moved = true;
      draw();
      return;
    }
    const p = nearest(mx, my);
    canvas.style.cursor = p ? "pointer" : "default";
    showTip(p, mx, my);
  });
  canvas.addEventListener("mouseleave", () => showTip(null));
  canvas.addEventListener("mousedown", (e) => {
    const rect = canvas.getBoundingClientRect();
    drag = { x: e.clientX - rect.left, y: e.clientY - rect.top, dx: view.dx, dy: view.dy };
  });
  window.addEventListener("mouseup", () => {
    setTimeout(() => (drag = null), 0);
  });
  canvas.addEventListener("click", (e) => {
    if (drag && drag.moved) return;
    const rect = canvas.getBoundingClientRect();
    const p = nearest(e.clientX - rect.left, e.clientY - rect.top);
    if (p) window.open(opener(p), "_blank", "noopener");
  });
  canvas.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault();
      const rect = canvas.getBoundingClientRect();
      const mx = e.clientX - rect.left - canvas.clientWidth / 2;
      const my = e.clientY - rect.top - canvas.clientHeight / 2;
      const k = e.deltaY < 0 ? 1.2 : 1 / 1.2;
      view.dx = mx - (mx - view.dx) * k;
      view.dy = my - (my - view.dy) * k;
      view.scale *= k;
      draw();
    },
    { passive: false }
  );
  window.addEventListener("resize", () => data && draw());

  const inline = document.getElementById("map-data");
  if (inline) {
    start(JSON.parse(inline.textContent));
  } else {
    fetch("/api/map" + window.location.search, { credentials: "same-origin" })
      .then(async (r) => {
        const body = await r.json();
        if (!r.ok) throw new Error(body.error || r.statusText);
        start(body);
      })
      .catch((err) => {
        info.textContent = String(err.message || err);
        document.body.dataset.ready = "error";
      });
  }
})();
