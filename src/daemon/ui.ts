// The dashboard's static files (src/daemon/ui/, shipped in the package) and the headers they are served with.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { LuminaGuardError } from "../errors.js";
import { packageRoot } from "../util/pkg.js";

export const UI_FILES: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
  "icon.svg": "image/svg+xml",
};

/**
 * Nothing but the daemon's own files: no inline script or style, no other origin, no framing, no forms,
 * and the page's address (which may have carried the token) never sent as a Referer.
 */
export const UI_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

const cache = new Map<string, Buffer>();

/** One of the dashboard's files, read once from the package (works from dist and from an installed package). */
export function uiFile(name: string): { body: Buffer; type: string } {
  const type = Object.hasOwn(UI_FILES, name) ? UI_FILES[name] : undefined;
  if (type === undefined) throw new LuminaGuardError("NOT_FOUND", `no dashboard file ${JSON.stringify(name)}`);
  let body = cache.get(name);
  if (body === undefined) {
    body = readFileSync(join(packageRoot(), "src", "daemon", "ui", name));
    cache.set(name, body);
  }
  return { body, type };
}
