// Endpoints: a filterable list, and an endpoint's page (status, config's variants, models) with a small
// "invoke" form that calls InvokeEndpoint through the gateway (POST /endpoints/<name>/invocations, the
// console token in its header). Everything from the server is put in the page as text.
import {TOKEN_HEADER, sagemaker, token} from "../api.js";
import {errorBox, fmtTime, h, poll, replace, statusBadge, table, useStyle} from "../dom.js";
import {JOBS_CSS, describeFields, downloadLink, kvTable} from "./jobs.js";

const STATUSES = ["OutOfService", "Creating", "Updating", "SystemUpdating", "RollingBack", "InService", "Deleting",
                  "Failed", "UpdateRollbackFailed"];
const CHANGING = new Set(["Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"]);
const CONTENT_TYPES = ["text/csv", "application/json"];
const POLL_MS = 2000;

export function render(root, params) {
  useStyle(JOBS_CSS);
  const [name] = params.parts;
  return name ? endpointPage(root, name) : endpointList(root);
}

function endpointList(root) {
  const nameBox = h("input", {type: "search", placeholder: "Name contains", class: "filter-name"});
  const statusBox = h("select", {class: "filter-status"}, h("option", {value: ""}, "Any status"),
                      STATUSES.map((s) => h("option", {value: s}, s)));
  const body = h("div", {class: "endpoint-list"}, h("p", {class: "muted"}, "Loading…"));
  replace(root, h("h1", {}, "Endpoints"), h("div", {class: "filters"}, nameBox, statusBox), body);
  let debounce = null, stop = null;
  const refresh = () => {
    if (stop) stop();
    stop = poll(async () => {
      const request = {SortBy: "CreationTime", SortOrder: "Descending", MaxResults: 100};
      if (nameBox.value.trim()) request.NameContains = nameBox.value.trim();
      if (statusBox.value) request.StatusEquals = statusBox.value;
      let endpoints;
      try {
        endpoints = (await sagemaker("ListEndpoints", request)).Endpoints || [];
      } catch (error) {
        replace(body, errorBox(error));
        return true;
      }
      replace(body, table([
        {title: "Name", value: (e) => h("a", {href: `#/endpoints/${encodeURIComponent(e.EndpointName)}`,
                                               class: "endpoint-link"}, e.EndpointName)},
        {title: "Status", value: (e) => statusBadge(e.EndpointStatus)},
        {title: "Created", value: (e) => fmtTime(e.CreationTime)},
        {title: "Last modified", value: (e) => fmtTime(e.LastModifiedTime)},
      ], endpoints));
      return endpoints.some((e) => CHANGING.has(e.EndpointStatus));
    }, POLL_MS);
  };
  nameBox.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(refresh, 250); });
  statusBox.addEventListener("change", refresh);
  refresh();
  return () => { clearTimeout(debounce); if (stop) stop(); };
}

function endpointPage(root, name) {
  const header = h("div", {class: "job-header"}, h("h1", {}, name));
  const failure = h("div", {class: "job-failure"});
  const config = h("section", {class: "endpoint-config"});
  const fields = h("div", {class: "job-fields"}, h("p", {class: "muted"}, "Loading…"));
  replace(root, h("p", {class: "crumbs"}, h("a", {href: "#/endpoints"}, "Endpoints")), header, failure,
          invokeForm(name), config, fields);
  let shownConfig = null, shownDoc = "";
  return poll(async () => {
    let endpoint;
    try {
      endpoint = await sagemaker("DescribeEndpoint", {EndpointName: name});
    } catch (error) {
      replace(fields, errorBox(error));
      return error.code !== "ValidationException";
    }
    replace(header, h("h1", {}, name), statusBadge(endpoint.EndpointStatus),
            h("span", {class: "muted job-times"}, ` created ${fmtTime(endpoint.CreationTime)}`));
    replace(failure, endpoint.FailureReason ? h("div", {class: "failure-reason"}, h("strong", {}, "Failure reason"),
                                                h("pre", {}, endpoint.FailureReason)) : null);
    const doc = JSON.stringify(endpoint);
    if (doc !== shownDoc) { replace(fields, describeFields(endpoint)); shownDoc = doc; }
    if (endpoint.EndpointConfigName !== shownConfig) {
      shownConfig = endpoint.EndpointConfigName;
      await showConfig(config, endpoint);
    }
    return CHANGING.has(endpoint.EndpointStatus);
  }, POLL_MS);
}

async function showConfig(target, endpoint) {
  try {
    const config = await sagemaker("DescribeEndpointConfig", {EndpointConfigName: endpoint.EndpointConfigName});
    const variants = config.ProductionVariants || [];
    const models = await Promise.all([...new Set(variants.map((v) => v.ModelName))].map((modelName) =>
      sagemaker("DescribeModel", {ModelName: modelName}).catch((error) => ({ModelName: modelName, error}))));
    replace(target, h("h2", {}, "Configuration ", h("span", {class: "muted"}, config.EndpointConfigName)),
      table([
        {title: "Variant", value: (v) => v.VariantName},
        {title: "Model", value: (v) => v.ModelName},
        {title: "Instance type", value: (v) => v.InstanceType || (v.ServerlessConfig ? "serverless" : "")},
        {title: "Instances", value: (v) => String(v.InitialInstanceCount ?? "")},
        {title: "Weight", value: (v) => String(v.InitialVariantWeight ?? "")},
      ], variants),
      models.map((model) => h("div", {class: "endpoint-model"}, h("h3", {}, "Model ", model.ModelName),
        model.error ? errorBox(model.error) : kvTable(modelPairs(model)),
        ...(model.error ? [] : modelDownloads(model)))));
  } catch (error) {
    replace(target, errorBox(error));
  }
}

function containersOf(model) {
  return model.PrimaryContainer ? [model.PrimaryContainer] : (model.Containers || []);
}

function modelPairs(model) {
  const pairs = [];
  containersOf(model).forEach((c, i) => {
    const prefix = containersOf(model).length > 1 ? `Container ${i + 1} ` : "";
    pairs.push([`${prefix}Image`, c.Image || ""]);
    if (c.ModelDataUrl) pairs.push([`${prefix}Model data`, c.ModelDataUrl]);
  });
  if (model.ExecutionRoleArn) pairs.push(["Execution role", model.ExecutionRoleArn]);
  return pairs;
}

function modelDownloads(model) {
  return containersOf(model).filter((c) => typeof c.ModelDataUrl === "string" && c.ModelDataUrl.startsWith("s3://")
                                           && !c.ModelDataUrl.endsWith("/"))
    .map((c) => h("p", {}, "Download ", downloadLink(c.ModelDataUrl)));
}

/** The "invoke" form: a content type, a body, Send → the response's status and body as text. */
function invokeForm(name) {
  const type = h("select", {class: "invoke-type", name: "content-type"}, CONTENT_TYPES.map((t) => h("option", {value: t}, t)));
  const body = h("textarea", {class: "invoke-body", name: "body", spellcheck: "false", placeholder: "Request body"});
  const status = h("span", {class: "invoke-status"});
  const answer = h("pre", {class: "invoke-response"});
  const send = h("button", {type: "button", class: "invoke-send"}, "Send");
  send.addEventListener("click", async () => {
    send.disabled = true;
    status.textContent = "Sending…";
    status.className = "invoke-status";
    replace(answer);
    const started = performance.now();
    try {
      const response = await fetch(`/endpoints/${encodeURIComponent(name)}/invocations`, {
        method: "POST", credentials: "omit", body: body.value,
        headers: {"Content-Type": type.value, [TOKEN_HEADER]: token()},
      });
      const text = await response.text();
      const took = Math.round(performance.now() - started);
      status.textContent = `${response.status} ${response.statusText} · ${response.headers.get("Content-Type") || ""}` +
                           ` · ${took} ms`;
      if (!response.ok) status.className = "invoke-status failed";
      replace(answer, text);
    } catch (error) {
      status.textContent = `Failed: ${error.message}`;
      status.className = "invoke-status failed";
    } finally {
      send.disabled = false;
    }
  });
  return h("section", {class: "invoke-form"}, h("h2", {}, "Invoke"),
           h("div", {class: "row"}, h("label", {}, "Content type ", type)),
           h("div", {class: "row"}, body),
           h("div", {class: "row"}, send, " ", status), answer);
}
