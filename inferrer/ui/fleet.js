// The fleet page: reads the gateway's JSON routes every few seconds (?refresh=SECONDS, 2 by default)
// and fills one table per section. The token is kept in this tab's sessionStorage only.
"use strict";

const REFRESH_S = Math.max(1, Number(new URLSearchParams(location.search).get("refresh")) || 2);
const TOKEN_KEY = "modelfleet-token";

async function read(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    const answer = await fetch(path, { headers, cache: "no-store" });
    if (answer.status === 401 || answer.status === 403) return { state: "needs the token (above)" };
    const body = await answer.json();
    if (!answer.ok) return { state: body.error || `answered ${answer.status}` };
    return { body };
  } catch (error) {
    return { state: `the gateway did not answer: ${error}` };
  }
}

function row(id, cells) {
  const tr = document.createElement("tr");
  tr.dataset.id = id;
  for (const [text, name] of cells) {
    const td = document.createElement("td");
    if (text instanceof Node) td.append(text);
    else td.textContent = String(text);
    if (name) td.className = name;
    tr.append(td);
  }
  return tr;
}

// A yes/no cell, green when it is as it should be and red when not (`good` null: no colour).
function yesNo(value, name, good = true) {
  const state = good === null ? "" : value === good ? " good" : " bad";
  return [value ? "yes" : "no", name + state];
}

function fill(section, rows, state, empty) {
  const element = document.getElementById(section);
  element.querySelector("tbody").replaceChildren(...rows);
  element.querySelector(".state").textContent = state || (rows.length ? "" : empty);
}

function bar(done, total) {
  const progress = document.createElement("progress");
  progress.max = Math.max(total, 1);
  progress.value = done;
  const span = document.createElement("span");
  span.append(progress, ` ${done}/${total}`);
  return span;
}

async function nodes() {
  const { body, state } = await read("api/v1/nodes");
  const rows = (body ? body.nodes : []).map((n) => {
    const tr = row(n.id, [
      [n.id, "id"], yesNo(n.live, "live"), yesNo(n.ready, "ready"), yesNo(n.draining, "draining", false),
      [n.in_flight, "in-flight"], [n.models.map((m) => `${m.name} v${m.version}`).join(", "), "models"],
    ]);
    if (!n.live) tr.className = "down";
    return tr;
  });
  fill("nodes", rows, state, "No node in the topology.");
}

async function models() {
  const { body, state } = await read("api/v1/models");
  const rows = (body ? body.models : []).map((m) =>
    row(m.name, [[m.name, "id"], [m.active_version ?? "none", "active"], [m.versions.map((v) => v.version).join(", "), "versions"]]));
  fill("models", rows, state, "No model deployed.");
}

async function jobs() {
  const { body, state } = await read("api/v1/jobs?limit=20");
  const rows = (body ? body.jobs : []).map((j) => row(j.id, [
    [j.id, "id"], [j.graph ? `graph ${j.graph}` : `${j.model} v${j.version}`, "target"], [j.status, "status"],
    [bar(j.partitions.done, j.partitions.total), "progress"], [`${j.rows.done} done, ${j.rows.failed} failed`, "rows"],
  ]));
  fill("jobs", rows, state, "No job.");
}

async function graphs() {
  const { body, state } = await read("api/v1/graphs");
  const views = await Promise.all((body || []).map((name) => read(`api/v1/graphs/${encodeURIComponent(name)}`)));
  const rows = views.filter((v) => v.body).map(({ body: g }) =>
    row(g.graph, [[g.graph, "id"], [g.active_version, "active"], [g.versions.map((v) => v.version).join(", "), "versions"]]));
  fill("graphs", rows, state, "No graph.");
}

async function watches() {
  const { body, state } = await read("api/v1/watches");
  const rows = (body ? body.watches : []).map((w) => row(w.name, [
    [w.name, "id"], [`${w.input} (${w.pattern})`, "input"], [w.model ? `model ${w.model}` : `graph ${w.graph}`, "target"],
    [w.output_location, "output"],
  ]));
  fill("watches", rows, state, "No watch.");
}

async function streams() {
  const { body, state } = await read("api/v1/streams");
  const views = await Promise.all((body ? body.streams : []).map((s) => read(`api/v1/streams/${encodeURIComponent(s.name)}`)));
  const rows = views.filter((v) => v.body).map(({ body: s }) => row(s.name, [
    [s.name, "id"], [`${s.input} → ${s.output}`, "streams"],
    [s.model ? `model ${s.model}` : s.graph ? `graph ${s.graph}` : "converge", "target"],
    [s.figures.lag ?? "?", "lag"], [s.figures.pending, "pending"], [s.figures.messages_per_second.toFixed(1), "rate"],
    [s.figures.dead_letters, "dead-letters"],
  ]));
  fill("streams", rows, state, "No stream binding.");
}

async function autoscaler() {
  const { body: a, state } = await read("api/v1/autoscaler");
  const rows = a ? [row("autoscaler", [yesNo(a.enabled, "enabled", null), [a.nodes, "nodes"], [a.desired ?? "-", "desired"],
    [a.min_nodes, "min"], [a.max_nodes, "max"]])] : [];
  fill("autoscaler", rows, state, "");
}

async function welcome() {
  const { body } = await read("./");
  if (body) document.getElementById("gateway").textContent = `version ${body.version}, ${body.nodes} nodes`;
}

async function refresh() {
  try {
    // Each section on its own: one that fails leaves the others, and the next refresh, as they are.
    const sections = [nodes, models, jobs, graphs, watches, streams, autoscaler];
    await Promise.allSettled(sections.map((section) => section()));
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  } finally {
    setTimeout(refresh, REFRESH_S * 1000);
  }
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
});
document.getElementById("forget").addEventListener("click", () => sessionStorage.removeItem(TOKEN_KEY));
welcome();
refresh();
