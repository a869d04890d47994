// Started by index.html before the modules load (a classic async script): when the page opened is an
// execution graph, its API call starts now rather than after app.js and the page module are loaded and
// run (one round trip less before the first paint). pages/execution.js takes the answer once, for the
// same ARN only, and falls back to its own call for anything else (errors included).
(() => {
  const match = /^#\/executions\/([^/?]+)/.exec(location.hash);
  const meta = document.querySelector('meta[name="smlocal-console-token"]');
  const token = (meta && meta.getAttribute("content")) || sessionStorage.getItem("smlocal-console-token");
  if (!match || !token) return;
  let arn;
  try { arn = decodeURIComponent(match[1]); } catch (_) { return; }
  const answer = fetch(`api/execution-graph?arn=${encodeURIComponent(arn)}`,
                       {headers: {"X-Smlocal-Console-Token": token}, credentials: "omit"});
  answer.catch(() => {});  // a failure is the page's own call's to report
  window.smlocalPrefetch = {name: "execution-graph", arn, answer};
})();
