package gql

import "net/http"

// servePage serves a minimal query page: a textarea for the query, one for
// the variables, a field for the bearer credential, and a button that POSTs
// to /graphql. It is deliberately not GraphiQL: GraphiQL loads its scripts
// and styles from a CDN, and Vigil runs where there is no Internet (and
// should not pull code from the network into an admin's browser). Nothing
// here loads anything at runtime; the credential stays in the page's memory.
func servePage(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte(pageHTML))
}

const pageHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Vigil reporting — GraphQL</title>
<style>
body{font:14px system-ui,sans-serif;margin:1em;display:grid;grid-template-columns:1fr 1fr;gap:1em}
textarea,pre{width:100%;box-sizing:border-box;font:13px ui-monospace,monospace}
textarea{height:18em}pre{background:#f4f4f4;padding:.5em;min-height:30em;overflow:auto;white-space:pre-wrap}
label{display:block;margin:.5em 0 .2em}input{width:100%;box-sizing:border-box}
</style></head><body>
<div>
<h1>Vigil reporting</h1>
<label for="token">Bearer credential</label><input id="token" type="password" autocomplete="off">
<label for="query">Query</label>
<textarea id="query">{
  sessions(first: 10) {
    totalCount
    edges { cursor node { id status createdAt technicianId customerName } }
    pageInfo { hasNextPage endCursor }
  }
}</textarea>
<label for="vars">Variables (JSON)</label><textarea id="vars" style="height:6em">{}</textarea>
<p><button id="run">Run (Ctrl+Enter)</button></p>
</div>
<div><h2>Answer</h2><pre id="out"></pre></div>
<script>
const $ = id => document.getElementById(id);
async function run() {
  let vars = {};
  try { vars = JSON.parse($("vars").value || "{}"); } catch (e) { $("out").textContent = "variables: " + e; return; }
  const res = await fetch(location.pathname, {method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": "Bearer " + $("token").value},
    body: JSON.stringify({query: $("query").value, variables: vars})});
  const text = await res.text();
  try { $("out").textContent = res.status + "\n" + JSON.stringify(JSON.parse(text), null, 2); }
  catch (e) { $("out").textContent = res.status + "\n" + text; }
}
$("run").onclick = run;
document.addEventListener("keydown", e => { if (e.ctrlKey && e.key === "Enter") run(); });
</script></body></html>
`
