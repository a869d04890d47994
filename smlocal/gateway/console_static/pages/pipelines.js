// #/pipelines: the pipelines; #/pipelines/<name>: that pipeline's executions (live while one runs).
import {listAll, sagemaker} from "../api.js";
import {fmtDuration, fmtTime, h, poll, replace, secondsBetween, statusBadge, table} from "../dom.js";

const RUNNING = new Set(["Executing", "Stopping"]);

async function renderPipelines(root) {
  const pipelines = await listAll("ListPipelines", {SortBy: "CreationTime", SortOrder: "Descending"},
                                  "PipelineSummaries");
  replace(root, h("h1", {}, "Pipelines"), table([
    {title: "Name", value: (p) => h("a", {href: `#/pipelines/${encodeURIComponent(p.PipelineName)}`}, p.PipelineName)},
    {title: "Display name", value: (p) => p.PipelineDisplayName || ""},
    {title: "Created", value: (p) => fmtTime(p.CreationTime)},
    {title: "Last modified", value: (p) => fmtTime(p.LastModifiedTime)},
    {title: "Last execution", value: (p) => fmtTime(p.LastExecutionTime)},
  ], pipelines));
}

function executionHref(arn) {
  return `#/executions/${encodeURIComponent(arn)}`;
}

async function renderExecutions(root, name) {
  const heading = h("h1", {}, name);
  const body = h("div", {}, h("p", {class: "muted"}, "Loading executions…"));
  replace(root, h("div", {class: "crumbs"}, h("a", {href: "#/pipelines"}, "Pipelines"), " / ", name), heading, body);
  const ended = new Map();  // ARN → LastModifiedTime of executions that ended (never changes again)
  const refresh = async () => {
    const summaries = await listAll("ListPipelineExecutions",
      {PipelineName: name, SortBy: "CreationTime", SortOrder: "Descending"},
      "PipelineExecutionSummaries");
    await Promise.all(summaries.slice(0, 50).filter((s) => !ended.has(s.PipelineExecutionArn)).map(async (s) => {
      if (RUNNING.has(s.PipelineExecutionStatus)) return;
      const d = await sagemaker("DescribePipelineExecution", {PipelineExecutionArn: s.PipelineExecutionArn});
      if (!RUNNING.has(d.PipelineExecutionStatus)) ended.set(s.PipelineExecutionArn, d.LastModifiedTime);
    }));
    replace(body, table([
      {title: "Execution", value: (s) => h("a", {href: executionHref(s.PipelineExecutionArn)},
                                           s.PipelineExecutionDisplayName || s.PipelineExecutionArn.split("/").pop())},
      {title: "Status", value: (s) => statusBadge(s.PipelineExecutionStatus)},
      {title: "Started", value: (s) => fmtTime(s.StartTime)},
      {title: "Duration", value: (s) => fmtDuration(secondsBetween(s.StartTime, ended.get(s.PipelineExecutionArn)))},
      {title: "Failure reason", value: (s) => s.PipelineExecutionFailureReason || ""},
    ], summaries));
    return summaries.some((s) => RUNNING.has(s.PipelineExecutionStatus));
  };
  return poll(refresh, 2000);
}

export function render(root, params) {
  return params.parts.length ? renderExecutions(root, params.parts[0]) : renderPipelines(root);
}
