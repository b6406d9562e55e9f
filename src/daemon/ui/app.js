// The dashboard's script: polls the daemon's JSON API and draws it. Every string from the API is text
// (textContent, setAttribute), never markup: card text comes from models and workspaces and is hostile.
/* global document, fetch, setTimeout, clearTimeout, location, history, Node */
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";

function $(id) {
  return document.getElementById(id);
}

/** An element with text content and attributes; children appended as given. */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c === undefined || c === null ? "" : String(c)));
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function time(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString();
}

function row(cells, attrs) {
  return el("tr", attrs, ...cells.map((c) => el("td", {}, c)));
}

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: "application/json" }, cache: "no-store" });
  if (!res.ok) {
    let code = String(res.status);
    try {
      code = (await res.json()).code ?? code;
    } catch {
      /* not JSON */
    }
    throw new Error(code);
  }
  return res.json();
}

function drawChart(target, values, format) {
  const W = 300;
  const H = 80;
  const top = 10;
  const nums = values.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null));
  const max = Math.max(1, ...nums.filter((v) => v !== null));
  const step = values.length > 1 ? W / (values.length - 1) : W;
  const y = (v) => (H - (v / max) * (H - top)).toFixed(1);
  const children = [svg("line", { x1: 0, y1: top, x2: W, y2: top }), svg("line", { x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5 })];
  const label = svg("text", { x: 2, y: top - 2 });
  label.textContent = `max ${format(max)}`;
  children.push(label);
  // One polyline per run of points that have a value (no line through seconds without calls).
  let points = [];
  const flush = () => {
    // A lone second with calls is a short dash, so that it shows.
    if (points.length === 1) points = [`${Math.max(0, points[0][0] - step / 2).toFixed(1)},${points[0][1]}`, `${Math.min(W, points[0][0] + step / 2).toFixed(1)},${points[0][1]}`];
    else points = points.map(([x, yy]) => `${x.toFixed(1)},${yy}`);
    if (points.length > 0) children.push(svg("polyline", { points: points.join(" ") }));
    points = [];
  };
  nums.forEach((v, i) => {
    if (v === null) flush();
    else points.push([i * step, y(v)]);
  });
  flush();
  target.replaceChildren(...children);
}

function renderStats(s) {
  $("summary").textContent = `v${s.version} · ${s.state} · up ${s.uptimeS} s · ${s.sandboxes.alive}/${s.sandboxes.max} sandboxes · ${s.sandboxes.inFlight} in flight · load ${s.host.load1.toFixed(2)} · memory available ${(s.host.memoryAvailableBytes / 2 ** 30).toFixed(1)} GiB`;
  const a = s.admission;
  if (a) $("summary").textContent += ` · budget ${(a.memoryCommittedMiB / 1024).toFixed(1)}/${(a.memoryBudgetMiB / 1024).toFixed(1)} GiB committed · ${a.calls}/${a.maxCalls} calls · queued ${a.queued.sandbox + a.queued.call}`;
  $("pools").replaceChildren(
    ...Object.entries(s.pools).map(([b, p]) => row([b, p.ready, p.spawning, p.target, p.waiting, p.handedOut, p.spawnFailures], { "data-backend": b })),
  );
  if (Object.keys(s.pools).length === 0) $("pools").replaceChildren(row(["no pool (no backend works here, or pools are off)"]));
  const sp = s.vmmSpares;
  $("spares").textContent = !sp || sp.target === 0 ? "micro-VM spares: none kept" : `micro-VM spares (QEMU started, warmed, paused for the next restore): ${sp.ready} ready of ${sp.target}`;
  $("calls").replaceChildren(...s.calls.sort((a, b) => a.tool.localeCompare(b.tool) || a.outcome.localeCompare(b.outcome)).map((c) => row([c.tool, c.outcome, c.count])));
  const rates = s.series.map((p) => p.calls);
  drawChart($("chart-rate"), rates, (v) => `${v}/s`);
  drawChart($("chart-p50"), s.series.map((p) => p.p50Ms), (v) => `${v.toFixed(1)} ms`);
  $("rate-now").textContent = `(last 60 s: ${rates.reduce((a, b) => a + b, 0)} calls)`;
  $("p50-now").textContent = s.latency.p50Ms === null ? "(no calls in 60 s)" : `(60 s: p50 ${s.latency.p50Ms} ms, p95 ${s.latency.p95Ms} ms)`;
  $("errors").replaceChildren(...s.recentErrors.map((e) => row([time(e.at), e.code, e.where, el("span", { class: "msg" }, e.message)])));
}

function renderSandboxes(list) {
  $("sandboxes-count").textContent = String(list.length);
  $("sandboxes").replaceChildren(
    ...list.map((x) => row([x.id, x.backend, x.source, x.approval, x.client ?? "", x.inFlight, time(x.createdAt), time(x.lastUsedAt)], { "data-sandbox-id": x.id })),
  );
}

/** The node's cluster view (GET /v1/cluster); the section stays hidden on a daemon that is not a cluster node. */
function renderCluster(view) {
  const section = $("cluster-section");
  if (!view) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  const nodes = Array.isArray(view.nodes) ? view.nodes : [];
  const free = nodes.reduce((n, x) => n + (Number(x.free) || 0), 0);
  $("cluster-summary").textContent =
    `this node ${view.node} · ${view.connected ? `connected to ${view.server}` : "DISCONNECTED"} · ${nodes.length} node(s), ${free} sandbox(es) free` + (view.error ? ` · ${view.error}` : "");
  $("cluster-nodes").replaceChildren(
    ...nodes.map((x) =>
      row(
        [x.name === view.node ? `${x.name} (this node)` : x.name, x.state, `${x.free} / ${x.max}`, x.alive, x.clusterSandboxes, x.inFlight, x.load1, x.version, time(x.at)],
        { "data-node": x.name },
      ),
    ),
  );
}

/** GET /v1/cluster (asked only of a cluster node), or undefined when the look failed. */
async function clusterView() {
  try {
    return await getJson("/v1/cluster");
  } catch {
    return undefined;
  }
}

function renderAudit(entries) {
  $("audit").replaceChildren(
    ...entries
      .slice()
      .reverse()
      .map((a) => {
        const r = row([time(a.time), a.tool, a.decision, a.channel, a.actor, a.rule, a.card && typeof a.card.summary === "string" ? a.card.summary : ""], { "data-audit-id": a.id });
        r.children[2]?.setAttribute("class", a.decision === "deny" ? "decision-deny" : "decision-allow");
        return r;
      }),
  );
}

/** A unified diff as lines, each coloured by its first character (still text, never markup). */
function diffBlock(diff) {
  const pre = el("pre", { class: "diff" });
  for (const line of String(diff).split("\n")) {
    const cls = line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : "";
    pre.append(cls ? el("span", { class: cls }, line) : el("span", {}, line), cls ? "" : "\n");
  }
  return pre;
}

function cardDetails(card) {
  const d = card.details ?? {};
  const out = [];
  if (d.kind === "write_file") {
    const facts = [`path: ${d.path}`];
    if (d.target) facts.push(`really writes: ${d.target}`);
    if (d.replacesSymlink) facts.push(`replaces a symlink to ${d.replacesSymlink}`);
    facts.push(d.newFile ? `new file, ${d.bytesAfter} bytes` : `${d.bytesBefore ?? "?"} → ${d.bytesAfter} bytes`);
    if (d.binary) facts.push("binary");
    if (d.refused) facts.push("outside the workspace: the sandbox will refuse it");
    out.push(el("div", { class: "facts" }, facts.join(" · ")));
    if (d.diff) out.push(diffBlock(d.diff));
    if (d.diffTruncated) out.push(el("div", { class: "muted" }, `diff truncated (${d.diffChars} characters in all)`));
    if (d.note) out.push(el("div", { class: "muted" }, d.note));
  } else if (d.kind === "execute_command") {
    out.push(el("pre", {}, `$ ${d.command}`));
    out.push(el("div", { class: "facts" }, `cwd: ${d.cwd}${d.timeoutMs ? ` · timeout ${d.timeoutMs} ms` : ""}`));
    if (d.env && Object.keys(d.env).length > 0) out.push(el("pre", {}, Object.entries(d.env).map(([k, v]) => `${k}=${v}`).join("\n")));
    if (d.stdin !== undefined) out.push(el("pre", {}, `stdin (${d.stdinBytes ?? "?"} bytes):\n${String(d.stdin).slice(0, 4000)}`));
  } else {
    if (d.kind === "external") out.push(el("div", { class: "facts" }, `server ${d.server}, tool ${d.tool}${d.description ? `: ${d.description}` : ""}`));
    out.push(el("pre", {}, JSON.stringify(d.args ?? null, null, 2)));
    if (d.note) out.push(el("div", { class: "muted" }, d.note));
  }
  return out;
}

const cards = new Map();

async function answer(id, decision, card) {
  for (const b of card.querySelectorAll("button")) b.disabled = true;
  const res = await fetch(`/v1/approvals/${encodeURIComponent(id)}`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ decision, actor: "dashboard" }),
  });
  const status = card.querySelector(".answer");
  if (res.ok) {
    status.textContent = decision === "approve" ? "approved" : "denied";
    card.setAttribute("data-answered", decision);
  } else {
    let msg = String(res.status);
    try {
      const e = await res.json();
      msg = `${e.code}: ${e.message}`;
    } catch {
      /* not JSON */
    }
    status.textContent = `not answered: ${msg}`;
  }
  void refresh();
}

function renderApprovals(pending) {
  $("approvals-count").textContent = String(pending.length);
  $("approvals-empty").hidden = pending.length > 0;
  const ids = new Set(pending.map((p) => p.id));
  for (const [id, card] of cards) {
    if (!ids.has(id)) {
      card.remove();
      cards.delete(id);
    }
  }
  const box = $("approvals");
  for (const p of pending) {
    if (cards.has(p.id)) continue;
    const c = p.card ?? {};
    const context = Object.entries(p.context ?? {}).map(([k, v]) => `${k} ${v}`).join(" · ");
    const approve = el("button", { class: "approve", type: "button" }, "Approve");
    const deny = el("button", { class: "deny", type: "button" }, "Deny");
    const card = el(
      "div",
      { class: "approval", "data-approval-id": p.id },
      el("div", { class: "head" }, el("span", { class: "summary" }, c.summary ?? p.tool), el("span", { class: "muted" }, `${p.tool} · risk ${c.risk} · rule ${c.rule}`)),
      el("div", { class: "muted" }, `${context} · asked ${time(p.requestedAt)} · denied at ${time(p.expiresAt)} without an answer`),
      ...cardDetails(c),
      el("div", { class: "actions" }, approve, deny, el("span", { class: "answer muted" })),
    );
    approve.addEventListener("click", () => void answer(p.id, "approve", card));
    deny.addEventListener("click", () => void answer(p.id, "deny", card));
    cards.set(p.id, card);
    box.append(card);
  }
}

let timer;

async function refresh() {
  clearTimeout(timer);
  const status = $("status");
  try {
    const [stats, sandboxes, approvals, audit] = await Promise.all([
      getJson("/v1/stats"),
      getJson("/v1/sandboxes"),
      getJson("/v1/approvals"),
      getJson("/v1/audit?tail=20"),
    ]);
    // Only a cluster node has a cluster view (elsewhere GET /v1/cluster is a 404 the console would show).
    const cluster = stats.clusterNode ? await clusterView() : undefined;
    renderCluster(cluster);
    renderStats(stats);
    renderSandboxes(sandboxes.sandboxes);
    renderApprovals(approvals.pending);
    renderAudit(audit.entries);
    status.textContent = `live · ${new Date().toLocaleTimeString()}`;
    status.className = "status ok";
  } catch (err) {
    status.textContent = err.message === "UNAUTHORIZED" ? "signed out: open /ui?token=TOKEN again" : `cannot reach the daemon (${err.message})`;
    status.className = "status bad";
  }
  timer = setTimeout(() => void refresh(), POLL_MS);
}

if (location.search !== "") history.replaceState(null, "", location.pathname);
document.addEventListener("DOMContentLoaded", () => void refresh());
