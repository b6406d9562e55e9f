// The "standard workload", defined once: a seeded workspace of ~1,000 small files and a fixed mix of the five tools.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, lstatSync } from "node:fs";
import { join, relative } from "node:path";
import { seededRandom } from "../metrics/stats.js";
import type { Sandbox } from "../runtime/sandbox.js";
import type { ToolName } from "../tools/registry.js";

/** Mix of the five tools in every scenario that replays the workload (percent). */
export const STANDARD_MIX: Readonly<Record<ToolName, number>> = {
  read_file: 40,
  list_directory: 20,
  search: 15,
  write_file: 15,
  execute_command: 10,
};

export const WORKLOAD_FILES = 1000;

/** Deterministic PRNG so every run replays the same files and operations. */
export const rng = seededRandom;

const WORDS = ["agent", "sandbox", "kernel", "vm", "tool", "policy", "audit", "cliff", "guest", "host", "pool", "snapshot"];

/** 10 top folders × 10 subfolders × 10 files = 1,000 files of 200–2,000 bytes; some lines contain "needle". */
export function fileList(): string[] {
  const files: string[] = [];
  for (let a = 0; a < 10; a++) for (let b = 0; b < 10; b++) for (let c = 0; c < WORKLOAD_FILES / 100; c++) files.push(`d${a}/e${b}/f${c}.txt`);
  return files;
}

export function seedWorkspace(dir: string, seed = 42): void {
  const rand = rng(seed);
  for (const file of fileList()) {
    mkdirSync(join(dir, file, ".."), { recursive: true });
    const size = 200 + Math.floor(rand() * 1800);
    let text = "";
    while (text.length < size) {
      const line = Array.from({ length: 8 }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(" ");
      text += rand() < 0.02 ? `needle ${line}\n` : `${line}\n`;
    }
    writeFileSync(join(dir, file), text);
  }
}

export interface Op {
  tool: ToolName;
  args: Record<string, unknown>;
}

/** `n` operations drawn with the standard mix; the same seed gives the same list. */
export function standardOps(n: number, seed = 7): Op[] {
  const rand = rng(seed);
  const files = fileList();
  const pick = (): string => files[Math.floor(rand() * files.length)] as string;
  const ops: Op[] = [];
  const total = Object.values(STANDARD_MIX).reduce((a, b) => a + b, 0);
  for (let i = 0; i < n; i++) {
    let roll = rand() * total;
    let tool: ToolName = "read_file";
    for (const [name, weight] of Object.entries(STANDARD_MIX) as Array<[ToolName, number]>) {
      if ((roll -= weight) < 0) {
        tool = name;
        break;
      }
    }
    const dir = `d${Math.floor(rand() * 10)}/e${Math.floor(rand() * 10)}`;
    switch (tool) {
      case "read_file":
        ops.push({ tool, args: { path: pick() } });
        break;
      case "list_directory":
        ops.push({ tool, args: { path: `d${Math.floor(rand() * 10)}`, depth: 2 } });
        break;
      case "search":
        ops.push({ tool, args: { path: dir, pattern: "needle" } });
        break;
      case "write_file":
        ops.push({ tool, args: { path: `out/w${i % 50}.txt`, content: `result ${i}\n`.repeat(20), createParents: true } });
        break;
      case "execute_command":
        ops.push({ tool, args: { command: ["wc", "-l", pick()] } });
        break;
    }
  }
  return ops;
}

export async function runOnSandbox(sandbox: Sandbox, op: Op): Promise<void> {
  const r = await sandbox.callTool(op.tool, op.args);
  if (op.tool === "execute_command" && r["exitCode"] !== 0) throw new Error(`workload command failed: ${JSON.stringify(r)}`);
}

/** The unsandboxed reference: the same operations through plain node:fs and child_process. */
export async function runUnsandboxed(root: string, op: Op): Promise<void> {
  const a = op.args;
  switch (op.tool) {
    case "read_file":
      readFileSync(join(root, String(a["path"])));
      return;
    case "write_file": {
      const p = join(root, String(a["path"]));
      mkdirSync(join(p, ".."), { recursive: true });
      writeFileSync(p, String(a["content"]));
      return;
    }
    case "list_directory": {
      const walk = (d: string, depth: number): void => {
        for (const name of readdirSync(d)) {
          const p = join(d, name);
          const st = lstatSync(p);
          if (st.isDirectory() && depth > 1) walk(p, depth - 1);
        }
      };
      walk(join(root, String(a["path"])), Number(a["depth"] ?? 1));
      return;
    }
    case "search": {
      const re = new RegExp(String(a["pattern"]));
      const hits: string[] = [];
      const walk = (d: string): void => {
        for (const name of readdirSync(d)) {
          const p = join(d, name);
          if (statSync(p).isDirectory()) walk(p);
          else readFileSync(p, "utf8").split("\n").forEach((l, i) => re.test(l) && hits.push(`${relative(root, p)}:${i + 1}`));
        }
      };
      walk(join(root, String(a["path"])));
      return;
    }
    case "execute_command": {
      const [file, ...args] = a["command"] as string[];
      await new Promise<void>((resolve, reject) => {
        const c = spawn(file as string, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
        c.stdout.resume();
        c.stderr.resume();
        c.on("error", reject);
        c.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}`))));
      });
      return;
    }
  }
}
