// Unified diff (Myers, O(ND)) of two texts, in the format `patch` applies, for the write_file card.

interface Edit {
  op: " " | "-" | "+";
  line: string;
}

interface UnifiedDiffOptions {
  context?: number;
  /** Past this many differences the diff gives up and shows a full replacement. */
  maxEditDistance?: number;
}

/** Lines with their terminators kept, so a missing final newline is a difference. */
function splitLines(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      out.push(text.slice(start, i + 1));
      start = i + 1;
    }
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

/** `--- a/PATH` / `+++ b/PATH` and hunks; empty string when the texts are equal. `oldText` undefined: a new file. */
export function unifiedDiff(path: string, oldText: string | undefined, newText: string, options: UnifiedDiffOptions = {}): string {
  const context = options.context ?? 3;
  const a = splitLines(oldText ?? "");
  const b = splitLines(newText);
  const edits = diffLines(a, b, options.maxEditDistance ?? 4000);
  if (!edits.some((e) => e.op !== " ")) return "";
  const out: string[] = [`--- ${oldText === undefined ? "/dev/null" : `a/${path}`}\n`, `+++ b/${path}\n`];
  // Group edits into hunks with `context` lines around each change.
  let i = 0;
  while (i < edits.length) {
    while (i < edits.length && (edits[i] as Edit).op === " ") i++;
    if (i >= edits.length) break;
    const start = Math.max(0, i - context);
    let end = i;
    // Extend while the next change is within 2*context of the last one.
    for (;;) {
      while (end < edits.length && (edits[end] as Edit).op !== " ") end++;
      let next = end;
      while (next < edits.length && (edits[next] as Edit).op === " ") next++;
      if (next < edits.length && next - end <= 2 * context) {
        end = next;
        continue;
      }
      end = Math.min(edits.length, end + context);
      break;
    }
    let oldStart = 1;
    let newStart = 1;
    for (let k = 0; k < start; k++) {
      const e = edits[k] as Edit;
      if (e.op !== "+") oldStart++;
      if (e.op !== "-") newStart++;
    }
    const hunk = edits.slice(start, end);
    const oldLen = hunk.filter((e) => e.op !== "+").length;
    const newLen = hunk.filter((e) => e.op !== "-").length;
    out.push(`@@ -${range(oldStart, oldLen)} +${range(newStart, newLen)} @@\n`);
    for (const e of hunk) {
      out.push(`${e.op}${e.line}`);
      if (!e.line.endsWith("\n")) out.push("\n\\ No newline at end of file\n");
    }
    i = end;
  }
  return out.join("");
}

function range(start: number, len: number): string {
  // GNU diff: an empty range is numbered by the line before it.
  if (len === 0) return `${start - 1},0`;
  return len === 1 ? `${start}` : `${start},${len}`;
}

function diffLines(a: string[], b: string[], maxD: number): Edit[] {
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const head: Edit[] = a.slice(0, pre).map((line) => ({ op: " ", line }));
  const tail: Edit[] = a.slice(a.length - suf).map((line) => ({ op: " ", line }));
  const am = a.slice(pre, a.length - suf);
  const bm = b.slice(pre, b.length - suf);
  const middle = myers(am, bm, maxD) ?? [...am.map((line): Edit => ({ op: "-", line })), ...bm.map((line): Edit => ({ op: "+", line }))];
  return [...head, ...middle, ...tail];
}

/** Myers' greedy shortest edit script; undefined when it needs more than maxD edits. */
function myers(a: string[], b: string[], maxD: number): Edit[] | undefined {
  const n = a.length;
  const m = b.length;
  const max = Math.min(n + m, maxD);
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  for (let d = 0; d <= max; d++) {
    trace.push(v.slice(offset - d - 1, offset + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && (v[offset + k - 1] as number) < (v[offset + k + 1] as number)) ? (v[offset + k + 1] as number) : (v[offset + k - 1] as number) + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) return backtrack(trace, a, b, n, m);
    }
  }
  return undefined;
}

function backtrack(trace: Int32Array[], a: string[], b: string[], n: number, m: number): Edit[] {
  const edits: Edit[] = [];
  let x = n;
  let y = m;
  for (let d = trace.length - 1; d >= 0; d--) {
    const vd = trace[d] as Int32Array;
    // trace[d] holds v[-d-1 .. d+1] as it was at the start of round d.
    const at = (k: number): number => vd[k + d + 1] as number;
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = d === 0 ? 0 : prevX - prevK;
    while (x > prevX && y > prevY) {
      edits.push({ op: " ", line: a[x - 1] as string });
      x--;
      y--;
    }
    if (d > 0) {
      if (x === prevX) edits.push({ op: "+", line: b[y - 1] as string });
      else edits.push({ op: "-", line: a[x - 1] as string });
      x = prevX;
      y = prevY;
    }
  }
  return edits.reverse();
}
