import cliProgress from 'cli-progress';

/** A progress bar on stderr (silent when stderr is not a terminal or with --json). */
export interface Progress {
  start(total: number, label: string): void;
  update(value: number, detail?: string): void;
  stop(): void;
}

export function createProgress(enabled: boolean, stream: NodeJS.WritableStream = process.stderr): Progress {
  if (!enabled) return { start() {}, update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { stream: stream as NodeJS.WriteStream, format: '{label} [{bar}] {value}/{total} {detail}', hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let running = false;
  return {
    start(total, label) {
      if (running) bar.stop();
      bar.start(total, 0, { label, detail: '' });
      running = true;
    },
    update(value, detail = '') {
      bar.update(value, { detail });
    },
    stop() {
      if (running) bar.stop();
      running = false;
    },
  };
}
