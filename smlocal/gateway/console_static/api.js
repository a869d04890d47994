// Calls from the console to the gateway it came from (same origin), each with the console token.
// The token: a <meta> of index.html (loopback servers), or the URL's #token=... moved by app.js to
// sessionStorage (servers bound beyond loopback).

export const TOKEN_HEADER = "X-Smlocal-Console-Token";
const STORAGE_KEY = "smlocal-console-token";

/** The console token of this page ("" when none is known). */
export function token() {
  const meta = document.querySelector('meta[name="smlocal-console-token"]');
  const fromMeta = meta ? meta.getAttribute("content") : "";
  return fromMeta || sessionStorage.getItem(STORAGE_KEY) || "";
}

/** Moves a `#token=...` fragment (or `&token=` inside the hash) into sessionStorage; returns whether one was found. */
export function adoptTokenFromHash() {
  const hash = location.hash.replace(/^#/, "");
  const match = /(^|[?&])token=([^&]*)/.exec(hash);
  if (!match) return false;
  sessionStorage.setItem(STORAGE_KEY, decodeURIComponent(match[2]));
  let rest = hash.replace(match[0], match[1] === "?" ? "?" : "").replace(/[?&]$/, "");
  if (!rest.startsWith("/")) rest = "/pipelines";
  history.replaceState(null, "", location.pathname + location.search + "#" + rest);
  return true;
}

function consoleError(code, message, status) {
  const error = new Error(message || code || `HTTP ${status}`);
  error.code = code || `HTTP${status}`;
  error.status = status;
  return error;
}

async function failure(response) {
  let code = response.headers.get("x-amzn-ErrorType") || "", message = "";
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    code = body.__type || body.code || code;
    message = body.message || body.Message || "";
  } catch (_) {
    message = text.slice(0, 500);
  }
  if (code.includes("#")) code = code.split("#").pop();
  if (code.includes(":")) code = code.split(":")[0];
  return consoleError(code, message, response.status);
}

async function jsonCall(target, body) {
  const response = await fetch("/", {
    method: "POST",
    headers: {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1", [TOKEN_HEADER]: token()},
    body: JSON.stringify(body || {}),
    credentials: "omit",
  });
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

/** A SageMaker operation: `sagemaker("ListPipelines", {})` → the parsed JSON answer. */
export function sagemaker(operation, body) {
  return jsonCall(`SageMaker.${operation}`, body);
}

function apiUrl(name, params) {
  const query = new URLSearchParams(params || {}).toString();
  return `api/${encodeURIComponent(name)}${query ? "?" + query : ""}`;
}

async function apiGet(name, params) {
  const response = await fetch(apiUrl(name, params), {headers: {[TOKEN_HEADER]: token()}, credentials: "omit"});
  if (!response.ok) throw await failure(response);
  return response;
}

/** A console API call: GET /_smlocal/console/api/<name>?<params> → parsed JSON. */
export async function consoleApi(name, params) {
  return (await apiGet(name, params)).json();
}

/** A console API download: → a Blob. */
export async function consoleBlob(name, params) {
  return (await apiGet(name, params)).blob();
}

/**
 * Every item of a paginated SageMaker List* call: `listAll("ListTrainingJobs", request, "TrainingJobSummaries")`.
 * Pages of 100 (unless `body` names its own MaxResults), at most `maxPages` of them.
 */
export async function listAll(operation, body, key, maxPages = 20) {
  const items = [];
  let nextToken = null;
  for (let page = 0; page < maxPages; page++) {
    const answer = await sagemaker(operation, {MaxResults: 100, ...body, ...(nextToken ? {NextToken: nextToken} : {})});
    items.push(...(answer[key] || []));
    nextToken = answer.NextToken;
    if (!nextToken) break;
  }
  return items;
}
