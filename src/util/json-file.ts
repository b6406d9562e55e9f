// JSON files the user hands us (config, policy, plan, a stored run): read → parse → validate, each failure a named error of the caller's.
import { readFileSync } from "node:fs";
import type { z } from "zod";

interface JsonFileErrors<T> {
  /** The file cannot be read (missing, a directory, no permission). */
  unreadable: (err: NodeJS.ErrnoException) => Error;
  /** The text is not JSON. */
  notJson: (err: Error) => Error;
  /** What a missing file (ENOENT) stands for; without it a missing file is unreadable. */
  missing?: () => T;
}

/** Reads `path` as UTF-8 JSON and hands the value to `validate`; a read or parse failure throws the caller's error. */
export function readJsonFile<T>(path: string, validate: (raw: unknown) => T, errors: JsonFileErrors<T>): T {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT" && errors.missing) return errors.missing();
    throw errors.unreadable(e);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw errors.notJson(err as Error);
  }
  return validate(raw);
}

interface IssueFormat {
  /** How an issue at the top level is named. Default "(top level)". */
  root?: string;
  /** An issue's text. Default its message. */
  message?: (issue: z.core.$ZodIssue) => string;
}

/** One "a.b.0: message" line per zod issue. */
export function issueLines(error: z.ZodError, format: IssueFormat = {}): string[] {
  const root = format.root ?? "(top level)";
  return error.issues.map((i) => `${i.path.length ? i.path.map(String).join(".") : root}: ${format.message ? format.message(i) : i.message}`);
}

/** `schema` applied to `raw`; on failure throws `invalid(lines)`, one line per issue (see issueLines). */
export function parseWith<S extends z.ZodType>(schema: S, raw: unknown, invalid: (issues: string[], error: z.ZodError) => Error, format?: IssueFormat): z.output<S> {
  const r = schema.safeParse(raw);
  if (!r.success) throw invalid(issueLines(r.error, format), r.error);
  return r.data;
}
