// Training, processing and transform jobs: filterable lists, and a job's page (its Describe fields,
// FailureReason, the CloudWatch log with a live tail, metrics over time, S3 locations with downloads,
// and, when reached from a pipeline step, the step's PropertyFile JSON).
// Everything from the server is put in the page as text (h() children): never HTML.
import {consoleApi, consoleBlob, listAll, sagemaker} from "../api.js";
import {errorBox, flatten, fmtDuration, fmtTime, h, poll, replace, secondsBetween, statusBadge, table, useStyle}
  from "../dom.js";
import {metricChart} from "./chart.js";

export const KINDS = {
  training: {noun: "TrainingJob", title: "Training jobs", group: "/aws/sagemaker/TrainingJobs", end: "TrainingEndTime"},
  processing: {noun: "ProcessingJob", title: "Processing jobs", group: "/aws/sagemaker/ProcessingJobs",
               end: "ProcessingEndTime"},
  transform: {noun: "TransformJob", title: "Transform jobs", group: "/aws/sagemaker/TransformJobs",
              end: "TransformEndTime"},
};
const STATUSES = ["InProgress", "Completed", "Failed", "Stopping", "Stopped"];
const RUNNING = new Set(["InProgress", "Stopping"]);
const JOB_POLL_MS = 1000, METRICS_POLL_MS = 5000, LIST_POLL_MS = 3000;
const INLINE_JSON_BYTES = 1024 * 1024, MAX_LOG_LINES = 20000;

/** The job and endpoint pages' stylesheet (for dom.js's useStyle). */
export const JOBS_CSS = new URL("./jobs.css", import.meta.url).href;

export function render(root, params) {
  useStyle(JOBS_CSS);
  const [kind, name] = params.parts;
  if (!KINDS[kind]) {
    replace(root, h("p", {class: "notice"}, `Unknown job kind "${kind || ""}": training, processing or transform.`));
    return undefined;
  }
  return name ? jobPage(root, kind, name, params.query) : jobList(root, kind);
}

// ---- lists
function jobList(root, kind) {
  const spec = KINDS[kind];
  const nameBox = h("input", {type: "search", placeholder: "Name contains", class: "filter-name"});
  const statusBox = h("select", {class: "filter-status"}, h("option", {value: ""}, "Any status"),
                      STATUSES.map((s) => h("option", {value: s}, s)));
  const body = h("div", {class: "job-list"}, h("p", {class: "muted"}, "Loading…"));
  replace(root, h("h1", {}, spec.title), h("div", {class: "filters"}, nameBox, statusBox), body);
  let debounce = null, stop = null;
  const refresh = () => {
    if (stop) stop();
    stop = poll(async () => {
      const request = {SortBy: "CreationTime", SortOrder: "Descending"};
      if (nameBox.value.trim()) request.NameContains = nameBox.value.trim();
      if (statusBox.value) request.StatusEquals = statusBox.value;
      let summaries;
      try {
        summaries = await listAll(`List${spec.noun}s`, request, `${spec.noun}Summaries`);
      } catch (error) {
        replace(body, errorBox(error));
        return true;
      }
      replace(body, table([
        {title: "Name", value: (s) => h("a", {href: `#/jobs/${kind}/${encodeURIComponent(s[`${spec.noun}Name`])}`,
                                               class: "job-link"}, s[`${spec.noun}Name`])},
        {title: "Status", value: (s) => statusBadge(s[`${spec.noun}Status`])},
        {title: "Created", value: (s) => fmtTime(s.CreationTime)},
        {title: "Duration", value: (s) => fmtDuration(secondsBetween(s.CreationTime, s[spec.end] ||
                                           (RUNNING.has(s[`${spec.noun}Status`]) ? null : s.LastModifiedTime)))},
      ], summaries));
      return summaries.some((s) => RUNNING.has(s[`${spec.noun}Status`]));
    }, LIST_POLL_MS);
  };
  nameBox.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(refresh, 250); });
  statusBox.addEventListener("change", refresh);
  refresh();
  return () => { clearTimeout(debounce); if (stop) stop(); };
}

// ---- a job's page
function jobPage(root, kind, name, query) {
  const spec = KINDS[kind];
  const header = h("div", {class: "job-header"}, h("h1", {}, name));
  const failure = h("div", {class: "job-failure"});
  const fields = h("div", {class: "job-fields"}, h("p", {class: "muted"}, "Loading…"));
  const locations = h("section", {class: "job-s3"});
  const metrics = h("section", {class: "job-metrics"});
  const propertyFiles = h("section", {class: "job-property-files"});
  const logSection = h("section", {class: "job-log"});
  replace(root, h("p", {class: "crumbs"}, h("a", {href: `#/jobs/${kind}`}, spec.title)), header, failure,
          propertyFiles, metrics, logSection, locations, fields);
  const tail = new LogTail(logSection, kind, name);
  const chart = kind === "training" ? new MetricsView(metrics, name) : null;
  if (query && query.get("execution") && query.get("step")) {
    showPropertyFiles(propertyFiles, query.get("execution"), query.get("step"));
  }
  let drawnLocations = false, shownDoc = "";
  const stop = poll(async () => {
    let job;
    try {
      job = await sagemaker(`Describe${spec.noun}`, {[`${spec.noun}Name`]: name});
    } catch (error) {
      replace(fields, errorBox(error));
      return error.code !== "ValidationException" && error.code !== "ResourceNotFound";
    }
    const status = job[`${spec.noun}Status`];
    const running = RUNNING.has(status);
    // a pipeline step's link names the job as its ARN does (lower-cased): its log streams use the real name
    tail.jobName = job[`${spec.noun}Name`] || name;
    if (chart) chart.jobName = tail.jobName;
    replace(header, h("h1", {}, name), statusBadge(status),
            job.SecondaryStatus && job.SecondaryStatus !== status ? h("span", {class: "muted"}, ` ${job.SecondaryStatus}`)
              : null,
            h("span", {class: "muted job-times"}, ` created ${fmtTime(job.CreationTime)}`,
              job[spec.end] ? ` · ran ${fmtDuration(secondsBetween(job.CreationTime, job[spec.end]))}` : ""),
            query && query.get("execution") ? h("p", {class: "muted"}, "Step ", h("strong", {}, query.get("step") || ""),
              " of ", h("a", {href: `#/executions/${encodeURIComponent(query.get("execution"))}`}, "its execution")) : null);
    replace(failure, job.FailureReason ? h("div", {class: "failure-reason"}, h("strong", {}, "Failure reason"),
                                           h("pre", {}, job.FailureReason)) : null);
    const doc = JSON.stringify(job);
    if (doc !== shownDoc) { replace(fields, describeFields(job)); shownDoc = doc; }
    if (!drawnLocations || running) { replace(locations, s3Section(s3Locations(kind, job))); drawnLocations = true; }
    await tail.refresh(running);
    // each metrics answer replays the whole log: every 5 s while the job runs, and once more when it ends
    if (chart && (!running || Date.now() - chart.refreshedAt >= METRICS_POLL_MS)) await chart.refresh(job);
    return running;
  }, JOB_POLL_MS);
  return () => { stop(); tail.close(); };
}

/** The Describe document as readable key/value sections, then the raw JSON (collapsed). */
export function describeFields(doc) {
  const scalars = [], nested = [];
  for (const [key, value] of Object.entries(doc)) {
    if (key === "ResponseMetadata") continue;
    (value !== null && typeof value === "object" ? nested : scalars).push([key, value]);
  }
  return h("div", {},
    h("h2", {}, "Details"), kvTable(scalars),
    nested.map(([key, value]) => h("details", {class: "fields", open: true}, h("summary", {}, key),
                                    kvTable(flatten(value)))),
    h("details", {class: "raw-json"}, h("summary", {}, "Raw JSON"), h("pre", {}, JSON.stringify(doc, null, 2))));
}

/** [key, value] pairs as a two-column table; times (keys ending "Time") shown as local times. */
export function kvTable(pairs) {
  return h("table", {class: "kv"}, h("tbody", {}, pairs.map(([key, value]) =>
    h("tr", {}, h("th", {}, key), h("td", {}, /(Time|Timestamp)$/.test(key) && typeof value === "number"
      ? fmtTime(value) : String(value))))));
}

// ---- S3 locations
/** The S3 locations a job reads and writes: [{label, uri}]. */
export function s3Locations(kind, job) {
  const found = [];
  const add = (label, uri) => { if (typeof uri === "string" && uri.startsWith("s3://")) found.push({label, uri}); };
  if (kind === "training") {
    for (const channel of job.InputDataConfig || []) {
      add(`Input channel ${channel.ChannelName}`, channel.DataSource?.S3DataSource?.S3Uri);
    }
    const code = (job.HyperParameters || {}).sagemaker_submit_directory;
    if (code) add("Source code", code.replace(/^"|"$/g, ""));
    add("Output path", job.OutputDataConfig?.S3OutputPath);
    add("Model artifacts", job.ModelArtifacts?.S3ModelArtifacts);
    add("Checkpoints", job.CheckpointConfig?.S3Uri);
  } else if (kind === "processing") {
    for (const input of job.ProcessingInputs || []) add(`Input ${input.InputName}`, input.S3Input?.S3Uri);
    for (const output of job.ProcessingOutputConfig?.Outputs || []) {
      add(`Output ${output.OutputName}`, output.S3Output?.S3Uri);
    }
  } else if (kind === "transform") {
    add("Input", job.TransformInput?.DataSource?.S3DataSource?.S3Uri);
    add("Output path", job.TransformOutput?.S3OutputPath);
  }
  return found;
}

/** A section listing S3 locations, each with the objects under it and a download link for each. */
export function s3Section(locations) {
  if (!locations.length) return null;
  return [h("h2", {}, "S3 locations"), h("table", {class: "grid s3-locations"}, h("tbody", {}, locations.map(
    ({label, uri}) => {
      const objects = h("div", {class: "s3-objects"});
      const show = h("button", {type: "button", class: "s3-list", onclick: () => listObjects(objects, uri)}, "Objects");
      return h("tr", {"data-uri": uri}, h("th", {}, label), h("td", {}, h("code", {}, uri), " ", show, objects));
    })))];
}

async function listObjects(target, uri) {
  replace(target, h("span", {class: "muted"}, "Listing…"));
  try {
    const answer = await consoleApi("s3-list", {uri});
    replace(target, answer.objects.length ? h("ul", {}, answer.objects.map((o) =>
      h("li", {}, downloadLink(o.uri, o.key.split("/").pop() || o.key), h("span", {class: "muted"}, ` ${o.size} bytes`))))
      : h("span", {class: "muted"}, "No objects."),
      answer.truncated ? h("p", {class: "muted"}, `Only the first ${answer.objects.length} objects are listed.`) : null);
  } catch (error) {
    replace(target, errorBox(error));
  }
}

/** A link that downloads the S3 object `uri` through the console's s3-object API (as a Blob). */
export function downloadLink(uri, label) {
  const fileName = uri.split("/").pop() || "download";
  const link = h("a", {href: "#", class: "download", "data-uri": uri}, label || fileName);
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    try {
      const blob = await consoleBlob("s3-object", {uri});
      const url = URL.createObjectURL(blob);
      const save = h("a", {href: url, download: fileName});
      document.body.appendChild(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (error) {
      link.after(errorBox(error));
    }
  });
  return link;
}

// ---- PropertyFile JSON of a pipeline step
async function showPropertyFiles(target, executionArn, stepName) {
  try {
    const graph = await consoleApi("execution-graph", {arn: executionArn});
    const node = (graph.nodes || []).find((n) => n.name === stepName);
    const files = (node && node.propertyFiles) || [];
    if (!files.length) return;
    replace(target, h("h2", {}, "Property files"), files.map((file) => {
      const box = h("pre", {class: "property-json"}, file.s3Uri ? "Loading…" : "Not written yet.");
      if (file.s3Uri) loadJson(box, file.s3Uri);
      return h("div", {class: "property-file"}, h("h3", {}, file.name, " ", h("span", {class: "muted"}, file.path || "")),
               file.s3Uri ? h("p", {}, downloadLink(file.s3Uri)) : null, box);
    }));
  } catch (error) {
    replace(target, errorBox(error));
  }
}

async function loadJson(box, uri) {
  try {
    const text = await (await consoleBlob("s3-object", {uri, maxBytes: String(INLINE_JSON_BYTES)})).text();
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON: shown as it is */ }
    replace(box, shown);
  } catch (error) {
    replace(box, `${error.code || "Error"}: ${error.message}`);
  }
}

// ---- the CloudWatch log, tailed
class LogTail {
  constructor(section, kind, jobName) {
    this.kind = kind;
    this.jobName = jobName;
    this.streams = [];
    this.stream = null;
    this.token = null;
    this.lines = 0;
    this.closed = false;
    this.select = h("select", {class: "log-stream"});
    this.select.addEventListener("change", () => this.choose(this.select.value));
    this.pre = h("pre", {class: "log"});
    this.note = h("span", {class: "muted log-note"});
    replace(section, h("h2", {}, "Log"), h("div", {class: "log-bar"}, this.select, " ", this.note), this.pre);
  }

  choose(stream) {
    this.stream = stream;
    this.token = null;
    this.lines = 0;
    replace(this.pre);
    this.refresh(false);
  }

  showStreams(logStreams) {
    const names = logStreams.map((s) => s.logStreamName);
    if (names.join("\n") !== this.streams.join("\n")) {
      this.streams = names;
      replace(this.select, names.map((n) => h("option", {value: n}, n)));
    }
    if (this.stream) this.select.value = this.stream;
  }

  async refresh(running) {
    if (this.closed || this.busy) return;
    this.busy = true;
    try {
      // the console's log-events API: the job's streams and a page of one stream's events (the first by default)
      for (let page = 0; page < 50 && !this.closed; page++) {
        const stream = this.stream;
        const params = {job: this.jobName, kind: this.kind};
        if (stream) params.stream = stream;
        if (stream && this.token) params.nextToken = this.token;
        const answer = await consoleApi("log-events", params);
        if (stream !== this.stream) return;  // another stream was chosen meanwhile
        this.stream = answer.logStreamName || null;
        this.showStreams(answer.logStreams || []);
        if (!this.stream) { this.note.textContent = running ? "Waiting for the job's log…" : "No log."; return; }
        const events = answer.events || [];
        if (events.length) this.append(events);
        const same = answer.nextForwardToken === this.token;
        this.token = answer.nextForwardToken || this.token;
        if (!events.length || same) break;
      }
      this.note.textContent = running ? "live" : "";
    } catch (error) {
      if (error.code === "ResourceNotFoundException") this.note.textContent = running ? "Waiting for the job's log…" : "No log.";
      else this.note.textContent = `${error.code || "Error"}: ${error.message}`;
    } finally {
      this.busy = false;
    }
  }

  append(events) {
    const atEnd = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 4;
    const text = events.map((e) => e.message.replace(/\n$/, "")).join("\n") + "\n";
    this.pre.appendChild(document.createTextNode(text));
    this.lines += events.length;
    while (this.lines > MAX_LOG_LINES && this.pre.firstChild) {  // keeps the page light on very long logs
      this.lines -= (this.pre.firstChild.textContent.match(/\n/g) || []).length;
      this.pre.removeChild(this.pre.firstChild);
    }
    if (atEnd) this.pre.scrollTop = this.pre.scrollHeight;
  }

  close() { this.closed = true; }
}

// ---- training metrics
class MetricsView {
  constructor(section, jobName) {
    this.section = section;
    this.jobName = jobName;
    this.shown = "";
    this.refreshedAt = -Infinity;
    this.chartBox = h("div", {class: "metric-chart"});
    this.finalBox = h("div", {class: "metric-final"});
  }

  async refresh(job) {
    this.refreshedAt = Date.now();
    let answer;
    try {
      answer = await consoleApi("metrics", {job: this.jobName});
    } catch (error) {
      replace(this.section, h("h2", {}, "Metrics"), errorBox(error));
      return;
    }
    const key = JSON.stringify(answer);
    if (key === this.shown) return;
    this.shown = key;
    const names = Object.keys(answer.series).sort();
    if (!names.length && !answer.final.length) { replace(this.section); return; }
    replace(this.section, h("h2", {}, "Metrics"), this.chartBox, h("h3", {}, "Final values"), this.finalBox);
    replace(this.finalBox, table([
      {title: "Metric", value: (m) => m.MetricName},
      {title: "Value", value: (m) => String(m.Value), class: "metric-value"},
      {title: "Time", value: (m) => fmtTime(m.Timestamp)},
    ], answer.final));
    await metricChart(this.chartBox, answer.series);
  }
}
