// Small DOM helpers. Text is always inserted as text nodes: names, logs and failure reasons come from
// jobs and users (attacker-controlled); nothing in the console parses HTML from data.

const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_TAGS = new Set(["svg", "g", "path", "rect", "text", "line", "polyline", "polygon", "circle", "title",
                          "defs", "marker", "tspan"]);

function append(node, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) { child.forEach((c) => append(node, c)); return; }
  node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
}

/** `h("a", {href: "#/x", class: "link", onclick: fn}, "text", childNode)` → an element. */
export function h(tag, attrs, ...children) {
  const node = SVG_TAGS.has(tag) ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "href" && /^\s*(javascript|data|vbscript):/i.test(String(value))) {
      continue;  // never a script URL
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

/** Removes every child of `node`, then appends `children`. */
export function replace(node, ...children) {
  while (node.firstChild) node.removeChild(node.firstChild);
  append(node, children);
  return node;
}

/** A time (ISO 8601 string, epoch seconds, or Date) as local "YYYY-MM-DD HH:MM:SS"; "" for none. */
export function fmtTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = value instanceof Date ? value : typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (isNaN(date.getTime())) return String(value);
  const p = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())} ` +
         `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}`;
}

/** A duration in seconds as "850 ms", "12.3 s", "4 m 05 s" or "2 h 03 m"; "" for none. */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || isNaN(seconds)) return "";
  const s = Number(seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
}

/** Seconds between two times (ISO / epoch / Date); to now when `end` is missing. */
export function secondsBetween(start, end) {
  const t = (v) => (v instanceof Date ? v.getTime() : typeof v === "number" ? v * 1000 : new Date(v).getTime());
  if (start === null || start === undefined) return null;
  return ((end === null || end === undefined ? Date.now() : t(end)) - t(start)) / 1000;
}

/** A status as a badge: `<span class="status status-completed">Completed</span>`. */
export function statusBadge(status) {
  const text = status || "Unknown";
  return h("span", {class: `status status-${String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-")}`}, text);
}

/**
 * A table. `columns`: [{title, value: (row) => node|string, class?}] or plain strings (a row's field);
 * `rows`: objects. An empty list shows one "None" row.
 */
export function table(columns, rows) {
  const cols = columns.map((c) => (typeof c === "string" ? {title: c, value: (row) => row[c]} : c));
  const body = rows.length
    ? rows.map((row) => h("tr", {}, cols.map((c) => h("td", {class: c.class}, c.value(row) ?? ""))))
    : [h("tr", {}, h("td", {colspan: cols.length, class: "muted"}, "None"))];
  return h("table", {class: "grid"}, h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c.title)))),
           h("tbody", {}, body));
}

/**
 * Calls `fn` now and then every `ms` (each call awaited before the next is scheduled) until it returns
 * `false` (any other answer, or a throw, keeps polling) or the returned stop function is called.
 */
export function poll(fn, ms) {
  let stopped = false, timer = null;
  const run = async () => {
    if (stopped) return;
    let again = true;
    try { again = await fn(); } catch (error) { console.error(error); }
    if (!stopped && again !== false) timer = setTimeout(run, ms);
  };
  run();
  return () => { stopped = true; if (timer) clearTimeout(timer); };
}

/** Adds the stylesheet at `url` (a same-origin file: the console's CSP allows no inline style) once. */
export function useStyle(url) {
  const href = new URL(url, document.baseURI).href;
  if ([...document.querySelectorAll('link[rel="stylesheet"]')].some((link) => link.href === href)) return;
  document.head.appendChild(h("link", {rel: "stylesheet", href}));
}

/**
 * The leaves of a JSON value as [path, value] pairs, depth first: `a.b`, `list[0].c`; an empty object or
 * list is one leaf ("{}" / "[]"), a bare scalar is "(value)".
 */
export function flatten(value, prefix = "", out = []) {
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [`[${i}]`, v]) : Object.entries(value);
    if (!entries.length) out.push([prefix || "(empty)", Array.isArray(value) ? "[]" : "{}"]);
    for (const [key, inner] of entries) {
      flatten(inner, prefix ? (key.startsWith("[") ? `${prefix}${key}` : `${prefix}.${key}`) : key, out);
    }
  } else {
    out.push([prefix || "(value)", value]);
  }
  return out;
}

/** An error as a visible message box (its AWS code and message). */
export function errorBox(error) {
  return h("div", {class: "error-box"}, h("strong", {}, error.code || "Error"), ": ", error.message || String(error));
}
