// Metric charts over time, drawn by uPlot (bundled under vendor/uplot: a classic script defining
// window.uPlot, loaded once). The chart's container carries what it drew, read back from the uPlot
// instance, for tests and tools: data-points (metric → number of points) and data-values (metric → its
// values in time order).
import {h, replace} from "../dom.js";

const VENDOR = new URL("../vendor/uplot/", import.meta.url);
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
let loading = null;

/** window.uPlot, loading its script and stylesheet on first use; rejects when the file is missing. */
export function loadUPlot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      document.head.appendChild(h("link", {rel: "stylesheet", href: new URL("uPlot.min.css", VENDOR).href}));
      const script = h("script", {src: new URL("uPlot.iife.min.js", VENDOR).href});
      script.addEventListener("load", () => (window.uPlot ? resolve(window.uPlot) : reject(new Error("no uPlot"))));
      script.addEventListener("error", () => { loading = null; reject(new Error("uPlot is missing")); });
      document.head.appendChild(script);
    });
  }
  return loading;
}

/**
 * uPlot's aligned data for `series` ({metric: [[epochSeconds, value], ...]}): one x array (every time
 * any metric has a point, sorted), and per metric its values at those times (null elsewhere).
 */
export function alignSeries(series) {
  const names = Object.keys(series).sort();
  // lines logged in the same millisecond are still separate points: each a millisecond after the last
  const spread = Object.fromEntries(names.map((n) => {
    let last = -Infinity;
    return [n, series[n].map(([t, v]) => { last = t > last ? t : last + 0.001; return [last, v]; })];
  }));
  const times = [...new Set(names.flatMap((n) => spread[n].map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = names.map((n) => {
    const column = new Array(times.length).fill(null);
    for (const [t, v] of spread[n]) column[index.get(t)] = v;
    return column;
  });
  return {names, data: [times, ...columns]};
}

/** Draws `series` into `container` (replacing what was there); → the uPlot instance, or null. */
export async function metricChart(container, series) {
  const {names, data} = alignSeries(series);
  if (!names.length) {
    replace(container, h("p", {class: "muted"}, "No metric values in the log yet."));
    container.dataset.points = "{}";
    container.dataset.values = "{}";
    return null;
  }
  let uPlot;
  try {
    uPlot = await loadUPlot();
  } catch (_) {
    replace(container, h("p", {class: "notice"}, "The chart library is missing: run "
      , h("code", {}, "python -m smlocal.gateway.console_vendor"), " (./dev does it)."));
    return null;
  }
  replace(container);
  const width = Math.max(320, Math.min(960, container.clientWidth || 720));
  const options = {
    width, height: 280,
    scales: {x: {time: true}},
    series: [{}, ...names.map((name, i) => ({label: name, stroke: COLOURS[i % COLOURS.length], width: 2,
                                              spanGaps: true, points: {show: true, size: 6}}))],
    axes: [{}, {}],
  };
  const plot = new uPlot(options, data, container);
  const counts = {}, values = {};
  names.forEach((name, i) => {
    values[name] = plot.data[i + 1].filter((v) => v !== null);
    counts[name] = values[name].length;
  });
  container.dataset.points = JSON.stringify(counts);
  container.dataset.values = JSON.stringify(values);
  return plot;
}
