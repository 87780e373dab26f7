/**
 * Where a command's results go: human text on stdout, or one JSON document with `--json`. Progress
 * and notes go to stderr so stdout stays parseable.
 */
export interface Output {
  readonly json: boolean;
  /** Prints the command's result: `data` as JSON, or `text()` for people. */
  result(data: unknown, text: () => string): void;
  /** A note for people (stderr); silent with `--json`. */
  note(line: string): void;
  /** A warning (stderr, `ditfa: warning: …`), also with `--json`; the same text once per command. */
  warn(text: string): void;
}

export function createOutput(json: boolean, stdout: NodeJS.WritableStream = process.stdout, stderr: NodeJS.WritableStream = process.stderr): Output {
  const warned = new Set<string>();
  return {
    json,
    result(data, text) {
      stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : text());
    },
    note(line) {
      if (!json) stderr.write(`${line}\n`);
    },
    warn(text) {
      if (warned.has(text)) return;
      warned.add(text);
      stderr.write(`ditfa: warning: ${text}\n`);
    },
  };
}
