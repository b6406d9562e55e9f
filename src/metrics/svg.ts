// Hand-written SVG charts (no chart library): scales with nice ticks, axes, gridlines, legends, lines, bars.
import { formatNumber } from "./format.js";

export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#6b6b6b"] as const;

const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, 'DejaVu Sans', sans-serif";
const INK = "#222";
const MUTED = "#666";
const GRID = "#e6e6e6";
const AXIS = "#999";

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");
}

type Attrs = Record<string, string | number | undefined>;

const r1 = (v: number): number => Math.round(v * 10) / 10;

/** One element; attribute values are escaped, numbers rounded to 0.1 px. */
function el(tag: string, attrs: Attrs, children?: string | readonly string[]): string {
  const a = Object.entries(attrs)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${typeof v === "number" ? r1(v) : escapeXml(String(v))}"`)
    .join("");
  if (children === undefined) return `<${tag}${a}/>`;
  const inner = typeof children === "string" ? children : children.join("\n");
  return `<${tag}${a}>${inner}</${tag}>`;
}

const text = (x: number, y: number, s: string, attrs: Attrs = {}): string => el("text", { x, y, ...attrs }, escapeXml(s));

/** Rough width of a label in px at a font size (average glyph of a sans-serif is ~0.56 em). */
function textWidth(s: string, size: number): number {
  return s.length * size * 0.56;
}

interface Scale {
  (v: number): number;
  ticks: number[];
  domain: [number, number];
  log: boolean;
  /** Log scales: label the 2 and 5 ticks too (few decades), not only the powers of ten. */
  labelMinor?: boolean;
}

/** 1, 2 or 5 times a power of ten: the step that gives about `count` ticks over the span. */
function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/** A linear scale over [lo, hi] widened to nice tick bounds, mapped onto [r0, r1]. */
export function linearScale(lo: number, hi: number, r0: number, r1_: number, count = 6, nice = true): Scale {
  if (!(hi > lo)) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep(hi - lo, count);
  const d0 = nice ? Math.floor(lo / step + 1e-9) * step : lo;
  const d1 = nice ? Math.ceil(hi / step - 1e-9) * step : hi;
  const ticks: number[] = [];
  for (let t = Math.ceil(d0 / step - 1e-9) * step; t <= d1 + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  const f = ((v: number) => r0 + ((v - d0) / (d1 - d0)) * (r1_ - r0)) as Scale;
  f.ticks = ticks;
  f.domain = [d0, d1];
  f.log = false;
  return f;
}

/** A log10 scale from the decade below lo to the decade above hi; gridlines at 1, 2, 5 × 10^k up to 4 decades, labelled up to 2. */
export function logScale(lo: number, hi: number, r0: number, r1_: number): Scale {
  const e0 = Math.floor(Math.log10(lo));
  let e1 = Math.ceil(Math.log10(hi));
  if (e1 === e0) e1 = e0 + 1;
  const d0 = 10 ** e0;
  const d1 = 10 ** e1;
  const decades = e1 - e0;
  const mults = decades <= 4 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let e = e0; e <= e1; e++) for (const m of mults) if (m * 10 ** e <= d1 * (1 + 1e-9)) ticks.push(Number((m * 10 ** e).toPrecision(6)));
  const f = ((v: number) => r0 + ((Math.log10(Math.max(v, d0)) - e0) / decades) * (r1_ - r0)) as Scale;
  f.ticks = ticks;
  f.domain = [d0, d1];
  f.log = true;
  f.labelMinor = decades <= 2;
  return f;
}

export interface LegendItem {
  label: string;
  color: string;
  dash?: string;
  kind?: "line" | "box";
}

interface Frame {
  width: number;
  height: number;
  left: number;
  top: number;
  plotW: number;
  plotH: number;
  legendY: number;
}

interface FrameSpec {
  width?: number;
  plotHeight?: number;
  title: string;
  subtitle?: string;
  legend?: readonly LegendItem[];
  left?: number;
  right?: number;
}

/** Legend rows under the plot: items flow left to right and wrap. */
function legendLayout(items: readonly LegendItem[], x0: number, maxW: number): Array<{ item: LegendItem; x: number; row: number }> {
  const out: Array<{ item: LegendItem; x: number; row: number }> = [];
  let x = x0;
  let row = 0;
  for (const item of items) {
    const w = 26 + textWidth(item.label, 12) + 18;
    if (x > x0 && x + w > x0 + maxW) {
      row++;
      x = x0;
    }
    out.push({ item, x, row });
    x += w;
  }
  return out;
}

const LEGEND_ROW = 20;

function frame(spec: FrameSpec): Frame & { legendRows: ReturnType<typeof legendLayout> } {
  const width = spec.width ?? 760;
  const left = spec.left ?? 72;
  const right = spec.right ?? 28;
  const top = spec.subtitle ? 66 : 48;
  const plotH = spec.plotHeight ?? 300;
  const plotW = width - left - right;
  const legendRows = legendLayout(spec.legend ?? [], left, plotW);
  const rows = legendRows.length ? Math.max(...legendRows.map((l) => l.row)) + 1 : 0;
  const legendY = top + plotH + 66;
  const height = rows > 0 ? legendY + (rows - 1) * LEGEND_ROW + 16 : top + plotH + 56;
  return { width, height, left, top, plotW, plotH, legendY, legendRows };
}

function header(f: Frame, spec: FrameSpec): string[] {
  const out = [
    el("rect", { x: 0, y: 0, width: f.width, height: f.height, fill: "#ffffff" }),
    text(f.left, 26, spec.title, { "font-size": 16, "font-weight": 600, fill: INK }),
  ];
  if (spec.subtitle) out.push(text(f.left, 46, spec.subtitle, { "font-size": 12, fill: MUTED }));
  return out;
}

function legend(f: Frame & { legendRows: ReturnType<typeof legendLayout> }): string[] {
  return f.legendRows.map(({ item, x, row }) => {
    const y = f.legendY + row * LEGEND_ROW;
    const mark =
      item.kind === "box"
        ? el("rect", { x, y: y - 6, width: 18, height: 12, rx: 2, fill: item.color })
        : el("line", { x1: x, y1: y, x2: x + 20, y2: y, stroke: item.color, "stroke-width": 2.5, "stroke-dasharray": item.dash, "stroke-linecap": "round" });
    return el("g", {}, [mark, text(x + 26, y + 4, item.label, { "font-size": 12, fill: INK })]);
  });
}

function svgDoc(f: Frame, title: string, body: readonly string[]): string {
  return `${el(
    "svg",
    { xmlns: "http://www.w3.org/2000/svg", width: f.width, height: f.height, viewBox: `0 0 ${f.width} ${f.height}`, "font-family": FONT, role: "img", "aria-label": title },
    ["", el("title", {}, escapeXml(title)), ...body, ""],
  )}\n`;
}

function tickLabel(v: number, log: boolean): string {
  if (log && v >= 1000) return v.toLocaleString("en-US");
  return formatNumber(v);
}

/** Gridlines, axes, tick labels and axis titles of an x/y plot. */
function axes(f: Frame, x: Scale, y: Scale, xLabel: string, yLabel: string, yFormat: (v: number) => string = (v) => tickLabel(v, y.log)): string[] {
  const out: string[] = [];
  const bottom = f.top + f.plotH;
  const right = f.left + f.plotW;
  const major = (v: number, s: Scale): boolean => !s.log || Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9;
  for (const t of y.ticks) {
    const py = y(t);
    out.push(el("line", { x1: f.left, y1: py, x2: right, y2: py, stroke: GRID, "stroke-width": 1 }));
    out.push(text(f.left - 8, py + 4, yFormat(t), { "font-size": 11, fill: MUTED, "text-anchor": "end" }));
  }
  let lastLabelRight = -Infinity;
  for (const t of x.ticks) {
    const px = x(t);
    const isMajor = major(t, x);
    out.push(el("line", { x1: px, y1: f.top, x2: px, y2: bottom, stroke: GRID, "stroke-width": isMajor ? 1 : 0.6 }));
    const label = tickLabel(t, x.log);
    const w = textWidth(label, 11);
    if (isMajor || (x.log ? x.labelMinor === true : true)) {
      if (!isMajor && px - w / 2 <= lastLabelRight + 6) continue;
      out.push(el("line", { x1: px, y1: bottom, x2: px, y2: bottom + 5, stroke: AXIS }));
      out.push(text(px, bottom + 19, label, { "font-size": 11, fill: isMajor ? MUTED : "#999", "text-anchor": "middle" }));
      lastLabelRight = px + w / 2;
    }
  }
  out.push(el("line", { x1: f.left, y1: bottom, x2: right, y2: bottom, stroke: AXIS, "stroke-width": 1 }));
  out.push(el("line", { x1: f.left, y1: f.top, x2: f.left, y2: bottom, stroke: AXIS, "stroke-width": 1 }));
  out.push(text(f.left + f.plotW / 2, bottom + 40, xLabel, { "font-size": 12, fill: INK, "text-anchor": "middle" }));
  const yMid = f.top + f.plotH / 2;
  out.push(text(18, yMid, yLabel, { "font-size": 12, fill: INK, "text-anchor": "middle", transform: `rotate(-90 18 ${r1(yMid)})` }));
  return out;
}

export interface LineSeries {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  color?: string;
  dash?: string;
  /** Draw as a step function (CDFs of few samples). */
  step?: boolean;
}

export interface RefLine {
  value: number;
  label: string;
  color?: string;
  /** stroke-dasharray; default "4 4" for y lines, "2 3" (dotted) for x lines. */
  dash?: string;
}

/** Label drawn over lines: a white halo keeps it readable where it crosses a curve. */
const HALO: Attrs = { stroke: "#ffffff", "stroke-width": 3, "paint-order": "stroke", "stroke-linejoin": "round" };

interface LineChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: readonly LineSeries[];
  /** "log" forces log x, "auto" uses log when the positive x range spans more than two decades. */
  xScale?: "linear" | "log" | "auto";
  xMin?: number;
  yDomain?: [number, number];
  yTicks?: number[];
  yFormat?: (v: number) => string;
  /** Vertical dashed lines (e.g. targets on x). */
  xRefs?: readonly RefLine[];
  /** Horizontal dashed lines (e.g. p50/p95 on a CDF, a target on y). */
  yRefs?: readonly RefLine[];
  legend?: readonly LegendItem[];
  width?: number;
  plotHeight?: number;
}

/** Whether values spanning lo..hi read better on a log axis: more than two decades. */
function wantsLog(lo: number, hi: number): boolean {
  return lo > 0 && hi / lo > 100;
}

function pointsAttr(pts: ReadonlyArray<readonly [number, number]>): string {
  return pts.map(([x, y]) => `${r1(x)},${r1(y)}`).join(" ");
}

/** Lines over x/y axes: CDFs, time series. */
export function lineChart(spec: LineChartSpec): string {
  const legendItems = spec.legend ?? spec.series.map((s, i) => ({ label: s.name, color: s.color ?? PALETTE[i % PALETTE.length] ?? INK, ...(s.dash ? { dash: s.dash } : {}) }));
  const f = frame({ ...spec, legend: legendItems });
  const xs = spec.series.flatMap((s) => s.points.map((p) => p[0])).concat((spec.xRefs ?? []).map((r) => r.value));
  const ys = spec.series.flatMap((s) => s.points.map((p) => p[1])).concat((spec.yRefs ?? []).map((r) => r.value));
  const xPos = xs.filter((v) => v > 0);
  const xLo = Math.min(...(xs.length ? xs : [0]));
  const xHi = Math.max(...(xs.length ? xs : [1]));
  const useLog = spec.xScale === "log" ? xPos.length > 0 : spec.xScale === "auto" ? xPos.length === xs.length && wantsLog(Math.min(...xPos), Math.max(...xPos)) : false;
  const x = useLog ? logScale(Math.min(...xPos), Math.max(...xPos), f.left, f.left + f.plotW) : linearScale(spec.xMin ?? xLo, xHi, f.left, f.left + f.plotW, 8);
  const [y0, y1] = spec.yDomain ?? [Math.min(0, ...ys), Math.max(...(ys.length ? ys : [1]))];
  const y = linearScale(y0, y1, f.top + f.plotH, f.top, 5, spec.yDomain === undefined);
  if (spec.yTicks) y.ticks = spec.yTicks;
  const body: string[] = [...header(f, spec), ...axes(f, x, y, spec.xLabel + (useLog ? " — log scale" : ""), spec.yLabel, spec.yFormat)];
  const clipId = `clip${Math.abs(hashString(spec.title))}`;
  body.push(el("defs", {}, el("clipPath", { id: clipId }, el("rect", { x: f.left, y: f.top - 2, width: f.plotW + 2, height: f.plotH + 4 }))));
  const refLabels: string[] = [];
  for (const r of spec.yRefs ?? []) {
    const py = y(r.value);
    body.push(el("line", { x1: f.left, y1: py, x2: f.left + f.plotW, y2: py, stroke: r.color ?? "#888", "stroke-width": 1, "stroke-dasharray": r.dash ?? "4 4" }));
    refLabels.push(text(f.left + f.plotW - 4, py - 4, r.label, { "font-size": 10.5, fill: r.color ?? MUTED, "text-anchor": "end", ...HALO }));
  }
  // Vertical reference lines; labels run up along the line from the x axis (where a CDF is usually empty),
  // and lines at the same value share one label.
  const byValue = new Map<number, RefLine[]>();
  for (const r of spec.xRefs ?? []) byValue.set(r.value, [...(byValue.get(r.value) ?? []), r]);
  for (const [value, refs] of byValue) {
    const px = x(value);
    const first = refs[0] as RefLine;
    const color = first.color ?? "#c0392b";
    body.push(el("line", { x1: px, y1: f.top, x2: px, y2: f.top + f.plotH, stroke: color, "stroke-width": 1.5, "stroke-dasharray": first.dash ?? "2 3" }));
    const lx = px - 4;
    const ly = f.top + f.plotH - 6;
    const label = refs.map((r) => r.label).join("; ");
    refLabels.push(text(lx, ly, label, { "font-size": 10.5, fill: color, transform: `rotate(-90 ${r1(lx)} ${r1(ly)})`, ...HALO }));
  }
  spec.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length] ?? INK;
    const pts: Array<[number, number]> = [];
    let prevY: number | undefined;
    for (const [vx, vy] of s.points) {
      const px = x(vx);
      const py = y(vy);
      if (s.step && prevY !== undefined) pts.push([px, prevY]);
      pts.push([px, py]);
      prevY = py;
    }
    if (pts.length === 1) {
      const [px, py] = pts[0] as [number, number];
      body.push(el("circle", { cx: px, cy: py, r: 3, fill: color }));
    } else if (pts.length > 1) {
      body.push(
        el("polyline", {
          points: pointsAttr(pts),
          fill: "none",
          stroke: color,
          "stroke-width": 2,
          "stroke-dasharray": s.dash,
          "stroke-linejoin": "round",
          "stroke-linecap": "round",
          "clip-path": `url(#${clipId})`,
        }),
      );
    }
  });
  body.push(...refLabels, ...legend(f));
  return svgDoc(f, spec.title, body);
}

export interface Bar {
  label: string;
  value: number;
  /** Whisker from min to max. */
  min?: number;
  max?: number;
  /** Individual values drawn as dots over the bar (e.g. one per sandbox). */
  points?: readonly number[];
  color?: string;
  /** A dashed target line over this bar. */
  target?: RefLine;
}

interface BarChartSpec {
  title: string;
  subtitle?: string;
  yLabel: string;
  xLabel?: string;
  bars: readonly Bar[];
  legend?: readonly LegendItem[];
  valueFormat?: (v: number) => string;
  width?: number;
  plotHeight?: number;
}

/** Vertical bars with optional min–max whiskers, per-item dots and per-bar target lines. */
export function barChart(spec: BarChartSpec): string {
  const f = frame(spec);
  const fmt = spec.valueFormat ?? formatNumber;
  const all = spec.bars.flatMap((b) => [b.value, b.max ?? b.value, ...(b.points ?? []), b.target?.value ?? 0]);
  const y = linearScale(0, Math.max(...all, 0) * 1.08 || 1, f.top + f.plotH, f.top, 5);
  const body: string[] = [...header(f, spec)];
  const bottom = f.top + f.plotH;
  for (const t of y.ticks) {
    const py = y(t);
    body.push(el("line", { x1: f.left, y1: py, x2: f.left + f.plotW, y2: py, stroke: GRID }));
    body.push(text(f.left - 8, py + 4, formatNumber(t), { "font-size": 11, fill: MUTED, "text-anchor": "end" }));
  }
  const slot = f.plotW / Math.max(1, spec.bars.length);
  const bw = Math.min(90, slot * 0.55);
  spec.bars.forEach((b, i) => {
    const cx = f.left + slot * (i + 0.5);
    const color = b.color ?? PALETTE[i % PALETTE.length] ?? INK;
    const top = y(b.value);
    body.push(el("rect", { x: cx - bw / 2, y: top, width: bw, height: Math.max(0, bottom - top), fill: color, "fill-opacity": 0.85, rx: 2 }));
    if (b.min !== undefined && b.max !== undefined && b.max > b.min) {
      const [p0, p1] = [y(b.min), y(b.max)];
      body.push(el("line", { x1: cx, y1: p0, x2: cx, y2: p1, stroke: INK, "stroke-width": 1.2 }));
      for (const p of [p0, p1]) body.push(el("line", { x1: cx - 8, y1: p, x2: cx + 8, y2: p, stroke: INK, "stroke-width": 1.2 }));
    }
    const pts = b.points ?? [];
    pts.forEach((v, k) => {
      const jitter = pts.length > 1 ? ((k / (pts.length - 1)) - 0.5) * bw * 0.6 : 0;
      body.push(el("circle", { cx: cx + jitter, cy: y(v), r: 3, fill: "#fff", stroke: INK, "stroke-width": 1, "fill-opacity": 0.9 }));
    });
    const labelY = Math.min(top, b.max !== undefined ? y(b.max) : top) - 8;
    body.push(text(cx, labelY, fmt(b.value), { "font-size": 12, "font-weight": 600, fill: INK, "text-anchor": "middle" }));
    if (b.target) {
      const ty = y(b.target.value);
      const tc = b.target.color ?? "#c0392b";
      body.push(el("line", { x1: cx - slot * 0.42, y1: ty, x2: cx + slot * 0.42, y2: ty, stroke: tc, "stroke-width": 1.5, "stroke-dasharray": "6 4" }));
      body.push(text(cx + slot * 0.42, ty - 5, b.target.label, { "font-size": 10.5, fill: tc, "text-anchor": "end", ...HALO }));
    }
    const words = wrap(b.label, Math.max(8, Math.floor(slot / 7)));
    words.forEach((line, k) => body.push(text(cx, bottom + 18 + k * 14, line, { "font-size": 11.5, fill: INK, "text-anchor": "middle" })));
  });
  body.push(el("line", { x1: f.left, y1: bottom, x2: f.left + f.plotW, y2: bottom, stroke: AXIS }));
  body.push(el("line", { x1: f.left, y1: f.top, x2: f.left, y2: bottom, stroke: AXIS }));
  const yMid = f.top + f.plotH / 2;
  body.push(text(18, yMid, spec.yLabel, { "font-size": 12, fill: INK, "text-anchor": "middle", transform: `rotate(-90 18 ${r1(yMid)})` }));
  if (spec.xLabel) body.push(text(f.left + f.plotW / 2, bottom + 44, spec.xLabel, { "font-size": 12, fill: MUTED, "text-anchor": "middle" }));
  body.push(...legend(f));
  return svgDoc(f, spec.title, body);
}

/** Splits a label at _ . - / and spaces into lines of about maxChars (at most 2 lines). */
function wrap(label: string, maxChars: number): string[] {
  if (label.length <= maxChars) return [label];
  const parts = label.split(/(?<=[_.\-/ ])/);
  const lines: string[] = [""];
  for (const p of parts) {
    const cur = lines[lines.length - 1] as string;
    if (cur.length > 0 && cur.length + p.length > maxChars && lines.length < 2) lines.push(p);
    else lines[lines.length - 1] = cur + p;
  }
  return lines;
}

function hashString(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}
