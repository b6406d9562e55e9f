// One HTTP/1.1 request over the daemon's Unix socket, on a connection of its own, with node:net alone: for the
// thin `luminaguard exec` (src/cli/exec-thin.ts), which must answer in about node's own start time and so
// does not load node:http (its client, agent, parser and streams cost ~10 ms of a cold process here). Only
// what our daemon answers is understood: a status line, headers, and a body sized by Content-Length, sent
// chunked, or ended by the connection's close. Its bytes are parsed within bounds all the same.
import { connect, type Socket } from "node:net";

export interface UnixResponse {
  status: number;
}

export interface UnixRequestOptions {
  method: string;
  path: string;
  body?: string;
  /** The status line and headers have arrived (before any body bytes). */
  onHead?: (r: UnixResponse) => void;
  /** Body bytes, de-chunked, as they arrive. Throwing fails the request (the connection is closed). */
  onData: (chunk: Buffer) => void;
  signal?: AbortSignal;
}

/** A status line and headers larger than this are not our daemon's. */
const MAX_HEAD = 64 * 1024;
/** A chunk-size line longer than this is not HTTP. */
const MAX_CHUNK_LINE = 1024;

function protocolError(what: string): Error {
  return Object.assign(new Error(`malformed HTTP response from the daemon: ${what}`), { code: "EPROTO" });
}

/** The request's bytes: HTTP/1.1, Connection: close, the body as JSON when there is one. */
export function requestBytes(method: string, path: string, body: string | undefined, close = true): Buffer {
  const lines = [`${method} ${path} HTTP/1.1`, "Host: localhost", "Accept: application/json"];
  if (body !== undefined) lines.push("Content-Type: application/json", `Content-Length: ${Buffer.byteLength(body)}`);
  if (close) lines.push("Connection: close");
  return Buffer.from(`${lines.join("\r\n")}\r\n\r\n${body ?? ""}`, "utf8");
}

/**
 * Sends one request and resolves when the response's body has ended. Rejects with the socket's own error
 * (its errno in `code`: ENOENT, ECONNREFUSED... as node:http would), an ECONNRESET "socket hang up" when
 * the connection ends before the response does, EPROTO for bytes that are not the HTTP expected, the
 * onData's own error, or an AbortError when the signal fires.
 */
export function unixRequest(socketPath: string, o: UnixRequestOptions): Promise<UnixResponse> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ path: socketPath });
    let settled = false;
    let head: UnixResponse | undefined;
    let pending: Buffer = Buffer.alloc(0);
    /** head: the status line and headers; size/data/crlf/trailers: chunked; length: Content-Length; close: until the end. */
    let state: "head" | "size" | "data" | "crlf" | "trailers" | "length" | "close" | "done" = "head";
    let remaining = 0;
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      o.signal?.removeEventListener("abort", onAbort);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        // The daemon closes its side (Connection: close); nothing of ours keeps the process up meanwhile.
        socket.unref();
        resolve(head as UnixResponse);
      }
    };
    const onAbort = (): void => finish(Object.assign(new Error("the request was aborted"), { name: "AbortError", code: "ABORT_ERR" }));
    if (o.signal?.aborted) return onAbort();
    o.signal?.addEventListener("abort", onAbort, { once: true });

    const parseHead = (): boolean => {
      const end = pending.indexOf("\r\n\r\n");
      if (end < 0) {
        if (pending.length > MAX_HEAD) throw protocolError("headers too large");
        return false;
      }
      const lines = pending.subarray(0, end).toString("latin1").split("\r\n");
      pending = pending.subarray(end + 4);
      const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? "");
      if (!m) throw protocolError("no status line");
      const status = Number(m[1]);
      // An interim answer (100 Continue): the real one follows.
      if (status >= 100 && status < 200) return true;
      let length: number | undefined;
      let chunked = false;
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        if (colon <= 0) throw protocolError("bad header line");
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === "transfer-encoding") chunked = value.toLowerCase().split(",").map((v) => v.trim()).includes("chunked");
        else if (name === "content-length") {
          if (!/^\d{1,15}$/.test(value) || (length !== undefined && length !== Number(value))) throw protocolError("bad Content-Length");
          length = Number(value);
        }
      }
      head = { status };
      o.onHead?.(head);
      if (chunked) state = "size";
      else if (length !== undefined) {
        state = "length";
        remaining = length;
      } else state = "close";
      return true;
    };

    const deliver = (n: number): void => {
      const part = pending.subarray(0, n);
      pending = pending.subarray(n);
      if (part.length > 0) o.onData(part);
    };

    /** Consumes what `pending` holds; false when it needs more bytes. */
    const step = (): boolean => {
      switch (state) {
        case "head":
          return parseHead();
        case "size": {
          const nl = pending.indexOf("\r\n");
          if (nl < 0) {
            if (pending.length > MAX_CHUNK_LINE) throw protocolError("chunk size line too long");
            return false;
          }
          const m = /^([0-9a-fA-F]{1,8})(?:;.*)?$/.exec(pending.subarray(0, nl).toString("latin1"));
          if (!m) throw protocolError("bad chunk size");
          pending = pending.subarray(nl + 2);
          remaining = parseInt(m[1] as string, 16);
          state = remaining === 0 ? "trailers" : "data";
          return true;
        }
        case "data": {
          if (pending.length === 0) return false;
          const n = Math.min(remaining, pending.length);
          remaining -= n;
          deliver(n);
          if (remaining === 0) state = "crlf";
          return true;
        }
        case "crlf":
          if (pending.length < 2) return false;
          if (pending[0] !== 13 || pending[1] !== 10) throw protocolError("chunk not followed by CRLF");
          pending = pending.subarray(2);
          state = "size";
          return true;
        case "trailers": {
          const nl = pending.indexOf("\r\n");
          if (nl < 0) {
            if (pending.length > MAX_HEAD) throw protocolError("trailers too large");
            return false;
          }
          pending = pending.subarray(nl + 2);
          if (nl === 0) state = "done";
          return true;
        }
        case "length": {
          const n = Math.min(remaining, pending.length);
          remaining -= n;
          deliver(n);
          if (remaining === 0) state = "done";
          return remaining === 0;
        }
        case "close":
          deliver(pending.length);
          return false;
        case "done":
          return false;
      }
    };

    socket.once("connect", () => socket.write(requestBytes(o.method, o.path, o.body)));
    socket.on("data", (c: Buffer) => {
      if (settled) return;
      pending = pending.length === 0 ? c : Buffer.concat([pending, c]);
      try {
        while (state !== "done" && step());
      } catch (err) {
        finish(err as Error);
        return;
      }
      if (state === "done") finish();
    });
    socket.once("error", (err) => finish(err));
    socket.once("close", () => {
      if (state === "close") finish();
      else finish(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }));
    });
  });
}

/**
 * Writes a request whose answer nobody waits for (DELETE of a sandbox, whose handler runs to its end
 * whatever becomes of the connection): resolves once its bytes are handed to the kernel, or at once on
 * any failure (a daemon that is gone took its sandboxes with it). The connection then holds nothing up.
 */
export function unixSendOnly(socketPath: string, method: string, path: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ path: socketPath });
    socket.once("error", () => resolve());
    socket.once("connect", () =>
      socket.write(requestBytes(method, path, undefined, false), () => {
        socket.unref();
        resolve();
      }),
    );
  });
}
