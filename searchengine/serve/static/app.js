// The search page: plain JavaScript, no build step, nothing loaded from elsewhere.
// The address holds the query (?q=..&type=..), so a search can be bookmarked and shared;
// every piece of a hit is put on the page as text, never as HTML.
"use strict";

const FIELDS = ["q", "path", "not", "after", "before", "min_duration", "max_duration", "min_score", "k", "place"];
const FILTERS = ["k", "type", "path", "after", "before", "min_duration", "max_duration"];
const TYPE_NAMES = { text: "document", image: "image", audio: "sound", video: "video" };

const $ = (sel) => document.querySelector(sel);
const form = $("#search");
const results = $("#results");
const statusView = $("#status");
const message = $("#message");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
}

function say(text, isError = false) {
  message.textContent = text;
  message.classList.toggle("error", isError);
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

// ---- the address and the form --------------------------------------------------------------

function chips() { return [...document.querySelectorAll(".chip")]; }

function formState() {
  const params = new URLSearchParams();
  for (const name of FIELDS) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  const types = chips().filter((c) => c.getAttribute("aria-pressed") === "true").map((c) => c.dataset.type);
  if (types.length) params.set("type", types.join(","));
  if (form.elements.sort.value !== "relevance") params.set("sort", form.elements.sort.value);
  if (!form.elements.diverse.checked) params.set("diverse", "false");
  if (form.elements.literal.checked) params.set("literal", "true");
  return params;
}

function showState(params) {
  for (const name of FIELDS) form.elements[name].value = params.get(name) || "";
  const types = (params.get("type") || "").split(",");
  for (const chip of chips()) chip.setAttribute("aria-pressed", String(types.includes(chip.dataset.type)));
  form.elements.sort.value = ["date", "-date"].includes(params.get("sort")) ? params.get("sort") : "relevance";
  form.elements.diverse.checked = params.get("diverse") !== "false";
  form.elements.literal.checked = params.get("literal") === "true";
  const advanced = [...FIELDS, "sort", "diverse", "literal"].some((f) => f !== "q" && params.get(f));
  if (advanced) $("#filters").open = true;
}

function current() { return new URLSearchParams(location.search); }

function go(params) {
  const query = params.toString();
  history.pushState(null, "", query ? `?${query}` : location.pathname);
  run(params);
}

function pick(params, names) {
  const out = new URLSearchParams();
  for (const name of names) if (params.get(name)) out.set(name, params.get(name));
  return out;
}

// ---- queries ---------------------------------------------------------------------------------

async function run(params) {
  const view = params.get("view");
  $("#show-status").setAttribute("aria-pressed", String(view === "status"));
  statusView.hidden = view !== "status";
  results.hidden = view === "status";
  if (view === "status") return showStatus();
  const similar = params.get("similar");
  try {
    if (similar) {
      say("Looking for files like this one…");
      const [answer, file] = await Promise.all([
        getJSON(`/api/similar/${encodeURIComponent(similar)}?${pick(params, FILTERS)}`),
        getJSON(`/api/files/${encodeURIComponent(similar)}`),
      ]);
      return showHits(answer, `like ${file.name}`);
    }
    if (params.get("q") || params.get("like")) {
      say("Searching…");
      const api = pick(params, [...FIELDS, "type", "like", "sort", "literal", "diverse"]);
      return showHits(await getJSON(`/api/search?${api}`), params.get("q") ? `for “${params.get("q")}”` : "");
    }
    results.replaceChildren();
    say("Type what you are looking for, or drop a file on the page to find files like it.");
  } catch (error) {
    results.replaceChildren();
    say(error.message, true);
  }
}

async function searchByExample(file) {
  const params = formState();
  params.delete("q");
  history.pushState(null, "", `?${params}`);
  showState(params);
  const body = new FormData();
  body.append("file", file, file.name);
  say(`Looking for files like ${file.name}…`);
  statusView.hidden = true;
  results.hidden = false;
  try {
    const answer = await getJSON(`/api/similar?${pick(params, FILTERS)}`, { method: "POST", body });
    showHits(answer, `like ${file.name} (dropped, not indexed)`);
  } catch (error) {
    results.replaceChildren();
    say(error.message, true);
  }
}

function moreLike(id) {
  const params = pick(formState(), FILTERS);
  params.set("similar", id);
  showState(params);
  go(params);
  window.scrollTo(0, 0);
}

// ---- hits ------------------------------------------------------------------------------------

const media = (id) => `/api/files/${id}/media`;
const thumb = (id, at = 0, size = 360) => `/api/files/${id}/thumb?at=${at}&size=${size}`;

function showHits(answer, what) {
  const hits = answer.hits;
  const cut = answer.cut ? ` · ${answer.cut} more below the cutoff` : "";
  const read = answer.reading ? ` · read as ${answer.reading.described}` : "";
  say(`${hits.length ? hits.length : "No"} file${hits.length === 1 ? "" : "s"} ${what}${read} · ${answer.took_ms} ms${cut}`);
  results.replaceChildren(...hits.map(card));
}

function highlight(text, words) {
  const frag = document.createDocumentFragment();
  if (!words || !words.length) { frag.append(text); return frag; }
  const escaped = [...words].sort((a, b) => b.length - a.length).map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}_])(?:${escaped.join("|")})(?![\\p{L}\\p{N}_])`, "giu");
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    frag.append(text.slice(last, match.index), el("mark", {}, match[0]));
    last = match.index + match[0].length;
  }
  frag.append(text.slice(last));
  return frag;
}

function seekAndPlay(player, at) {
  const start = () => { player.currentTime = at; player.play().catch(() => {}); };
  if (player.readyState >= 1) return start();
  player.addEventListener("loadedmetadata", start, { once: true });
  if (player.preload === "none") {  // a sound waits unloaded until asked for
    player.preload = "auto";
    player.load();
  }
}

// Where a matched passage is: its PDF page, or its box in a picture or frame (text read by OCR).
function where(seg) {
  if (seg.page !== undefined) return { label: `p. ${seg.page}`, title: `page ${seg.page}` };
  if (Array.isArray(seg.box) && seg.box.length === 4) {
    const [x, y, w, h] = seg.box;
    return { label: `box ${x},${y} ${w}×${h}`, title: "where the text is, in pixels: x,y width×height" };
  }
  return null;
}

function card(hit) {
  const timed = hit.segments.filter((s) => s.start !== undefined && (hit.type === "audio" || hit.type === "video"));
  const first = timed.length ? timed[0].start : 0;
  const node = el("article", { class: `hit hit-${hit.type}`, "data-id": hit.id, "aria-label": hit.name });
  let player = null;

  function playAt(at) {
    if (hit.type === "video" && !player) {
      player = el("video", { controls: true, preload: "auto", src: `${media(hit.id)}#t=${at}` });
      node.querySelector(".visual").replaceWith(player);
    }
    seekAndPlay(player, at);
    player.focus();
  }

  if (hit.type === "image") {
    node.append(el("button", { class: "visual", type: "button", title: "More like this",
                               "aria-label": `More like ${hit.name}`, onclick: () => moreLike(hit.id) },
      el("img", { src: thumb(hit.id), alt: hit.name, loading: "lazy" })));
  } else if (hit.type === "video") {
    node.append(el("button", { class: "visual", type: "button", "aria-label": `Play ${hit.name} from ${clock(first)}`,
                               onclick: () => playAt(first) },
      el("img", { src: thumb(hit.id, first), alt: `${hit.name} at ${clock(first)}`, loading: "lazy" }),
      el("span", { class: "badge" }, `▶ ${clock(first)}`)));
  }

  const body = el("div", { class: "body" });
  body.append(
    el("div", { class: "title" },
      el("a", { class: "name", href: media(hit.id), target: "_blank", rel: "noopener", title: hit.path }, hit.name),
      el("span", { class: "score", title: "score (0 to 1)" }, hit.score.toFixed(2))),
    el("span", { class: "type" }, (TYPE_NAMES[hit.type] || hit.type) + (hit.date ? ` · ${hit.date.slice(0, 10)}` : "")),
    el("p", { class: "why" }, `Why: ${hit.reason}`),
  );
  if (hit.type === "audio") {
    player = el("audio", { controls: true, preload: "none", src: `${media(hit.id)}#t=${first}` });
    body.append(player);
  }
  if (timed.length) {
    body.append(el("div", { class: "moments", role: "group", "aria-label": "Matching moments" },
      ...timed.map((s) => el("button", { type: "button", class: "moment", "data-start": s.start,
                                         onclick: () => playAt(s.start) },
        `▶ ${clock(s.start)}–${clock(s.end)}`))));
  }
  for (const seg of hit.segments.filter((s) => s.text).slice(0, 2)) {
    const snippet = el("p", { class: "snippet" }, highlight(seg.text, hit.words));
    const at = where(seg);
    if (at) snippet.prepend(el("span", { class: "where", title: at.title }, at.label));
    body.append(snippet);
  }
  body.append(el("p", { class: "path" }, hit.path));
  body.append(el("div", { class: "actions" },
    el("button", { type: "button", class: "more", onclick: () => moreLike(hit.id) }, "More like this")));
  node.append(body);
  return node;
}

// ---- status ----------------------------------------------------------------------------------

function groups(items) {
  const by = new Map();
  for (const item of items) {
    const why = item.reason || "no reason given";
    if (!by.has(why)) by.set(why, []);
    by.get(why).push(item.path);
  }
  return [...by.entries()].sort((a, b) => b[1].length - a[1].length);
}

function problemList(title, items, help) {
  if (!items.length) return [];
  const out = [el("h2", {}, `${title} (${items.length})`)];
  if (help) out.push(el("p", { class: "empty" }, help));
  for (const [why, paths] of groups(items)) {
    out.push(el("div", { class: "reason" },
      el("p", {}, `${paths.length} file${paths.length === 1 ? "" : "s"}: ${why}`),
      el("ul", {}, ...paths.slice(0, 5).map((p) => el("li", {}, p)),
        paths.length > 5 ? el("li", {}, `and ${paths.length - 5} more`) : null)));
  }
  return out;
}

async function showStatus() {
  say("Reading the index status…");
  try {
    const info = await getJSON("/api/status");
    const states = ["indexed", "pending", "failed", "skipped"];
    const rows = Object.entries(info.types).sort().map(([type, counts]) =>
      el("tr", {}, el("th", { scope: "row" }, TYPE_NAMES[type] || type),
        ...states.map((s) => el("td", { class: "num" }, String(counts[s] || 0)))));
    const spaces = Object.entries(info.spaces).map(([space, sp]) =>
      el("tr", {}, el("th", { scope: "row" }, space), el("td", {}, sp.model),
        el("td", { class: "num" }, String(sp.vectors)),
        el("td", { class: sp.available ? "ok" : "missing" }, sp.available ? "found" : "missing"),
        el("td", {}, sp.weights)));
    statusView.replaceChildren(
      el("h2", {}, `${info.files} files in ${info.index}`),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "type"), ...states.map((s) => el("th", {}, s)))),
        el("tbody", {}, ...rows)),
      el("h2", {}, "Models"),
      el("table", {}, el("thead", {}, el("tr", {}, ...["space", "model", "vectors", "weights", "where, or how to provide them"]
        .map((h) => el("th", {}, h)))), el("tbody", {}, ...spaces)),
      ...problemList("Pending", info.pending,
        "These files wait for a model's weights; provide them as said, then run 'searchengine index' again."),
      ...problemList("Failed", info.failed),
      ...problemList("Skipped", info.skipped),
    );
    say(`Index status · ${info.files} files`);
  } catch (error) {
    statusView.replaceChildren();
    say(error.message, true);
  }
}

// ---- wiring ----------------------------------------------------------------------------------

form.addEventListener("submit", (event) => {
  event.preventDefault();
  go(formState());
});

for (const chip of chips()) {
  chip.addEventListener("click", () => {
    chip.setAttribute("aria-pressed", String(chip.getAttribute("aria-pressed") !== "true"));
    const was = current();
    const next = formState();
    if (was.get("similar")) next.set("similar", was.get("similar"));
    if (next.get("q") || next.get("similar")) go(next);
  });
}

$("#show-status").addEventListener("click", () => {
  const showing = current().get("view") === "status";
  const params = showing ? formState() : new URLSearchParams({ view: "status" });
  go(params);
});

$("#pick").addEventListener("click", () => $("#example").click());
$("#example").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) searchByExample(file);
  event.target.value = "";
});

const drop = $("#drop");
let dragDepth = 0;
const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
document.addEventListener("dragenter", (event) => {
  if (!carriesFiles(event)) return;
  dragDepth += 1;
  drop.hidden = false;
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) drop.hidden = true;
});
document.addEventListener("dragover", (event) => {
  if (carriesFiles(event)) event.preventDefault();
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  drop.hidden = true;
  const file = event.dataTransfer?.files?.[0];
  if (file) searchByExample(file);
});

document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
  if (event.key === "/" && !typing) {
    event.preventDefault();
    $("#q").focus();
    $("#q").select();
  } else if (event.key === "Escape") {
    drop.hidden = true;
    dragDepth = 0;
  }
});

window.addEventListener("popstate", () => {
  showState(current());
  run(current());
});

showState(current());
run(current());
