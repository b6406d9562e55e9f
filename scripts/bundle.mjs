#!/usr/bin/env node
// `npm run build`, after tsc: the `luminaguard` command bundled into dist/cli/ (with source maps), so
// that node resolves and compiles a few files instead of the hundreds the per-file output (dist/src,
// kept for the SDK and the tests) is made of:
//   dist/cli/main.cjs      the bin (src/cli/bin.ts), CommonJS (no ES module loader to start for the
//                          commands users wait on): answers a bare --version, runs exec's thin client
//                          through a running service (src/cli/exec-thin.ts, bundled in, evaluated only
//                          for exec), else loads one of
//   dist/cli/hot/exec.cjs  exec and tool (src/cli/main-exec.ts): one CommonJS file, which the bin runs
//                          with V8's code cache (src/util/compile-cache.ts): no module to resolve or
//                          link, and from the second run on no source to parse or compile
//   dist/cli/all/          every command (src/cli/main.ts), ES modules
// Apart, not one bundle: split together with every other command, exec's modules fall into thirty-odd
// shared chunks, and each file costs node a resolution, a read and a module record. A process loads
// one of all/ and exec.cjs only. The thin client's few modules (error classes, the daemon's address) have
// a copy in exec.cjs too: nothing of them crosses over (the thin client answers or hands over before it starts).
//
// - Code splitting keeps each command's dynamic import() lazy: `exec` loads the chunks it needs, not
//   the daemon, the MCP server or the benchmarks.
// - Bundled packages: only the small ones every command loads (commander, zod). The others (the MCP
//   SDK, hono, nats, pino, prom-client) stay imports of node_modules, loaded where they were before.
// - `import.meta.url` in a bundled module names its per-file twin under dist/src (same directory
//   layout), so that paths found relative to a module (`new URL("./faults-cell.js", import.meta.url)`,
//   `createRequire(import.meta.url)`) mean what they meant before bundling.
import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const outdir = join(root, "dist", "cli");
/** Packages copied into the bundle; every other bare import stays an import of node_modules. */
const BUNDLED = new Set(["commander", "zod"]);

// commander is CommonJS: its require() of node's modules needs a real require in an ES module. Only
// the chunk with esbuild's require shim keeps it (see below); a line stays, so source maps still fit.
const BANNER = 'import { createRequire as __lgCreateRequire } from "node:module"; const require = __lgCreateRequire(import.meta.url);';

const packageName = (spec) => (spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]);

/** @type {(outdir: string, format?: "esm" | "cjs") => import("esbuild").Plugin} */
const layout = (outdir, format = "esm") => ({
  name: "luminaguard-layout",
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.kind === "entry-point") return undefined;
      if (args.path.startsWith("node:")) return { path: args.path, external: true };
      return BUNDLED.has(packageName(args.path)) ? undefined : { path: args.path, external: true };
    });
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      const rel = relative(root, args.path);
      if (!rel.startsWith(`src${sep}`)) return undefined;
      let source = await readFile(args.path, "utf8");
      const original = source;
      if (source.includes("import.meta.url")) {
        // Every chunk of a bundle is written to its outdir, so this path from a chunk is the twin in dist/src/.
        const twin = `${relative(outdir, join(root, "dist")).split(sep).join("/")}/${rel.split(sep).join("/").replace(/\.ts$/, ".js")}`;
        const self = format === "cjs" ? 'require("node:url").pathToFileURL(__filename).href' : "import.meta.url";
        source = source.replaceAll("import.meta.url", `new URL(${JSON.stringify(twin)}, ${self}).href`);
      }
      // zod's `z` is a namespace re-exported by name, which esbuild keeps whole (every locale, 750 kB);
      // the same members imported as a namespace are shaken down to what is used (the English messages
      // zod configures itself with stay). Same values, same behaviour.
      source = source.replaceAll('import { z } from "zod";', 'import * as z from "zod";');
      return source === original ? undefined : { contents: source, loader: "ts" };
    });
  },
});

/** bin.ts's import of the whole command is the all/ bundle, an ES module imported from beside it. */
const bundles = {
  name: "luminaguard-bundles",
  setup(b) {
    b.onResolve({ filter: /^\.\/main\.js$/ }, (args) => (args.importer.endsWith(`${sep}cli${sep}bin.ts`) ? { path: "./all/main.js", external: true } : undefined));
  },
};

const common = {
  absWorkingDir: root,
  entryNames: "[name]",
  chunkNames: "[name]-[hash]",
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  tsconfig: join(root, "tsconfig.json"),
  sourcemap: "linked",
  sourcesContent: false,
  // commander is CommonJS: its require() of node's modules needs a real require in an ES module.
  banner: { js: BANNER },
  metafile: true,
  logLevel: "warning",
};

// No chunk of an earlier build may linger: their names carry content hashes.
rmSync(outdir, { recursive: true, force: true });
const results = [
  await build({ ...common, entryPoints: { main: "src/cli/main.ts" }, outdir: join(outdir, "all"), splitting: true, plugins: [layout(join(outdir, "all"))] }),
  // exec.cjs: CommonJS (commander's require() is a real one, no banner), every import() of our own modules
  // inlined (evaluated when reached, as before), packages of node_modules left to require().
  await build({
    ...common,
    entryPoints: { exec: "src/cli/main-exec.ts" },
    outdir: join(outdir, "hot"),
    outExtension: { ".js": ".cjs" },
    format: "cjs",
    banner: {},
    splitting: false,
    plugins: [layout(join(outdir, "hot"), "cjs")],
  }),
  // The bin: CommonJS like exec.cjs, the thin client inlined (its import() evaluates it when reached).
  await build({
    ...common,
    entryPoints: { main: "src/cli/bin.ts" },
    outdir,
    outExtension: { ".js": ".cjs" },
    format: "cjs",
    banner: {},
    splitting: false,
    plugins: [bundles, layout(outdir, "cjs")],
  }),
];
const result = { metafile: { inputs: {}, outputs: Object.assign({}, ...results.map((r) => r.metafile.outputs)) } };
if (process.env.LG_BUNDLE_META) writeFileSync(process.env.LG_BUNDLE_META, JSON.stringify(result.metafile));
const outputs = Object.keys(result.metafile.outputs).filter((f) => f.endsWith(".js"));
const cjs = Object.keys(result.metafile.outputs).filter((f) => f.endsWith(".cjs"));
for (const file of outputs) {
  const text = readFileSync(join(root, file), "utf8");
  const at = text.indexOf(BANNER);
  if (at < 0) throw new Error(`bundle: ${file} has no banner`);
  const rest = text.slice(at + BANNER.length);
  // A free `require` (not `x.require`, `__require`, `require2`) is the shim's: keep the banner there.
  if (!/(?<![.\w$])require(?![\w$])/.test(rest)) writeFileSync(join(root, file), text.slice(0, at) + rest);
}
// The bin entry: executable, like a command npm links. Its dynamic import of all/ must stay one (an ES module).
const bin = readFileSync(join(outdir, "main.cjs"), "utf8");
if (!bin.includes('import("./all/main.js")')) throw new Error("bundle: main.cjs no longer imports ./all/main.js as an ES module");
chmodSync(join(outdir, "main.cjs"), 0o755);
process.stderr.write(`bundle: dist/cli/main.cjs, ${[...outputs, ...cjs].filter((f) => f.includes("/hot/")).length} file(s) in hot/, ${outputs.filter((f) => f.includes("/all/")).length} in all/\n`);
