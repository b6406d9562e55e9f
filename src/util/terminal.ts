// Text from a model, a guest, a workspace file, an MCP peer or an error message, made inert before it reaches a terminal.
// It lives here, not in src/cli, because the approval cards and the agent's progress need it too, and feature
// folders do not import from the CLI.

// C0 controls (tab and newline are handled below), DEL, C1 controls, the Arabic letter mark, LRM/RLM and the
// bidirectional embeddings, overrides and isolates: each can move the cursor, rewrite the screen, set the
// clipboard (OSC 52), ring the bell or reorder what a person reads.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE_CHARS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

/**
 * Shows every control character as a visible escape (`\x1b`, `\x0d`, `\u202e`), so the text cannot drive the
 * terminal: no escape sequences, no carriage-return overwrites, no bell, no bidi reordering. Tabs stay; newlines
 * stay unless `keepNewlines` is false (one-line contexts), where they become `\n`.
 */
export function escapeForTerminal(text: string, keepNewlines = true): string {
  return text.replace(UNSAFE_CHARS, (ch) => {
    if (ch === "\t") return "\t";
    if (ch === "\n") return keepNewlines ? "\n" : "\\n";
    const code = ch.codePointAt(0) as number;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** `text` cut to `max` characters, saying how many were left out (never a silent cut). */
export function clipWithMarker(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}… [${text.length - max} more chars]` : text;
}
