#!/usr/bin/env node
// How long the caller's event loop stalls while the bundled model (models/fashion-dit) generates:
// `generate()` on the main thread vs the same generation on a worker pipeline (@ditfa/models-dit/worker).
// Measured with perf_hooks.monitorEventLoopDelay (max, p99, p50) and, as the issue that asked for this
// measured it, an interval timer: how many of its ticks fired, and the longest gap between two.
// The goal (issue 17): a longest delay of at most 20 ms in worker mode. Prints the machine; writes
// JSON to bench/results/event-loop.json (event-loop-nicenessN.json with --niceness N).
//
// Each measured generation runs in a fresh Node process of its own (a child of this script), so the two
// modes share no thread pools, caches or garbage; the rounds alternate the order of the modes.
//
// Options: --samples N (8) --steps N (20) --rounds N (3, each runs both modes, alternating)
//          --threads N (onnxruntime intra-op threads; default one per core) --tick MS (10)
//          --spinning 0|1 (onnxruntime's intra-op threads spin while idle; default: onnxruntime's, on)
//          --niceness N (the worker's nice value relative to the process, Linux; default 0)
// Run after a build: `pnpm bench:event-loop` (builds, then runs this).
import { execSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (pkg, file = 'index.js') => pathToFileURL(path.join(repo, 'packages', pkg, 'dist', file)).href;
const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const child = argv.includes('--child') ? argv[argv.indexOf('--child') + 1] : null;
const samples = option('samples', 8);
const steps = option('steps', 20);
const rounds = option('rounds', 3);
const threads = option('threads', undefined);
const tickMs = option('tick', 10);
const spinning = option('spinning', undefined);
const niceness = option('niceness', 0);
const modelDir = path.join(repo, 'models', 'fashion-dit');
const request = { classLabels: Array.from({ length: samples }, (_, i) => i % 10), seed: 0, steps, guidanceScale: 4 };

function machine() {
  let flags = [];
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = (line ?? '').split(':')[1].trim().split(/\s+/).filter((f) => /^(avx2|fma|avx512f|avx512_bf16|amx_bf16)$/.test(f));
  } catch {}
  let gpu = null;
  try {
    gpu = execSync('nvidia-smi --query-gpu=name,driver_version --format=csv,noheader', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {}
  const ort = JSON.parse(readFileSync(path.join(repo, 'packages/models-dit/node_modules/onnxruntime-node/package.json'), 'utf8')).version;
  return { cpu: os.cpus()[0]?.model, cores: os.cpus().length, flags, memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), gpu, node: process.version, onnxruntime: ort, platform: `${os.platform()} ${os.release()}`, loadAverage: os.loadavg().map((x) => +x.toFixed(2)) };
}

/** Runs `work` with the event loop watched: delay histogram and an interval timer's ticks. */
async function watched(work) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  let ticks = 0;
  let last = performance.now();
  let longestGap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longestGap = Math.max(longestGap, now - last);
    last = now;
    ticks += 1;
  }, tickMs);
  h.enable();
  const t0 = performance.now();
  const result = await work();
  const seconds = (performance.now() - t0) / 1000;
  h.disable();
  clearInterval(timer);
  longestGap = Math.max(longestGap, performance.now() - last);
  const ms = (ns) => +(ns / 1e6).toFixed(2);
  return {
    result,
    seconds: +seconds.toFixed(3),
    delayMs: { max: ms(h.max), p99: ms(h.percentile(99)), p50: ms(h.percentile(50)), mean: ms(h.mean) },
    timer: { tickMs, fired: ticks, due: Math.floor((seconds * 1000) / tickMs), longestGapMs: +longestGap.toFixed(2) },
  };
}

const opts = { ...(threads === undefined ? {} : { threads }), ...(spinning === undefined ? {} : { spinning: spinning === 1 }) };

/** One measured generation in this process: load, warm up, measure. */
async function measureHere(mode) {
  let pipe;
  let fallbackReason = null;
  const onEvent = (e) => {
    if (e.type === 'backend' && e.fallbackReason) fallbackReason = e.fallbackReason;
  };
  if (mode === 'in-thread') {
    // The packages as built in this checkout (the repository root depends on none of them directly).
    await import(dist('kernels-cpu'));
    const { createPipeline, loadModel } = await import(dist('models-dit'));
    pipe = createPipeline(await loadModel(modelDir, opts), { onEvent });
  } else {
    const { openWorkerPipeline } = await import(dist('models-dit', 'worker.js'));
    pipe = await openWorkerPipeline(modelDir, { ...opts, niceness, onEvent, imports: ['@ditfa/kernels-cpu'], parentURL: dist('models-dit', '../package.json') });
  }
  // Both modes must run the native kernels: a run on the reference backend measures something else.
  const resolved = (await pipe.backend()).name;
  if (resolved !== 'cpu') throw new Error(`the ${mode} run resolved the "${resolved}" kernel backend, not the native "cpu" one:\n${fallbackReason ?? ''}`);
  // The first generation after loading (onnxruntime initialises each session on its first run), then
  // one more: a server's first request, and every later one.
  const { result: first, ...cold } = await watched(() => pipe.generate(request));
  const { result, ...m } = await watched(() => pipe.generate(request));
  const backend = resolved;
  await pipe.dispose();
  const checksum = result.latents.data.reduce((a, b) => a + b, 0);
  if (checksum !== first.latents.data.reduce((a, b) => a + b, 0)) throw new Error('two generations of the same request differ');
  return { mode, backend, ...m, first: cold, checksum };
}

if (child) {
  process.stdout.write(JSON.stringify(await measureHere(child)));
  process.exit(0);
}

const runs = [];
for (let r = 0; r < rounds; r++) {
  for (const mode of r % 2 === 0 ? ['in-thread', 'worker'] : ['worker', 'in-thread']) {
    const run = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...argv, '--child', mode], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (run.status !== 0) {
      process.stderr.write(run.stderr);
      throw new Error(`the ${mode} run of round ${r} failed (exit ${run.status})`);
    }
    const rest = JSON.parse(run.stdout);
    runs.push({ round: r, ...rest });
    const line = (m) => `${m.seconds.toFixed(2)} s, event-loop delay max ${m.delayMs.max} ms, p99 ${m.delayMs.p99} ms; ${tickMs} ms timer fired ${m.timer.fired} of ${m.timer.due}, longest gap ${m.timer.longestGapMs} ms`;
    process.stderr.write(`${mode.padEnd(9)} round ${r}: first generation ${line(rest.first)}\n${' '.repeat(18)}next generation  ${line(rest)}\n`);
  }
}
const backends = { inThread: runs.find((x) => x.mode === 'in-thread')?.backend, worker: runs.find((x) => x.mode === 'worker')?.backend };

const summary = Object.fromEntries(
  ['in-thread', 'worker'].map((mode) => {
    const rs = runs.filter((x) => x.mode === mode);
    const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const stats = (xs) => ({ maxDelayMs: Math.max(...xs.map((x) => x.delayMs.max)), medianMaxDelayMs: med(xs.map((x) => x.delayMs.max)), medianP99Ms: med(xs.map((x) => x.delayMs.p99)), medianSeconds: med(xs.map((x) => x.seconds)), longestTimerGapMs: Math.max(...xs.map((x) => x.timer.longestGapMs)) });
    return [mode, { first: stats(rs.map((x) => x.first)), next: stats(rs) }];
  }),
);
const same = new Set(runs.map((x) => x.checksum)).size === 1;
const report = {
  benchmark: 'event-loop delay during generate(), in-thread vs worker pipeline',
  date: new Date().toISOString(),
  machine: { ...machine(), ortThreads: threads ?? 'default (one per core)', ortSpinning: spinning === undefined ? 'default (on)' : spinning === 1, workerNiceness: niceness },
  model: 'models/fashion-dit',
  request: { samples, steps, guidanceScale: 4, sampler: 'dpmpp-2m' },
  backends,
  goal: { workerMaxDelayMs: 20, met: Math.max(summary.worker.first.maxDelayMs, summary.worker.next.maxDelayMs) <= 20, metInRuns: `${runs.filter((x) => x.mode === 'worker' && Math.max(x.delayMs.max, x.first.delayMs.max) <= 20).length} of ${rounds}` },
  sameLatentsInBothModes: same,
  summary,
  runs,
};
mkdirSync(path.join(repo, 'bench', 'results'), { recursive: true });
const out = path.join(repo, 'bench', 'results', `event-loop${niceness ? `-niceness${niceness}` : ''}.json`);
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
process.stdout.write(`${JSON.stringify({ machine: report.machine, backends, summary, goal: report.goal, sameLatentsInBothModes: same }, null, 2)}\nwritten to ${path.relative(process.cwd(), out)}\n`);
