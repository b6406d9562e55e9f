// The dashboard in a real headless browser (Debian's chromium driven by playwright-core): a live sandbox
// appears, a Red call's card is approved and the write lands, another is denied and refused, hostile
// text stays text; plus the page's auth (token once for a cookie; the cookie reads and answers only).
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { chromium, type Browser } from "playwright-core";
import { tempWorkspace, unavailable } from "../fixtures.js";
import { http, startTestDaemon, type HttpAnswer } from "./helpers.js";

const TOKEN = "dashboard-test-token-0123456789";
const CHROMIUM = process.env["LUMINAGUARD_CHROMIUM"] ?? "/usr/bin/chromium";
const ARTIFACTS = join(process.cwd(), "test-artifacts");

/**
 * Why the browser test cannot run here, or undefined. As with the backends, CI (which sets
 * LUMINAGUARD_REQUIRE_BACKENDS, and installs chromium with scripts/install-deps.sh) fails instead of skipping.
 */
function noBrowser(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined;
  const reason = `chromium is not installed at ${CHROMIUM} (apt-get install chromium)`;
  if ((process.env["LUMINAGUARD_REQUIRE_BACKENDS"] ?? "") !== "") throw new Error(`the dashboard test is required here: ${reason}`);
  process.stderr.write(`SKIP: ${reason}\n`);
  return reason;
}

test("the dashboard in headless chromium: live sandbox, approve a Red write (it lands), deny another (refused), hostile text stays text", async (t) => {
  const skip = (await unavailable("namespace")) ?? noBrowser();
  if (skip) return void t.skip(skip);
  const ws = tempWorkspace();
  t.after(() => ws.remove());
  const d = await startTestDaemon(t, ["--listen", "127.0.0.1:0", "--namespace-pool", "1:1", "--microvm-pool", "0", "--approval-timeout", "120", "--drain-grace", "10"], {
    env: { LUMINAGUARD_DAEMON_TOKEN: TOKEN },
  });
  const url = /and (http:\/\/127\.0\.0\.1:\d+)/.exec(d.stderr())?.[1];
  assert.ok(url, d.stderr());
  const bearer = { authorization: `Bearer ${TOKEN}` };

  // Without the token nothing but health answers; a wrong token gets no cookie.
  assert.equal((await http({ url }, "GET", "/ui")).status, 401);
  assert.equal((await http({ url }, "GET", "/ui/app.js")).status, 401);
  const wrong = await http({ url }, "GET", "/ui?token=nope");
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers["set-cookie"], undefined);

  let browser: Browser | undefined;
  const closeBrowser = async (): Promise<void> => {
    const b = browser;
    browser = undefined;
    if (!b) return;
    const pid = (b as unknown as { process?: () => { pid?: number } | undefined }).process?.()?.pid;
    await b.close().catch(() => undefined);
    if (pid !== undefined) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  };
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root (CI containers) cannot use chromium's own sandbox.
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
    timeout: 60_000,
  });
  const context = await browser.newContext({ viewport: { width: 1400, height: 1200 } });
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(m.text());
  });
  let screenshot: string | undefined;
  let finished = false;
  const shoot = async (name: string): Promise<void> => {
    mkdirSync(ARTIFACTS, { recursive: true });
    screenshot = join(ARTIFACTS, `${name}-${Date.now()}.png`);
    await page.screenshot({ path: screenshot, fullPage: true });
    process.stderr.write(`dashboard screenshot: ${screenshot}\n`);
  };
  t.after(async () => {
    // A failure leaves a picture of what the page showed; the browser goes, pass or fail.
    if (finished === false && browser) await shoot("dashboard-failed").catch(() => undefined);
    await closeBrowser();
  });

  // The token once in the address, then a cookie and an address without it; the page's headers are strict.
  const first = await page.goto(`${url}/ui?token=${TOKEN}`);
  assert.equal(new URL(page.url()).pathname, "/ui");
  assert.equal(new URL(page.url()).search, "", "the token is gone from the address");
  const headers = first?.headers() ?? {};
  assert.match(headers["content-security-policy"] ?? "", /default-src 'none'; script-src 'self'/);
  const cookies = await context.cookies(url);
  const cookie = cookies.find((c) => c.name === "luminaguard_ui");
  assert.ok(cookie, JSON.stringify(cookies));
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Strict");
  assert.notEqual(cookie.value, TOKEN, "the cookie is not the token");
  await page.locator("#status.ok").waitFor({ timeout: 15_000 });

  // What the cookie can and cannot do, from outside the page.
  const jar = { cookie: `luminaguard_ui=${cookie.value}` };
  assert.equal((await http({ url }, "GET", "/v1/stats", undefined, jar)).status, 200);
  assert.equal((await http({ url }, "POST", "/v1/sandboxes", { backend: "namespace" }, jar)).status, 401, "the cookie cannot create sandboxes");
  assert.equal((await http({ url }, "GET", "/metrics", undefined, jar)).status, 401);
  const port = new URL(url).port;
  const crossOrigin = await http({ url }, "POST", "/v1/approvals/ap-x", { decision: "approve" }, { ...jar, origin: "http://127.0.0.1:1" });
  assert.equal(crossOrigin.status, 403, "another local port's page (same-site) cannot answer");
  assert.equal((await http({ url }, "POST", "/v1/approvals/ap-x", { decision: "approve" }, jar)).status, 403, "no Origin: refused");
  assert.equal((await http({ url }, "POST", "/v1/approvals/ap-x", "decision=approve", { ...jar, origin: `http://127.0.0.1:${port}`, "content-type": "application/x-www-form-urlencoded" })).status, 403);
  assert.equal((await http({ url }, "GET", "/v1/stats", undefined, { ...jar, host: `rebound.example:${port}` })).status, 403, "DNS rebinding: a foreign Host is refused");
  assert.equal((await http({ url }, "GET", "/v1/stats", undefined, { ...jar, "sec-fetch-site": "same-site" })).status, 403);

  // A live sandbox appears, with its hostile client name shown as text.
  const hostile = `<img src=x id=pwn onerror="document.title='pwned'">`;
  const created = await http({ url }, "POST", "/v1/sandboxes", { backend: "namespace", workspace: ws.dir, approval: "ask", client: hostile }, bearer);
  assert.equal(created.status, 201, created.text);
  const { id } = created.json() as { id: string };
  const sandboxRow = page.locator(`tr[data-sandbox-id="${id}"]`);
  await sandboxRow.waitFor({ timeout: 15_000 });
  assert.match((await sandboxRow.textContent()) ?? "", /<img src=x id=pwn/);
  assert.equal(await page.locator("#pwn").count(), 0, "the client name is never markup");

  // A Red write waits for approval; its card shows the diff; Approve lets it run.
  const call = (path: string, content: string): Promise<HttpAnswer> => http({ url }, "POST", `/v1/sandboxes/${id}/tools/write_file`, { path, content }, bearer);
  const approved = call("approved.txt", "line one\n<script>alert(1)</script>\n");
  const card1 = page.locator(".approval", { hasText: "approved.txt" });
  await card1.waitFor({ timeout: 15_000 });
  assert.match((await card1.locator("pre.diff").textContent()) ?? "", /\+<script>alert\(1\)<\/script>/, "the diff is shown as text");
  assert.equal(await card1.locator("pre.diff script").count(), 0);
  await shoot("dashboard-pending");
  await card1.getByRole("button", { name: "Approve" }).click();
  const a = await approved;
  assert.equal(a.status, 200, a.text);
  assert.equal(readFileSync(join(ws.dir, "approved.txt"), "utf8"), "line one\n<script>alert(1)</script>\n", "the approved write is on disk");
  await card1.waitFor({ state: "detached", timeout: 15_000 });

  // Deny: the call is refused and nothing is written.
  const denied = call("denied.txt", "never\n");
  const card2 = page.locator(".approval", { hasText: "denied.txt" });
  await card2.waitFor({ timeout: 15_000 });
  await card2.getByRole("button", { name: "Deny" }).click();
  const r = await denied;
  assert.equal(r.status, 403, r.text);
  assert.equal((r.json() as { code: string }).code, "APPROVAL_DENIED");
  assert.equal(existsSync(join(ws.dir, "denied.txt")), false);

  // The audit log names the dashboard as the actor, and the page shows both decisions.
  const audit = (await http({ url }, "GET", "/v1/audit?tail=2", undefined, bearer)).json() as { entries: { decision: string; actor: string; channel: string }[] };
  assert.deepEqual(
    audit.entries.map((e) => [e.decision, e.actor, e.channel]),
    [
      ["allow", "http:dashboard", "http"],
      ["deny", "http:dashboard", "http"],
    ],
  );
  await page.locator("#audit tr", { hasText: "deny" }).first().waitFor({ timeout: 15_000 });
  // The charts and the calls table caught up with the calls.
  await page.locator("#calls tr", { hasText: "APPROVAL_DENIED" }).waitFor({ timeout: 15_000 });
  assert.ok((await page.locator("#chart-rate polyline").count()) > 0, "the rate chart has a line");
  assert.equal(await page.title(), "LuminaGuard daemon", "no script of the page's data ran");
  await shoot("dashboard-answered");
  assert.deepEqual(pageErrors, [], "no script error or CSP violation in the page");
  finished = true;
  await closeBrowser();
  assert.equal(await d.stop(), 0, "the daemon drains and exits 0");
});
