// Text tables and the Markdown + SVG report, written to a real directory and checked for well-formed SVG.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { compareRuns } from "../../src/metrics/compare.js";
import { formatComparison, formatNumber, formatRun, table } from "../../src/metrics/format.js";
import { cdfPoints, latencyFamilies, writeReport } from "../../src/metrics/report.js";
import { lineChart, linearScale, logScale } from "../../src/metrics/svg.js";
import { scaleRun, spawnRun, tempDir, toolsRun } from "./helpers.js";

const ESC = "\u001b";

/** Checks that an SVG document is well formed: one <svg> root, every tag closed in order, attributes quoted. */
function assertWellFormedSvg(svg: string, name = "svg"): void {
  assert.ok(svg.startsWith("<svg"), `${name} starts with <svg`);
  assert.ok(svg.trimEnd().endsWith("</svg>"), `${name} ends with </svg>`);
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  let m: RegExpExecArray | null;
  let roots = 0;
  while ((m = tag.exec(svg)) !== null) {
    const between = svg.slice(last, m.index);
    assert.ok(!/[<>]/.test(between), `${name}: stray < or > near ${JSON.stringify(between.slice(0, 60))}`);
    assert.ok(!/&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(between), `${name}: unescaped & in text`);
    last = tag.lastIndex;
    const [, close, tagName, , selfClose] = m as unknown as [string, string, string, string, string];
    if (close) assert.equal(stack.pop(), tagName, `${name}: </${tagName}> closes what was opened`);
    else if (!selfClose) {
      if (stack.length === 0) roots++;
      stack.push(tagName);
    }
  }
  assert.ok(!/[<>]/.test(svg.slice(last)), `${name}: trailing junk`);
  assert.deepEqual(stack, [], `${name}: every tag closed`);
  assert.equal(roots, 1, `${name}: one root element`);
}

test("formatNumber and table align columns", () => {
  assert.equal(formatNumber(0), "0");
  assert.equal(formatNumber(0.79432), "0.794");
  assert.equal(formatNumber(1.044), "1.04");
  assert.equal(formatNumber(63.32), "63.3");
  assert.equal(formatNumber(117.46), "117.5");
  assert.equal(formatNumber(66123.4), "66,123");
  assert.equal(formatNumber(null), "—");
  const t = table(["a", "bbb"], [["xx", "1"], ["y", "22.5"]], ["l", "r"]).split("\n");
  assert.deepEqual(t, ["a    bbb", "──  ────", "xx     1", "y   22.5"]);
});

test("formatRun and the report say which node flags a run ran with, made inert, and nothing for a run without", async () => {
  const plain = await spawnRun("2025-01-31T10:00:00.000Z");
  assert.doesNotMatch(formatRun(plain), /node flags/);
  const flagged = { ...plain, machine: { ...plain.machine, nodeFlags: ["--no-opt", "--x=\u001b[31mred`"] } };
  const text = formatRun(flagged);
  assert.match(text, /^machine: .*node v[^,]+, node flags --no-opt --x=\?\[31mred\?/m);
  assert.ok(!text.includes(ESC), "a stored flag cannot colour the terminal");
  const t = tempDir();
  try {
    writeReport([{ id: "spawn/flagged", run: flagged }], t.dir);
    const md = readFileSync(join(t.dir, "report.md"), "utf8");
    assert.match(md, /node flags --no-opt --x=\?\[31mred\?\./);
  } finally {
    t.remove();
  }
});

test("formatRun: aligned metrics table, criteria with PASS/FAIL/— and targets, notes; no colour unless asked", async () => {
  const run = await toolsRun("2025-01-31T11:00:00.000Z");
  const text = formatRun(run, { id: "tools/x" });
  assert.ok(!text.includes(ESC), "no ANSI codes when color is off");
  assert.match(text, /^tools on microvm \(kvm\) · commit def5678 · 2025-01-31 11:00:00Z · 1 min 35 s · tools\/x$/m);
  assert.match(text, /^machine: 2 × Test CPU/m);
  const lines = text.split("\n");
  const header = lines.find((l) => l.startsWith("metric"));
  assert.ok(header);
  const p50col = header.indexOf("p50") + 3;
  const rows = lines.filter((l) => l.startsWith("tool_latency_ms.") || l.startsWith("pss_"));
  assert.ok(rows.length >= 6);
  // right-aligned numbers: each p50 cell ends in the same column as its header
  for (const r of rows) assert.notEqual(r[p50col - 1], " ", `p50 column aligned in ${JSON.stringify(r)}`);
  assert.match(text, /1000\+ tool executions\/min\s+phase3\s+p50 ≥ 1000 ops\/min\s+66,123\s+PASS/);
  assert.match(text, /read_file p95 ≤ 3 ms\s+project\s+p95 ≤ 3 ms\s+4\.63\s+FAIL/);
  assert.match(text, /never measured\s+project\s+p50 < 1\s+—\s+—/);
  assert.match(text, /4 of 6 criteria pass, 1 fail, 1 not measured/);
  assert.match(text, /notes:\n {2}- tools: 0 operations failed/);
  const colored = formatRun(run, { color: true });
  assert.ok(colored.includes(`${ESC}[32mPASS${ESC}[0m`));
  assert.ok(colored.includes(`${ESC}[31mFAIL${ESC}[0m`));
});

test("formatComparison: ratio, interval and verdict per metric", async () => {
  const a = await spawnRun("2025-01-01T00:00:00.000Z", { seed: 1 });
  const b = await spawnRun("2025-01-02T00:00:00.000Z", { seed: 1, slowdown: 2 });
  const text = formatComparison(compareRuns(a, b), { a: "A-run", b: "B-run" });
  assert.match(text, /^A: A-run\nB: B-run/);
  assert.match(text, /spawn_ms\s+ms\s+\S+\s+\S+\s+2\.00×\s+\d\.\d\d–\d\.\d\d\s+slower/);
  assert.match(text, /baseline_process_spawn_ms\s+ms\s+\S+\s+\S+\s+1\.00×\s+\S+\s+same \(within noise\)/);
  assert.match(text, /median spawn < 100 ms\s+\S+ PASS\s+\S+ FAIL\s+broke/);
});

test("scales: nice linear ticks, log decades", () => {
  const l = linearScale(0, 87, 0, 100);
  assert.deepEqual(l.ticks, [0, 20, 40, 60, 80, 100]);
  assert.equal(l(50), 50);
  const g = logScale(0.3, 150, 0, 300);
  assert.deepEqual(g.domain, [0.1, 1000]);
  assert.equal(g(1), 75);
  assert.ok(g.ticks.includes(0.2) && g.ticks.includes(500));
});

test("cdfPoints: a step per sample when few, quantiles when many; latency families pair refs", async () => {
  const few = cdfPoints([3, 1, 2]);
  assert.equal(few.step, true);
  assert.deepEqual(few.points, [
    [1, 0],
    [1, 1 / 3],
    [2, 2 / 3],
    [3, 1],
  ]);
  const many = cdfPoints(Array.from({ length: 5000 }, (_, i) => i));
  assert.equal(many.step, false);
  assert.equal(many.points.length, 401);
  assert.deepEqual(many.points[400], [4999, 1]);
  const fams = latencyFamilies(await toolsRun("2025-01-31T11:00:00.000Z"));
  assert.deepEqual(
    fams.map((f) => f.key),
    ["tool_latency_ms"],
  );
  assert.equal(fams[0]?.members.filter((m) => m.reference).length, 5);
});

test("writeReport writes report.md and well-formed SVG charts it links to", async () => {
  const t = tempDir();
  try {
    const a = await spawnRun("2025-01-30T10:00:00.000Z");
    const b = await spawnRun("2025-01-31T10:00:00.000Z", { slowdown: 1.4, seed: 5 });
    const tools = await toolsRun("2025-01-31T11:00:00.000Z");
    const out = join(t.dir, "nested", "report");
    const r = writeReport(
      [
        { id: "spawn/a", run: a },
        { id: "spawn/b", run: b },
        { id: "tools/x", run: tools },
      ],
      out,
    );
    assert.equal(r.markdown, join(out, "report.md"));
    const md = readFileSync(r.markdown, "utf8");
    const files = readdirSync(out).filter((f) => f.endsWith(".svg"));
    assert.equal(files.length, r.charts.length);
    assert.ok(files.some((f) => f.includes("cdf")), "latency CDFs");
    assert.ok(files.some((f) => f.includes("series-throughput")), "throughput over time");
    assert.ok(files.some((f) => f.includes("cpu")), "CPU over time");
    assert.ok(files.some((f) => f.includes("memory-pss")), "memory per sandbox");
    for (const f of files) {
      const svg = readFileSync(join(out, f), "utf8");
      assertWellFormedSvg(svg, f);
      assert.match(svg, /<text[^>]*font-size="16"[^>]*>[^<]+<\/text>/, `${f} has a title`);
      if (f.includes("memory")) assert.match(svg, /<rect[^>]+fill="#/, `${f} has bars`);
      else assert.match(svg, /<polyline /, `${f} has lines`);
      assert.ok(md.includes(`](${f})`), `report.md embeds ${f}`);
    }
    const cdf = readFileSync(join(out, files.find((f) => f.includes("tool-latency")) as string), "utf8");
    assert.match(cdf, /log scale/, "latencies spanning decades get a log axis");
    assert.match(cdf, /read_file p95 ≤ 3 ms/, "targets drawn on the chart");
    for (const link of md.matchAll(/\]\(([^)#]+\.svg)\)/g)) assert.ok(existsSync(join(out, link[1] as string)), `${link[1]} exists`);
    assert.match(md, /^# LuminaGuard benchmark report$/m);
    assert.match(md, /\| ✅ PASS \| median spawn < 100 ms \| phase3 \| `spawn_ms` p50 < 100 ms \| [\d.]+ ms \|/);
    assert.match(md, /\| ❌ FAIL \| read_file p95 ≤ 3 ms \|/);
    assert.match(md, /\| — not measured \| never measured \|/);
    assert.match(md, /## Comparisons/);
    assert.match(md, /### spawn on namespace: `spawn\/a` → `spawn\/b`/);
    assert.match(md, /`spawn_ms` \| ms \| [\d.]+ \| [\d.]+ \| 1\.\d\d× \| [\d.]+–[\d.]+ \| \*\*slower\*\*/);
  } finally {
    t.remove();
  }
});

test("charts escape text and survive odd input: one point, equal values, markup in names", () => {
  const svg = lineChart({
    title: "a <b> & \"c\"",
    xLabel: "x",
    yLabel: "y",
    series: [
      { name: "one <point>", points: [[5, 5]] },
      { name: "flat", points: [
        [1, 2],
        [2, 2],
      ] },
    ],
  });
  assertWellFormedSvg(svg);
  assert.match(svg, /a &lt;b&gt; &amp; &quot;c&quot;/);
  assert.doesNotMatch(svg, /NaN|Infinity/);
});

test("the report opens with one summary table of every criterion of every run (Phase 3 first, failures first), then the runs", async () => {
  const t = tempDir();
  try {
    const spawn = await spawnRun("2025-01-30T10:00:00.000Z");
    const tools = await toolsRun("2025-01-31T11:00:00.000Z");
    const r = writeReport(
      [
        { id: "spawn/a", run: spawn },
        { id: "tools/x", run: tools },
      ],
      t.dir,
    );
    const md = readFileSync(r.markdown, "utf8");
    const summaryAt = md.indexOf("## Summary: every criterion");
    const runsAt = md.indexOf("## Runs");
    assert.ok(summaryAt > 0 && summaryAt < runsAt, "the summary comes first");
    const section = md.slice(summaryAt, runsAt);
    const rows = section.split("\n").filter((l) => /^\| (✅|❌|—)/.test(l));
    assert.equal(rows.length, spawn.criteria.length + tools.criteria.length, "every criterion of every run, once");
    const firstProject = rows.findIndex((l) => l.includes("| project |"));
    assert.ok(rows.slice(0, firstProject).every((l) => l.includes("| Phase 3 |")), "Phase 3 criteria first");
    assert.ok(rows.slice(firstProject).every((l) => l.includes("| project |")));
    assert.match(rows[firstProject] ?? "", /❌ FAIL \| read_file p95 ≤ 3 ms \| project \| [\d.]+ ms \| `tool_latency_ms.read_file` p95 ≤ 3 ms \| \[`tools\/x`\]\(#run-tools-x\) microvm/);
    assert.match(section, /\| ✅ PASS \| median spawn < 100 ms \| Phase 3 \| [\d.]+ ms \|.*\[`spawn\/a`\]/);
    assert.match(section, /❌ \d+ of 10 criteria pass, \d+ fail, 2 not measured/);
  } finally {
    t.remove();
  }
});

test("a scale run gets throughput and latency against agents, a row per agent count, and no per-level series flood", async () => {
  const t = tempDir();
  try {
    const run = await scaleRun("2025-02-01T10:00:00.000Z", { failures: { 25: { CAPACITY: 3, SANDBOX_SPAWN_FAILED: 2 } } });
    const r = writeReport([{ id: "scale/s", run }], t.dir);
    const md = readFileSync(r.markdown, "utf8");
    const files = readdirSync(t.dir).filter((f) => f.endsWith(".svg"));
    const tp = files.find((f) => f.endsWith("throughput-vs-agents.svg"));
    const lat = files.find((f) => f.endsWith("latency-vs-agents.svg"));
    assert.ok(tp && lat, files.join(", "));
    for (const f of [tp, lat]) {
      const svg = readFileSync(join(t.dir, f), "utf8");
      assertWellFormedSvg(svg, f);
      assert.match(svg, /agents at once/);
      assert.match(svg, /<polyline /);
    }
    assert.match(readFileSync(join(t.dir, tp), "utf8"), /90% of peak/);
    assert.match(readFileSync(join(t.dir, lat), "utf8"), /tool call p99/);
    const wait = files.find((f) => f.endsWith("sandbox-wait-vs-agents.svg"));
    assert.ok(wait, "time to get a sandbox against agents");
    assertWellFormedSvg(readFileSync(join(t.dir, wait), "utf8"), wait);
    assert.match(md, /### Per agent count/);
    assert.match(md, /^\| 1 \| 2000 \|/m);
    assert.match(md, /^\| 25 \| 6300 \| .* \| 5 \(CAPACITY×3, SANDBOX_SPAWN_FAILED×2\) \|/m);
    assert.match(md, /❌ FAIL \| no failure other than CAPACITY/);
    assert.ok(!files.some((f) => /series-|cpu-/.test(f)), "no chart per level and series");
    const text = formatRun(run);
    assert.match(text, /^agents\s+ops\/min\s+per agent/m);
    assert.match(text, /^\s+10\s+6400\s/m);
  } finally {
    t.remove();
  }
});
