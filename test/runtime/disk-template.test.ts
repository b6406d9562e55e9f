// The size-limited workspace's filesystem from a cached template (src/runtime/disk-template.ts) instead of
// an mkfs per sandbox: it checks clean, mounts, and enforces its byte and inode limits; a template that is
// not safely ours or does not check out is never used.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, closeSync, ftruncateSync, openSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { LimitedWorkspace } from "../../src/runtime/disk.js";
import { formatFromTemplate, readTemplate } from "../../src/runtime/disk-template.js";
import { Sandbox } from "../../src/runtime/sandbox.js";
import { privateEnvDir, unavailable } from "../fixtures.js";

const MIB = 1024 * 1024;
const skip = LimitedWorkspace.supported() ? false : "kernel-enforced limits need root, loop devices and mkfs.ext4";
const MKFS = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", "/usr/bin/mkfs.ext4"].find((p) => spawnSync("test", ["-x", p]).status === 0) ?? "mkfs.ext4";
const FILEFRAG = ["/usr/sbin/filefrag", "/sbin/filefrag", "/usr/bin/filefrag"].find((p) => spawnSync("test", ["-x", p]).status === 0);
const ARGS = ["-q", "-F", "-b", "4096", "-N", "1024", "-m", "0", "-O", "^has_journal,^resize_inode", "-E", "lazy_itable_init=1,nodiscard,root_owner=0:0"];

/** A private cache directory for the test (LUMINAGUARD_CACHE), restored and removed afterwards. */
function privateCache(t: TestContext): string {
  return privateEnvDir(t, "LUMINAGUARD_CACHE", "lg-test-cache-");
}

function sparseImage(dir: string, size: number): string {
  const image = join(dir, `img-${Math.random().toString(16).slice(2)}.ext4`);
  const fd = openSync(image, "wx", 0o600);
  ftruncateSync(fd, size);
  closeSync(fd);
  return image;
}

function fsckClean(image: string): void {
  const r = spawnSync("e2fsck", ["-fn", image], { encoding: "utf8" });
  assert.equal(r.status, 0, `e2fsck: ${r.stdout}${r.stderr}`);
}

test("the template is made once, used after, checks clean, and is dropped when it is not safely ours or does not check out", { skip }, async (t) => {
  const cache = privateCache(t);
  const size = 16 * MIB;
  const templates = join(cache, "workspace-templates");
  assert.equal(await formatFromTemplate(sparseImage(cache, size), MKFS, FILEFRAG, ARGS, size), true, "made, then used");
  const files = readdirSync(templates);
  assert.equal(files.length, 1, "one template, nothing else left in its directory");
  const file = join(templates, files[0] as string);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(templates).mode & 0o777, 0o700);
  const good = readFileSync(file);
  const image = sparseImage(cache, size);
  assert.equal(await formatFromTemplate(image, MKFS, FILEFRAG, ARGS, size), true);
  fsckClean(image);
  assert.deepEqual(readFileSync(file), good, "used as it was");
  // Other arguments (here the inode count) are another template.
  const other = ARGS.map((a) => (a === "1024" ? "2048" : a));
  assert.equal(await formatFromTemplate(sparseImage(cache, size), MKFS, FILEFRAG, other, size), true);
  assert.equal(readdirSync(templates).length, 2);

  // A flipped byte: the checksum refuses it; it is made afresh (and the image is still good).
  const bad = Buffer.from(good);
  bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 0xff;
  writeFileSync(file, bad, { mode: 0o600 });
  assert.equal(readTemplate(file, size), undefined);
  const again = sparseImage(cache, size);
  assert.equal(await formatFromTemplate(again, MKFS, FILEFRAG, ARGS, size), true);
  fsckClean(again);
  assert.notEqual(readTemplate(file, size), undefined, "rewritten good");
  // Of the wrong size: refused.
  assert.equal(readTemplate(file, 2 * size), undefined);
  // Readable by others: not ours alone, refused.
  chmodSync(file, 0o644);
  assert.equal(readTemplate(file, size), undefined);
  // A directory others may write into: no template at all, mkfs runs (and the image is good).
  chmodSync(templates, 0o777);
  const plain = sparseImage(cache, size);
  assert.equal(await formatFromTemplate(plain, MKFS, FILEFRAG, ARGS, size), false);
  fsckClean(plain);
});

test("a sandbox on a workspace from the template: its byte and inode limits hold", { skip: skip || (await unavailable("namespace")), timeout: 120_000 }, async (t) => {
  privateCache(t);
  for (let i = 0; i < 2; i++) {
    // The first makes the template, the second is made from it.
    const sandbox = await Sandbox.create({ backend: "namespace", diskMiB: 16, diskInodes: 1024, daemon: false });
    try {
      assert.equal(sandbox.info["diskLimit"], "kernel");
      // Past the limit the write fails in the sandbox (ENOSPC) and the call is NO_SPACE.
      await assert.rejects(sandbox.commands.run(["dd", "if=/dev/zero", "of=big", "bs=1M", "count=32"]), { code: "NO_SPACE" });
      const small = await sandbox.commands.run(["sh", "-c", "rm -f big; dd if=/dev/zero of=ok bs=1M count=4 2>/dev/null && echo ok"]);
      assert.equal(small.stdout.trim(), "ok");
      await assert.rejects(sandbox.commands.run(["sh", "-c", "i=0; while [ $i -lt 1200 ]; do : > f$i || exit 1; i=$((i+1)); done"]), { code: "NO_SPACE" }, "the inode limit holds");
    } finally {
      await sandbox.kill();
    }
  }
  const templates = readdirSync(join(process.env["LUMINAGUARD_CACHE"] as string, "workspace-templates"));
  assert.equal(templates.filter((f) => f.endsWith(".lgfs")).length, 1);
});
