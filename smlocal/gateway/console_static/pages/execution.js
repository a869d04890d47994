// #/executions/<ARN>: a pipeline execution as a graph (dagre layout, drawn as SVG), live while it runs.
import {consoleApi, sagemaker} from "../api.js";
import {errorBox, fmtDuration, fmtTime, h, poll, replace, secondsBetween, statusBadge, table} from "../dom.js";

const RUNNING = new Set(["Executing", "Stopping"]);
const RETRYABLE = new Set(["Failed", "Stopped"]);  // what RetryPipelineExecution accepts (else ConflictException)
const NODE_W = 250, NODE_H = 62;
let dagrePromise = null;

function loadDagre() {
  dagrePromise = dagrePromise || import("../vendor/dagre/dagre.esm.js").then((m) => m.default || m);
  return dagrePromise;
}

/** The execution-graph answer prefetch.js started for `arn` (once), or null. */
async function prefetched(arn) {
  const early = window.smlocalPrefetch;
  if (!early || early.name !== "execution-graph" || early.arn !== arn) return null;
  delete window.smlocalPrefetch;
  try {
    const response = await early.answer;
    return response.ok ? await response.json() : null;
  } catch (_) {
    return null;
  }
}

function short(text, max) {
  const s = String(text ?? "");
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

function structureKey(graph) {
  return JSON.stringify([graph.nodes.map((n) => n.name), graph.edges.map((e) => [e.from, e.to, e.kind])]);
}

function layout(dagre, graph) {
  const g = new dagre.graphlib.Graph({multigraph: true});
  g.setGraph({rankdir: "TB", nodesep: 36, ranksep: 56, edgesep: 16, marginx: 16, marginy: 16});
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of graph.nodes) g.setNode(node.name, {width: NODE_W, height: NODE_H});
  graph.edges.forEach((e, i) => {
    const label = e.kind === "true" || e.kind === "false";
    g.setEdge(e.from, e.to, label ? {width: 34, height: 14, labelpos: "c"} : {}, `e${i}`);
  });
  dagre.layout(g);
  const nodes = new Map(graph.nodes.map((n) => [n.name, g.node(n.name)]));
  const edges = graph.edges.map((e, i) => g.edge(e.from, e.to, `e${i}`));
  const size = g.graph();
  return {nodes, edges, width: Math.ceil(size.width || 0), height: Math.ceil(size.height || 0)};
}

function subtitle(node) {
  const bits = [node.type];
  if (node.durationSeconds !== null && node.durationSeconds !== undefined) bits.push(fmtDuration(node.durationSeconds));
  if (node.cacheHit) bits.push("cache hit");
  if (node.attempts > 1) bits.push(`${node.attempts - 1} ${node.attempts === 2 ? "retry" : "retries"}`);
  if (node.type === "Condition" && node.conditionOutcome !== null) bits.push(`outcome ${node.conditionOutcome}`);
  return bits.join(" · ");
}

function drawGraph(graph, placed, onNode, selected) {
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  const edges = graph.edges.map((e, i) => {
    const points = placed.edges[i].points || [];
    const d = points.map((p, k) => `${k ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    const target = byName.get(e.to);
    const notTaken = target && target.status === "Skipped";
    const label = (e.kind === "true" || e.kind === "false")
      ? h("text", {x: placed.edges[i].x, y: placed.edges[i].y + 4, "text-anchor": "middle"}, e.kind) : null;
    return h("g", {class: `edge ${e.kind}${notTaken ? " not-taken" : ""}`, "data-from": e.from, "data-to": e.to,
                   "data-kind": e.kind},
             h("path", {d, "marker-end": "url(#arrow)"}), label);
  });
  const nodes = graph.nodes.map((node) => {
    const at = placed.nodes.get(node.name);
    const x = at.x - NODE_W / 2, y = at.y - NODE_H / 2;
    const status = node.status || "NotStarted";
    const error = node.status === "Failed" && node.failureReason
      ? h("text", {class: "error", x: x + 10, y: y + 55}, short(node.failureReason, 40)) : null;
    return h("g", {class: `node st-${status.toLowerCase()}${selected === node.name ? " selected" : ""}`,
                   "data-step": node.name, "data-status": status, "data-type": node.type, tabindex: "0",
                   role: "button", onclick: () => onNode(node),
                   onkeydown: (event) => { if (event.key === "Enter") onNode(node); }},
             h("title", {}, `${node.name} (${node.type}): ${status}${node.failureReason ? "\n" + node.failureReason : ""}`),
             h("rect", {x, y, width: NODE_W, height: NODE_H, rx: 8, ry: 8}),
             h("text", {x: x + 10, y: y + 19, "font-weight": "600"}, short(node.displayName || node.name, 30)),
             h("text", {class: "sub", x: x + 10, y: y + 36}, short(`${status} · ${subtitle(node)}`, 44)),
             error);
  });
  return h("svg", {class: "graph", width: placed.width, height: placed.height,
                   viewBox: `0 0 ${placed.width} ${placed.height}`, role: "img", "aria-label": "execution graph"},
           h("defs", {}, h("marker", {id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7",
                                      markerHeight: "7", orient: "auto-start-reverse"},
                           h("path", {d: "M0,0 L10,5 L0,10 z"}))),
           h("g", {}, edges), h("g", {}, nodes));
}

function stepPanel(node, arn) {
  const fields = [
    ["Type", node.type], ["Status", statusBadge(node.status)], ["Started", fmtTime(node.startTime)],
    ["Ended", fmtTime(node.endTime)], ["Duration", fmtDuration(node.durationSeconds)],
    ["Attempts", String(node.attempts)], ["Cache hit", node.cacheHit ? "yes" : "no"],
  ];
  if (node.type === "Condition") fields.push(["Outcome", node.conditionOutcome === null ? "" : String(node.conditionOutcome)]);
  if (node.job) fields.push(["Job", h("a", {href: jobHref(node, arn)}, node.job.name)]);
  return h("div", {class: "side", "data-panel": node.name},
           h("h2", {}, node.name),
           node.failureReason ? h("div", {class: "error-box", "data-failure": node.name}, node.failureReason) : null,
           h("dl", {class: "fields"}, fields.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
           node.propertyFiles.length ? [h("h2", {}, "Property files"),
             table(["name", "path", {title: "S3 URI", value: (p) => p.s3Uri || ""}], node.propertyFiles)] : null);
}

function jobHref(node, arn) {
  const query = new URLSearchParams({execution: arn, step: node.name});
  return `#/jobs/${node.job.kind}/${encodeURIComponent(node.job.name)}?${query}`;
}

export async function render(root, params) {
  const arn = params.parts.join("/");
  const state = {graph: null, key: null, placed: null, selected: params.query.get("step") || null, dagre: null};
  const header = h("div", {});
  const notice = h("div", {});
  const answerBox = h("div", {"data-action-answer": ""});  // what the API said to the last Stop / Retry
  const graphWrap = h("div", {class: "graph-wrap"});
  const side = h("div", {});
  const paramsBox = h("div", {});
  replace(root, header, notice, answerBox, h("div", {class: "execution"}, graphWrap, side), paramsBox);
  // the library loads while the first answer is fetched (one round trip less before the first paint)
  const dagreReady = loadDagre().then((dagre) => { state.dagre = dagre; }, () => {
    replace(notice, h("div", {class: "error-box"}, "The graph library (dagre) is missing from this smlocal install: run ",
                      h("code", {}, "python -m smlocal.gateway.console_vendor"), " (./dev does it) and reload."));
  });
  let stop = null;

  // Stop / Retry; either way the page then polls again: after a refusal (the execution changed since
  // it was drawn, e.g. someone else retried it) it catches up with what the API says now.
  const act = async (operation, button) => {
    button.disabled = true;
    try {
      await sagemaker(operation, {PipelineExecutionArn: arn, ClientRequestToken: crypto.randomUUID()});
      replace(answerBox);
    } catch (error) {
      replace(answerBox, errorBox(error));
      button.disabled = false;
    }
    if (!stop) stop = poll(refresh, 1000);
  };

  const openNode = (node) => {
    if (node.job) {
      location.hash = jobHref(node, arn);
      return;
    }
    state.selected = node.name;
    draw();
  };

  function drawHeader(execution) {
    const stopButton = h("button", {class: "danger", "data-action": "stop", disabled: execution.status !== "Executing",
                                    onclick: (event) => act("StopPipelineExecution", event.currentTarget)}, "Stop");
    const retryButton = RETRYABLE.has(execution.status)
      ? h("button", {"data-action": "retry", onclick: (event) => act("RetryPipelineExecution", event.currentTarget)}, "Retry")
      : null;
    const ended = RUNNING.has(execution.status) ? null : execution.lastModified;
    replace(header,
      h("div", {class: "crumbs"}, h("a", {href: "#/pipelines"}, "Pipelines"), " / ",
        h("a", {href: `#/pipelines/${encodeURIComponent(execution.pipelineName || "")}`}, execution.pipelineName || ""),
        " / ", execution.displayName || arn.split("/").pop()),
      h("h1", {}, execution.displayName || arn.split("/").pop(), " ", h("span", {"data-execution-status": execution.status},
        statusBadge(execution.status))),
      h("div", {class: "toolbar"}, stopButton, retryButton,
        h("span", {class: "muted"}, `started ${fmtTime(execution.created)} · ${fmtDuration(secondsBetween(execution.created, ended))}`)),
      execution.failureReason ? h("div", {class: "error-box", "data-execution-failure": ""}, execution.failureReason) : null);
    replace(paramsBox, h("h2", {}, "Parameters"), table(["Name", "Value"], execution.parameters || []));
  }

  function draw() {
    const graph = state.graph;
    if (!graph) return;
    drawHeader(graph.execution);
    if (state.dagre) {
      const key = structureKey(graph);
      if (key !== state.key) { state.placed = layout(state.dagre, graph); state.key = key; }
      replace(graphWrap, drawGraph(graph, state.placed, openNode, state.selected));
    } else {
      replace(graphWrap, table([{title: "Step", value: (n) => n.name}, "type", {title: "Status", value: (n) => statusBadge(n.status)}],
                               graph.nodes));
    }
    let chosen = graph.nodes.find((n) => n.name === state.selected && !n.job);
    if (!chosen && !state.selected) chosen = graph.nodes.find((n) => n.status === "Failed" && !n.job);
    replace(side, chosen ? stepPanel(chosen, arn) : null);
  }

  async function refresh() {
    const started = performance.now();
    try {
      state.graph = (await prefetched(arn)) || await consoleApi("execution-graph", {arn});
      await dagreReady;
    } catch (error) {
      replace(notice, errorBox(error));
      if (error.status && error.status < 500 && stop) { stop(); stop = null; }
      return;
    }
    draw();
    performance.measure("execution-graph-refresh", {start: started, end: performance.now()});
    if (!document.body.dataset.graphDrawn) {
      document.body.dataset.graphDrawn = "1";
      performance.mark("execution-graph-drawn");
    }
    const status = state.graph.execution.status;
    if (!RUNNING.has(status) && stop) { stop(); stop = null; }
  }

  delete document.body.dataset.graphDrawn;
  stop = poll(refresh, 1000);
  return () => { if (stop) stop(); stop = null; };
}
