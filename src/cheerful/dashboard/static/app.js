// The cheerful dashboard: polls the JSON API and redraws what changed. No framework, no
// build step; every text goes in with textContent (never as HTML).
"use strict";

const WINDOW_S = 10;
const state = { every: 5, timer: null, shown: {}, open: new Set(), busy: false };
const $ = (id) => document.getElementById(id);

// --- small helpers ----------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") el.textContent = value;
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false)
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
  el.append(...children);
  return el;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");
const rate = (r) => (r === null || r === undefined ? "–" : `${r.toFixed(r < 10 ? 2 : 1)}/s`);
const money = (d) => (d === null || d === undefined ? "–" : `$${d.toFixed(d < 10 ? 3 : 2)}`);
const percent = (x) => (x === null || x === undefined ? "–" : `${Math.round(x)}%`);

function memory(node) {
  if (!node.memory_total || node.memory_available === null) return "–";
  return percent((100 * (node.memory_total - node.memory_available)) / node.memory_total);
}

function where(node) {
  const i = node.instance || {};
  return i.type ? `${i.type} ${i.zone || ""} ${i.lifecycle || ""}`.trim() : node.host;
}

function badge(word) {
  return h("span", { class: `badge ${word}`, "data-state": word, text: word });
}

// A stacked bar: done, failed, dead, running, over the job's tasks.
function bar(job, id) {
  const total = Math.max(1, job.total);
  const part = (cls, n) => {
    const el = h("span", { class: cls, title: `${n} ${cls}` });
    el.style.width = `${(100 * n) / total}%`;
    return el;
  };
  return h(
    "div",
    { class: "bar", id, "data-done": job.done, "data-total": job.total, "data-failed": job.failed },
    part("done", job.done), part("failed", job.failed), part("dead", job.dead),
    part("running", job.running),
  );
}

// Redraw section `id` of `parent` only when its data changed (keeps open details, scroll).
function section(parent, id, data, build) {
  let el = document.getElementById(id);
  if (!el) {
    el = h("section", { id });
    parent.append(el);
  }
  const key = JSON.stringify(data);
  if (state.shown[id] !== key) {
    state.shown[id] = key;
    el.replaceChildren(...[build(data)].flat().filter((x) => x !== null && x !== undefined && x !== false));
  }
  return el;
}

function table(headers, rows) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { text: x })))),
    h("tbody", {}, rows));
}

// --- talking to the server ------------------------------------------------------------

class ApiError extends Error {
  constructor(status, text) {
    super(text);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const answer = await fetch(path, { credentials: "same-origin", ...options });
  const type = answer.headers.get("content-type") || "";
  const body = type.includes("json") ? await answer.json() : await answer.text();
  if (!answer.ok) throw new ApiError(answer.status, body.error || body);
  return body;
}

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  if (parts[0] === "jobs" && parts[1]) return { page: "job", id: decodeURIComponent(parts[1]) };
  if (parts[0] === "nodes") return { page: "nodes" };
  if (parts[0] === "fleet") return { page: "fleet" };
  return { page: "jobs" };
}

async function tick() {
  clearTimeout(state.timer);
  const here = route();
  for (const a of document.querySelectorAll("nav a"))
    a.classList.toggle("here", a.dataset.nav === (here.page === "job" ? "jobs" : here.page));
  try {
    if (here.page === "job") {
      const job = await api(`/api/jobs/${encodeURIComponent(here.id)}`);
      if (route().page === "job") drawJob(job);
      live(job);
    } else {
      const all = await api("/api/overview");
      if (here.page === "jobs") drawJobs(all);
      else if (here.page === "nodes") drawNodes(all);
      else drawFleet(all);
      live(all);
    }
  } catch (error) {
    trouble(error);
  } finally {
    state.timer = setTimeout(tick, state.every * 1000);
  }
}

function live(data) {
  state.every = data.every || state.every;
  $("backend").textContent = data.backend;
  $("live").textContent = `live · read ${new Date(data.refreshed * 1000).toLocaleTimeString()}`;
  $("live").className = "live ok";
  document.body.dataset.loaded = String(performance.now());
}

function trouble(error) {
  $("live").className = "live bad";
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    $("live").textContent = "refused";
    $("main").replaceChildren(h("p", { class: "error", text: error.message }));
    state.shown = {};
  } else if (error instanceof ApiError) {
    $("live").textContent = `error ${error.status}`;
    notify(String(error.message), true);
  } else {
    $("live").textContent = "connection lost · retrying";
  }
}

function notify(text, bad) {
  const el = $("notice");
  el.textContent = text;
  el.className = bad ? "notice bad" : "notice";
  el.hidden = false;
}

// --- pages ----------------------------------------------------------------------------

function drawJobs(all) {
  const main = $("main");
  section(main, "jobs", all.jobs, (jobs) => [
    h("h1", { text: `Jobs (${jobs.length})` }),
    jobs.length ? jobsTable(jobs, all.fleet !== null) : h("p", { class: "muted", text: "No jobs in this backend yet." }),
  ]);
  section(main, "nodes-brief", all.nodes, (nodes) => [
    h("h2", {}, h("a", { href: "#/nodes", text: `Nodes (${nodes.length})` })),
    nodesTable(nodes.slice(0, 12), null),
  ]);
}

function jobsTable(jobs, cloud) {
  const headers = ["job", "name", "state", "progress", "done", "failed", "dead", "running", "rate", "ETA"];
  if (cloud) headers.push("$");
  headers.push("created");
  return table(headers, jobs.map((j) => h("tr", { "data-job": j.id },
    h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(j.id)}`, text: j.id })),
    h("td", { text: j.name }), h("td", {}, badge(j.state)), h("td", {}, bar(j)),
    h("td", { text: `${j.done}/${j.total}` }), h("td", { text: j.failed }),
    h("td", { text: j.dead }), h("td", { text: j.running }), h("td", { text: rate(j.rate) }),
    h("td", { text: duration(j.eta) }), cloud ? h("td", { text: money(j.dollars) }) : null,
    h("td", { text: when(j.created) }))));
}

function nodesTable(nodes, job) {
  if (!nodes.length) return h("p", { class: "muted", text: job ? "No node has reported work on this job." : "No node has reported yet." });
  const headers = job
    ? ["node", "state", "where", "slots", "chunks", "done", "failed", "running now", "cpu", "memory", "seen"]
    : ["node", "state", "where", "slots", "running now", "done", "failed", "cpu", "memory", "seen"];
  return table(headers, nodes.map((n) => {
    const share = (c) => (c.task_progress > 0 ? `, task ${Math.round(c.task_progress * 100)}% done` : "");
    const running = n.running.map((c) => `${job ? "" : c.job + " "}#${c.chunk} (${c.task_count ?? c.tasks.length} tasks, ${duration(Date.now() / 1000 - c.since)}${share(c)})`).join(", ") || "–";
    const cells = job
      ? [n.job.chunks ?? 0, n.job.done ?? 0, n.job.failed ?? 0, running]
      : [running, n.done ?? 0, n.failed ?? 0];
    return h("tr", { "data-node": n.worker, "data-state": n.state, class: n.state === "lost" ? "lost" : null },
      h("td", { text: n.worker }), h("td", {}, badge(n.state)), h("td", { text: where(n) }),
      h("td", { text: `${n.busy ?? 0}/${n.slots ?? 0}` }), cells.map((c) => h("td", { text: c })),
      h("td", { text: percent(n.cpu) }), h("td", { text: memory(n) }),
      h("td", { text: n.seen === null ? "–" : `${duration(n.seen)} ago` }));
  }));
}

function drawNodes(all) {
  section($("main"), "nodes", all.nodes, (nodes) => {
    const lost = nodes.filter((n) => n.lost).length;
    return [h("h1", { text: `Nodes (${nodes.length}${lost ? `, ${lost} lost` : ""})` }), nodesTable(nodes, null)];
  });
}

function drawFleet(all) {
  section($("main"), "fleet", all.fleet, (fleet) => {
    if (fleet === null) return h("p", { class: "muted", text: "This backend has no cloud fleet (fleets run on s3:// backends)." });
    const out = [h("h1", { text: `Fleet (${fleet.instances.length} instances, ${money(fleet.dollars)} spent)` })];
    if (fleet.error) out.push(h("p", { class: "error", text: `EC2 could not be asked: ${fleet.error}` }));
    if (fleet.asked === null) out.push(h("p", { class: "muted", text: "Asking EC2…" }));
    else out.push(h("p", { class: "muted", text: `EC2 asked at ${when(fleet.asked)}` }));
    out.push(table(["instance", "job", "type", "zone", "lifecycle", "state", "$/h", "up", "tasks done", "trouble"],
      fleet.instances.map((i) => h("tr", { "data-instance": i.id },
        h("td", { text: i.id }), h("td", { text: i.job || "" }), h("td", { text: i.type }),
        h("td", { text: i.zone }), h("td", { text: i.lifecycle }), h("td", {}, badge(i.state)),
        h("td", { text: i.price === null ? "–" : i.price.toFixed(4) }),
        h("td", { text: duration(Date.now() / 1000 - i.launched) }), h("td", { text: i.tasks_done }),
        h("td", { class: i.trouble ? "error" : null, text: i.trouble || "" })))));
    return out;
  });
}

function drawJob(job) {
  const main = $("main");
  if (main.dataset.job !== job.id) {
    main.replaceChildren();
    main.dataset.job = job.id;
    state.shown = {};
    state.open.clear();
  }
  section(main, "job-head", [job.id, job.name, job.kind, job.state, job.can_retry, job.can_cancel, job.failed + job.dead], () => [
    h("p", {}, h("a", { href: "#/", text: "← all jobs" })),
    h("h1", {}, `${job.id} `, badge(job.state)),
    h("p", { class: "muted", text: `${job.kind} job ${job.name ? `“${job.name}” ` : ""}created ${when(job.created)}` }),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "retry", disabled: !job.can_retry, on: { click: () => ask("retry", job) } }, "Retry failed"),
      h("button", { type: "button", id: "cancel", class: "danger", disabled: !job.can_cancel, on: { click: () => ask("cancel", job) } }, "Cancel job")),
  ]);
  section(main, "job-progress", [job.settled, job.done, job.failed, job.dead, job.running, job.queued, job.dropped, job.rate, job.eta, job.dollars, job.exact, job.incomplete], () => [
    bar(job, "progress"),
    h("p", { class: "counts", id: "counts" },
      `${job.done}/${job.total} done · ${job.failed} failed · ${job.dead} dead · ${job.running} running · ${job.queued} queued`,
      job.dropped ? ` · ${job.dropped} dropped (cancelled)` : "",
      job.exact ? "" : " (estimates)"),
    job.settled ? null : h("p", { class: "muted", id: "pace" }, `${rate(job.rate)} · ${duration(job.eta)} left`),
    job.dollars === null ? null : h("p", { class: "muted", id: "dollars" }, `${money(job.dollars)} spent on cloud workers, ${job.instances} instances running`),
    job.incomplete ? h("p", { class: "error", text: job.incomplete }) : null,
  ]);
  section(main, "job-chart", [job.samples, job.settled], ([samples, settled]) => [
    h("h2", { text: "Throughput" }),
    samples.length < 2 && settled ? h("p", { class: "muted", text: "The job had finished before this dashboard watched it." }) : chart(samples),
  ]);
  section(main, "job-nodes", job.nodes, (nodes) => [h("h2", { text: `Nodes (${nodes.length})` }), nodesTable(nodes, job.id)]);
  section(main, "job-failures", [job.failures, job.failed_chunks], () => failures(job));
  section(main, "job-dead", job.dead_chunks, (dead) => dead.length ? [
    h("h2", { text: `Dead letters (${dead.length} chunks)` }),
    table(["chunk", "tasks", "reason", "receives"], dead.map((d) => h("tr", { "data-chunk": d.chunk },
      h("td", { text: d.chunk }), h("td", { text: `${d.tasks}: ${d.first_tasks.join(", ")}${d.tasks > d.first_tasks.length ? ", …" : ""}` }),
      h("td", { class: "reason", text: d.reason }), h("td", { text: d.receives })))),
  ] : []);
}

function failures(job) {
  if (!job.failures.length) return [];
  const out = [h("h2", { text: `Failures (${job.failed} failed task${job.failed === 1 ? "" : "s"}${job.failed_chunks > 50 ? `; the latest 50 of ${job.failed_chunks} chunks shown` : ""})` })];
  for (const f of job.failures) {
    const details = h("details", { class: "failure", "data-task": f.task, open: state.open.has(f.task),
      on: { toggle: (e) => (e.target.open ? state.open.add(f.task) : state.open.delete(f.task)) } },
      h("summary", {}, h("strong", { text: `task ${f.task}` }), ` ${f.type.split(".").pop()}: `,
        h("span", { class: "message", text: f.message.split("\n")[0] }),
        h("span", { class: "muted", text: ` (${f.attempts} attempt${f.attempts === 1 ? "" : "s"})` })),
      h("pre", { class: "traceback", text: f.traceback || f.message }),
      h("p", { class: "logs" }, "logs: ", f.logs.map((l) => h("a", { href: l.url, class: "log", "data-attempt": l.attempt,
        on: { click: (e) => { e.preventDefault(); showLog(job.id, f.task, l); } } }, `attempt ${l.attempt}`))));
    out.push(details);
  }
  return out;
}

// Tasks per second between samples, as a small line chart.
function chart(samples) {
  const W = 640, H = 120, P = 28;
  if (samples.length < 2) return h("p", { class: "muted", text: "Collecting samples…" });
  // Over a window of 10 s at least: heartbeats (every 5 s) move the counts in steps.
  const points = [];
  for (let i = 1, j = 0; i < samples.length; i++) {
    const [t1, n1] = samples[i];
    while (j + 1 < i && t1 - samples[j + 1][0] >= WINDOW_S) j++;
    const [t0, n0] = samples[j];
    if (t1 - t0 >= WINDOW_S) points.push([t1, Math.max(0, (n1 - n0) / (t1 - t0))]);
  }
  if (!points.length) return h("p", { class: "muted", text: "Collecting samples…" });
  const t0 = samples[0][0], t1 = samples[samples.length - 1][0];
  const top = Math.max(...points.map((p) => p[1]), 0.001);
  const x = (t) => P + ((W - 2 * P) * (t - t0)) / Math.max(1e-9, t1 - t0);
  const y = (v) => H - P / 2 - ((H - P) * v) / top;
  const line = points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "tasks per second" },
    svg("line", { x1: P, y1: y(0), x2: W - P, y2: y(0), class: "axis" }),
    svg("polyline", { points: `${x(points[0][0])},${y(0)} ${line} ${x(t1)},${y(0)}`, class: "area" }),
    svg("polyline", { points: line, class: "line" }),
    svg("text", { x: 2, y: y(top) + 4, class: "label" }, document.createTextNode(rate(top))),
    svg("text", { x: P, y: H - 1, class: "label" }, document.createTextNode(new Date(t0 * 1000).toLocaleTimeString())),
    svg("text", { x: W - P, y: H - 1, class: "label end" }, document.createTextNode(new Date(t1 * 1000).toLocaleTimeString())));
}

// --- actions and the log viewer --------------------------------------------------------

function ask(action, job) {
  const dialog = $("confirm");
  const failed = job.failed + job.dead;
  $("confirm-title").textContent = action === "cancel" ? `Cancel job ${job.id}?` : `Retry the failures of ${job.id}?`;
  $("confirm-text").textContent = action === "cancel"
    ? "Workers drop its remaining chunks; the results stored so far stay. This cannot be undone."
    : `Its ${failed} failed and dead tasks are sent again, with the same code; their new attempts replace the failures.`;
  $("confirm-yes").textContent = action === "cancel" ? "Cancel job" : "Retry failed";
  $("confirm-yes").onclick = async () => {
    dialog.close();
    try {
      const done = await api(`/api/jobs/${encodeURIComponent(job.id)}/${action}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ confirm: job.id }),
      });
      notify(action === "cancel"
        ? (done.cancelled ? `Job ${job.id} is cancelled.` : `Job ${job.id} was cancelled already.`)
        : `Sent ${done.sent} tasks of job ${job.id} again.`, false);
    } catch (error) {
      notify(error.message, true);
    }
    tick();
  };
  $("confirm-no").onclick = () => dialog.close();
  dialog.showModal();
}

async function showLog(jobId, task, link) {
  $("log-title").textContent = `job ${jobId}, task ${task}, attempt ${link.attempt}`;
  $("log-text").textContent = "…";
  $("logview").showModal();
  try {
    const text = await api(link.url);
    $("log-text").textContent = text || "(this attempt printed nothing)";
  } catch (error) {
    $("log-text").textContent = `could not read the log: ${error.message}`;
  }
}

$("log-close").addEventListener("click", () => $("logview").close());
window.addEventListener("hashchange", () => {
  $("main").replaceChildren();
  delete $("main").dataset.job;
  state.shown = {};
  tick();
});
tick();
