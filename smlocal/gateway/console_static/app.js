// The console shell: the nav bar and the hash router. `#/<page>/<rest>?<query>` loads
// pages/<file>.js (dynamic import) and calls its `render(root, {parts, query})`; what render returns
// (a cleanup function) is called when the user navigates away.
import {adoptTokenFromHash, token} from "./api.js";
import {h, replace} from "./dom.js";

const PAGES = {
  pipelines: "pipelines.js",
  executions: "execution.js",
  jobs: "jobs.js",
  endpoints: "endpoints.js",
  registry: "registry.js",
  experiments: "experiments.js",
};

const NAV = [
  ["Pipelines", "#/pipelines"],
  ["Training", "#/jobs/training"],
  ["Processing", "#/jobs/processing"],
  ["Transform", "#/jobs/transform"],
  ["Endpoints", "#/endpoints"],
  ["Model registry", "#/registry"],
  ["Experiments", "#/experiments"],
];

let cleanup = null;
let generation = 0;

/** `#/jobs/training/my%2Fjob?execution=x` → {page: "jobs", parts: ["training", "my/job"], query}. */
export function parseHash(hash) {
  const text = hash.replace(/^#\/?/, "");
  const at = text.indexOf("?");
  const path = at < 0 ? text : text.slice(0, at);
  const query = new URLSearchParams(at < 0 ? "" : text.slice(at + 1));
  const segments = path.split("/").filter((s) => s !== "").map((s) => {
    try { return decodeURIComponent(s); } catch (_) { return s; }
  });
  return {page: segments[0] || "pipelines", parts: segments.slice(1), query};
}

function drawNav(page, parts) {
  const current = `#/${[page, ...parts.slice(0, page === "jobs" ? 1 : 0)].join("/")}`;
  replace(document.getElementById("nav"), NAV.map(([title, href]) =>
    h("a", {href, class: href === current || (page === "executions" && href === "#/pipelines") ? "active" : null},
      title)));
}

async function route() {
  const mine = ++generation;
  if (typeof cleanup === "function") {
    try { cleanup(); } catch (error) { console.error(error); }
  }
  cleanup = null;
  const {page, parts, query} = parseHash(location.hash);
  drawNav(page, parts);
  const root = document.getElementById("main");
  const file = PAGES[page];
  if (!file) {
    replace(root, h("p", {class: "notice"}, `The page "${page}" is not available.`));
    return;
  }
  let module;
  try {
    module = await import(`./pages/${file}`);
  } catch (error) {
    if (mine !== generation) return;
    console.error(error);
    replace(root, h("p", {class: "notice"}, `The page "${page}" is not available in this console.`));
    return;
  }
  if (mine !== generation) return;
  replace(root);
  try {
    const result = await module.render(root, {parts, query});
    if (mine !== generation) { if (typeof result === "function") result(); return; }
    cleanup = result;
  } catch (error) {
    console.error(error);
    if (mine === generation) replace(root, h("div", {class: "error-box"}, h("strong", {}, error.code || "Error"), ": ",
                                            error.message || String(error)));
  }
}

function start() {
  adoptTokenFromHash();
  if (!token()) {
    replace(document.getElementById("main"), h("p", {class: "notice"},
      "This page has no console token: open the URL `smlocal console` prints (it ends with #token=...)."));
    return;
  }
  if (!location.hash || location.hash === "#" || location.hash === "#/") {
    history.replaceState(null, "", location.pathname + location.search + "#/pipelines");
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
