// `metrics list|show|compare|report` through commander on a fresh program, over a real store in a temp dir.
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Command } from "commander";
import { LuminaGuardError } from "../../src/errors.js";
import { registerMetricsCommand } from "../../src/cli/metrics.js";
import { saveRun } from "../../src/metrics/store.js";
import { spawnRun, tempDir, toolsRun } from "../metrics/helpers.js";

let store: { dir: string; remove: () => void };
let work: { dir: string; remove: () => void };

before(async () => {
  store = tempDir();
  work = tempDir();
  saveRun(await spawnRun("2025-01-01T00:00:00.000Z", { seed: 1 }), { dir: store.dir });
  saveRun(await spawnRun("2025-01-02T00:00:00.000Z", { seed: 1, slowdown: 2 }), { dir: store.dir });
  saveRun(await spawnRun("2025-01-03T00:00:00.000Z", { backend: "microvm" }), { dir: store.dir });
  saveRun(await toolsRun("2025-01-04T00:00:00.000Z"), { dir: store.dir });
});

after(() => {
  store.remove();
  work.remove();
});

/** Runs `metrics ...args` on a fresh program; returns what it printed, or throws what it threw. */
async function metrics(...args: string[]): Promise<string> {
  let out = "";
  const program = new Command().name("luminaguard").exitOverride();
  program.configureOutput({ writeOut: (s) => (out += s), writeErr: () => {} });
  registerMetricsCommand(program, { out: (s) => (out += s), dir: store.dir, cwd: work.dir, color: false });
  await program.parseAsync(["metrics", ...args], { from: "user" });
  return out;
}

test("metrics list: newest first, human and --json, --scenario filter", async () => {
  const text = await metrics("list");
  const ids = text
    .split("\n")
    .slice(2)
    .filter(Boolean)
    .map((l) => l.split(/\s+/)[0]);
  assert.deepEqual(ids, ["tools/2025-01-04T00-00-00.000Z", "spawn/2025-01-03T00-00-00.000Z", "spawn/2025-01-02T00-00-00.000Z", "spawn/2025-01-01T00-00-00.000Z"]);
  assert.match(text, /spawn\/2025-01-01T00-00-00\.000Z\s+namespace\s+abc1234\s+12\.3 s\s+3\/4 pass/);
  assert.match(text, /tools\/\S+\s+microvm\/kvm\s+def5678\s+1 min 35 s\s+4\/6 pass, 1 FAIL/);
  const json = JSON.parse(await metrics("list", "--json", "--scenario", "spawn")) as Array<{ id: string; backend: string; criteria: { pass: number } }>;
  assert.equal(json.length, 3);
  assert.equal(json[0]?.backend, "microvm");
  assert.equal(json[0]?.criteria.pass, 3);
  assert.equal((JSON.parse(await metrics("list", "--json", "--limit", "1")) as unknown[]).length, 1);
  await assert.rejects(metrics("list", "--scenario", "../x"), (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT");
});

test("metrics show: latest by default, any reference, --json without samples unless --full", async () => {
  const latest = await metrics("show");
  assert.match(latest, /^tools on microvm \(kvm\)/);
  assert.match(latest, /read_file p95 ≤ 3 ms.*FAIL/);
  const prev = await metrics("show", "spawn@namespace:previous");
  assert.match(prev, /^spawn on namespace · commit abc1234 · 2025-01-01 00:00:00Z/);
  await assert.rejects(metrics("show", "spawn:previous"), (e: unknown) => e instanceof LuminaGuardError && e.code === "NOT_FOUND" && /only 1 run of spawn on microvm/.test(e.message));
  const json = JSON.parse(await metrics("show", "spawn@namespace", "--json")) as Record<string, unknown>;
  assert.equal(json["id"], "spawn/2025-01-02T00-00-00.000Z");
  assert.equal(json["samples"], undefined);
  assert.ok((json["metrics"] as Record<string, unknown>)["spawn_ms"]);
  assert.ok(Array.isArray(json["criteria"]));
  const full = JSON.parse(await metrics("show", "spawn@namespace", "--json", "--full")) as Record<string, unknown>;
  assert.ok((full["samples"] as Record<string, number[]>)["spawn_ms"]?.length === 200);
  await assert.rejects(metrics("show", "nothing"), (e: unknown) => e instanceof LuminaGuardError && e.code === "NOT_FOUND");
});

test("metrics show: a corrupt file is a clear error naming it", async () => {
  const bad = join(store.dir, "spawn", "2024-12-31T00-00-00.000Z.json");
  writeFileSync(bad, "{ not json");
  try {
    await assert.rejects(metrics("show", "spawn/2024-12-31"), (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT" && e.message.includes(bad));
    assert.match(await metrics("list"), /spawn\/2024-12-31T00-00-00\.000Z\s+error: not valid JSON/);
  } finally {
    rmSync(bad);
  }
});

test("metrics compare: previous vs latest of a scenario, explicit refs, --json", async () => {
  const text = await metrics("compare", "spawn@namespace:previous", "spawn@namespace:latest");
  assert.match(text, /^A: spawn\/2025-01-01T00-00-00\.000Z \(namespace, commit abc1234\)/);
  assert.match(text, /spawn_ms\s+ms\s+\S+\s+\S+\s+2\.00×\s+\S+\s+slower/);
  assert.match(text, /baseline_process_spawn_ms.*same \(within noise\)/);
  const short = await metrics("compare", "spawn@namespace");
  assert.equal(short, text, "one scenario = its previous run against its latest");
  const json = JSON.parse(await metrics("compare", "spawn/2025-01-02", "spawn/2025-01-01", "--json")) as {
    a: { id: string };
    b: { id: string };
    metrics: Array<{ metric: string; ratio: number; verdict: string; outsideNoise: boolean }>;
  };
  assert.equal(json.a.id, "spawn/2025-01-02T00-00-00.000Z");
  const s = json.metrics.find((m) => m.metric === "spawn_ms");
  assert.equal(s?.verdict, "better");
  assert.equal(s?.outsideNoise, true);
  assert.ok(Math.abs((s?.ratio ?? 0) - 0.5) < 0.01);
  const cross = await metrics("compare", "spawn@namespace", "spawn@microvm");
  assert.match(cross, /note: A and B differ in backend/);
  await assert.rejects(metrics("compare", "spawn/2025-01-02"), (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT");
  await assert.rejects(metrics("compare", "spawn"), (e: unknown) => e instanceof LuminaGuardError && e.code === "NOT_FOUND", "spawn:latest is the only microvm run");
});

test("metrics report: default selection into .beads/reports/<timestamp>/, explicit runs and --out", async () => {
  const path = (await metrics("report")).trim();
  assert.ok(path.startsWith(join(work.dir, ".beads", "reports")), path);
  assert.ok(path.endsWith("report.md"));
  const md = readFileSync(path, "utf8");
  assert.match(md, /## tools on microvm/);
  assert.match(md, /## spawn on namespace/);
  assert.match(md, /## spawn on microvm/);
  assert.doesNotMatch(md, /## Comparisons/, "one run per scenario and backend by default");
  const out = join(work.dir, "r2");
  const p2 = (await metrics("report", "--out", out, "--scenario", "spawn", "--last", "2")).trim();
  assert.equal(p2, join(out, "report.md"));
  assert.match(readFileSync(p2, "utf8"), /### spawn on namespace: `spawn\/2025-01-01T00-00-00\.000Z` → `spawn\/2025-01-02T00-00-00\.000Z`/);
  const p3 = (await metrics("report", "--out", join(work.dir, "r3"), "tools")).trim();
  assert.ok(existsSync(p3));
  await assert.rejects(metrics("report", "--scenario", "nothing"), (e: unknown) => e instanceof LuminaGuardError && e.code === "NOT_FOUND");
  await assert.rejects(metrics("report", "--last", "0"), (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT");
});

test("metrics --help documents run references", async () => {
  await assert.rejects(metrics("compare", "--help"), (e: unknown) => (e as { code?: string }).code === "commander.helpDisplayed");
  let help = "";
  const program = new Command().exitOverride();
  program.configureOutput({ writeOut: (s) => (help += s) });
  registerMetricsCommand(program, { out: () => {}, dir: store.dir });
  await assert.rejects(program.parseAsync(["metrics", "compare", "--help"], { from: "user" }));
  assert.match(help, /spawn:previous spawn:latest/);
  assert.match(help, /SCENARIO:~N/);
});
