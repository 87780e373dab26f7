#!/usr/bin/env node
// `pnpm bench:e2e` (issue 16): ditfa against PyTorch on the same CPU, same weights, same inputs, one
// denoising step, in one run. Every contender is a process of its own (its peak RSS is its own: the
// model, its runtime's libraries and every activation), all of a model's contenders stay loaded, and
// the bench asks each in turn for one run per round (round-robin), so background load on a shared
// machine hits them alike. Writes bench/results/e2e-<date>.json at the repository root with the
// machine, every sample, medians, ratios and peak RSS.
//
// Models: the bundled fashion-dit (batch 2×20 with CFG: one forward per step; the shipped plans
// D1..D6 as the mean step of a 20-step generation), DiT-XL/2-512 and PixArt-Σ-1024 (random weights,
// batch 2; PixArt with DITFA_E2E_PIXART_BLOCKS of its 28 blocks), plus a memory run: peak RSS of a
// 50-sample (batch 100) generation of the bundled model per contender.
// Contenders: ditfa raw before this issue's work (onnxruntime engine with its default spinning threads),
// ditfa raw (default: native dense engine, fp32), ditfa raw bf16 (explicit option: dense and attention
// bf16), ditfa under each plan, PyTorch fp32 and PyTorch with bf16 autocast (tools/bench_torch_step.py;
// skipped with a note when torch is missing).
//
// Env: DITFA_E2E_MODELS=bundled,dit,pixart,memory  DITFA_E2E_ROUNDS=3  DITFA_E2E_THREADS=<cores> (every
//      contender's threads: PyTorch's, onnxruntime's intra-op and the native kernel pool)
//      DITFA_E2E_DIT_BLOCKS=28  DITFA_E2E_PIXART_BLOCKS=4  DITFA_E2E_BEFORE=1 (0 skips the onnxruntime
//      baseline on the large models: it holds ~2.3× the weights)  DITFA_E2E_ORT=1 (adds today's onnxruntime engine
//      on the large models too; all of a model's contenders stay loaded at once)  DITFA_E2E_QUICK=1 (tiny sizes)
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../..');
const env = process.env;
const quick = env.DITFA_E2E_QUICK === '1';
const rounds = Number(env.DITFA_E2E_ROUNDS ?? (quick ? 2 : 3));
const threads = Number(env.DITFA_E2E_THREADS ?? os.cpus().length);
const wanted = (env.DITFA_E2E_MODELS ?? 'bundled,dit,pixart,memory').split(',');
const withBefore = env.DITFA_E2E_BEFORE !== '0';
const withOrt = env.DITFA_E2E_ORT === '1';
const cache = path.join(repoRoot, 'runs', 'bench-e2e');
mkdirSync(cache, { recursive: true });
const work = path.join(os.tmpdir(), `ditfa-e2e-${process.pid}`);
mkdirSync(work, { recursive: true });
const say = (line) => process.stdout.write(`${line}\n`);

// --- the machine ------------------------------------------------------------------------------------
function cpuinfo(key) {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith(key));
    return line ? line.split(':')[1].trim() : null;
  } catch {
    return null;
  }
}
function torchVersion() {
  const r = spawnSync('python3', ['-c', 'import torch, safetensors; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}
const load = () => os.loadavg().map((x) => Number(x.toFixed(2)));
async function kernelStatus() {
  const { cpuBackendStatus } = await import('@ditfa/kernels-cpu/base');
  const s = cpuBackendStatus();
  return { available: s.available, isa: s.activeIsa ?? null, features: s.features, densePaths: s.densePaths, threads: s.threads ?? null, errors: s.errors };
}
const torch = torchVersion();
const machine = {
  cpu: cpuinfo('model name') ?? os.cpus()[0]?.model,
  cpuFamilyModel: `${cpuinfo('cpu family')}/${cpuinfo('model')}`,
  logicalCpus: os.cpus().length,
  flags: (cpuinfo('flags') ?? '').split(/\s+/).filter((f) => /^(avx2|fma|avx512f|avx512bw|avx512_bf16|avx512_fp16|avx512_vnni|avx_vnni|amx_bf16|amx_int8|amx_tile)$/.test(f)),
  memoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
  platform: `${os.platform()} ${os.release()}`,
  node: process.version,
  onnxruntime: JSON.parse(readFileSync(path.join(here, '../node_modules/onnxruntime-node/package.json'), 'utf8')).version,
  torch: torch ?? 'not installed',
  kernelsCpu: await kernelStatus(),
  threads,
  loadAverageBefore: load(),
};
say(`machine: ${JSON.stringify(machine)}`);
if (!torch) say('PyTorch: not installed (pip install -r tools/requirements.txt); its contenders are skipped');

// --- contenders -------------------------------------------------------------------------------------
/** A contender process speaking the bench protocol (ready / run / quit). */
class Contender {
  constructor(name, kind, command, args, meta) {
    this.name = name;
    this.kind = kind;
    this.meta = meta;
    this.samples = [];
    this.proc = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  }
  async next() {
    const { value, done } = await this.lines.next();
    if (done) throw new Error(`contender ${this.name} exited`);
    return value;
  }
  async ready() {
    this.readyLine = (await this.next()).split(' ');
    return this;
  }
  async run() {
    this.proc.stdin.write('run\n');
    const [steps, attention, dense] = (await this.next()).split('|').map((part) => part.split(',').map(Number));
    if (attention) (this.attention ??= []).push(...attention);
    if (dense) (this.dense ??= []).push(...dense);
    return steps;
  }
  async quit() {
    this.proc.stdin.write('quit\n');
    let line = await this.next();
    while (!line.startsWith('rss ')) line = await this.next();
    this.peakRssBytes = Number(line.split(' ')[1]) * 1024;
    await new Promise((done) => (this.proc.exitCode !== null ? done() : this.proc.on('close', done)));
  }
}

function ditfa(name, config, meta = {}) {
  const file = path.join(work, `${name.replace(/[^a-z0-9]+/gi, '_')}.json`);
  const output = path.join(work, `${name.replace(/[^a-z0-9]+/gi, '_')}.out`);
  writeFileSync(file, JSON.stringify({ kernelThreads: threads, ...config, output }));
  const c = new Contender(name, 'ditfa', process.execPath, [path.join(here, 'e2e-contender.mjs'), file], { ...meta, engine: config.engine, dense: config.dense ?? 'fp32', compute: config.compute ?? 'fp32', mode: config.mode });
  c.output = output;
  return c;
}

function pytorch(name, config, meta = {}) {
  const file = path.join(work, `${name.replace(/[^a-z0-9]+/gi, '_')}.json`);
  const output = path.join(work, `${name.replace(/[^a-z0-9]+/gi, '_')}.out`);
  writeFileSync(file, JSON.stringify({ ...config, output, threads }));
  const c = new Contender(name, 'pytorch', 'python3', [path.join(repoRoot, 'tools', 'bench_torch_step.py'), file], { ...meta, mode: config.mode });
  c.output = output;
  return c;
}

const readOut = (c) => (existsSync(c.output) ? new Float32Array(readFileSync(c.output).buffer.slice(0)) : null);
function maxRelError(a, b) {
  if (!a || !b || a.length !== b.length) return null;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), 1));
  return m;
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : null;
};

/**
 * Loads the contenders one after another (memory), warms each up, then runs `rounds` rounds round-robin.
 * A contender whose process dies (out of memory beside the others, say) is dropped with the reason and
 * the rest go on; `failed` lists them.
 */
async function race(title, makers, perRound = rounds) {
  say(`\n== ${title}: ${makers.length} contenders, ${perRound} rounds (+ a warm-up run each)`);
  let all = [];
  const failed = [];
  const attempt = async (c, what, fn) => {
    try {
      return await fn();
    } catch (error) {
      const code = c.proc.exitCode ?? c.proc.signalCode ?? 'running';
      failed.push({ name: c.name, during: what, error: `${error.message} (exit ${code})` });
      say(`  FAILED: ${c.name} during ${what}: ${error.message} (exit ${code}); the others go on`);
      c.proc.kill('SIGKILL');
      all = all.filter((x) => x !== c);
      return undefined;
    }
  };
  for (const make of makers) {
    const c = make();
    all.push(c);
    if (await attempt(c, 'loading', () => c.ready())) say(`  ready: ${c.name} (${c.readyLine.slice(1).join(' ')})`);
  }
  for (const c of [...all]) await attempt(c, 'the warm-up run', () => c.run()); // first-touch of weights, lazy init
  const loads = [];
  for (let r = 0; r < perRound; r++) {
    loads.push(load()[0]);
    for (const c of [...all]) {
      const steps = await attempt(c, `round ${r + 1}`, () => c.run());
      if (!steps) continue;
      c.samples.push(...steps);
      say(`  round ${r + 1} ${c.name.padEnd(34)} step ${(median(steps) * 1000).toFixed(0).padStart(7)} ms (median of ${steps.length})`);
    }
  }
  for (const c of [...all]) await attempt(c, 'quitting', () => c.quit());
  return { all, failed, loadAverage1mDuringRounds: loads };
}

function summarize(all) {
  const rows = all.map((c) => ({
    name: c.name,
    kind: c.kind,
    ...c.meta,
    stepMs: { median: median(c.samples) * 1000, best: Math.min(...c.samples) * 1000, samples: c.samples.map((s) => Number((s * 1000).toFixed(2))) },
    ...(c.attention ? { attentionMs: median(c.attention) * 1000, denseMs: median(c.dense) * 1000 } : {}),
    peakRssBytes: c.peakRssBytes,
    peakRssGiB: Number((c.peakRssBytes / 2 ** 30).toFixed(3)),
    loadSeconds: Number(c.readyLine?.[1] ?? NaN),
  }));
  const by = Object.fromEntries(rows.map((r) => [r.name, r]));
  for (const r of rows) {
    r.ratios = {};
    for (const base of ['pytorch fp32', 'pytorch bf16']) {
      if (by[base]) r.ratios[`vs ${base}`] = { median: r.stepMs.median / by[base].stepMs.median, best: r.stepMs.best / by[base].stepMs.best };
    }
  }
  return { rows, by };
}

function table(rows) {
  for (const r of rows) {
    const ratio = (k) => (r.ratios[k] ? `${r.ratios[k].median.toFixed(2)}×` : '—');
    say(`  ${r.name.padEnd(34)} median ${r.stepMs.median.toFixed(0).padStart(7)} ms  best ${r.stepMs.best.toFixed(0).padStart(7)} ms  ÷pt-fp32 ${ratio('vs pytorch fp32').padStart(6)}  ÷pt-bf16 ${ratio('vs pytorch bf16').padStart(6)}  peak RSS ${r.peakRssGiB.toFixed(2)} GiB`);
  }
}

/** Self-attention throughput inside the model (full attention FLOPs 4·B·L²·C per block over the attention time of a forward). */
function attentionRates(rows, B, L, C, depth) {
  const flops = 4 * B * L * L * C * depth;
  for (const r of rows) {
    if (r.attentionMs === undefined) continue;
    r.attentionGflopsInModel = flops / (r.attentionMs / 1000) / 1e9;
    say(`  ${r.name.padEnd(34)} attention ${r.attentionMs.toFixed(0)} ms (${r.attentionGflopsInModel.toFixed(0)} GFLOP/s in the model), dense ${r.denseMs.toFixed(0)} ms`);
  }
}

// --- weights and inputs -----------------------------------------------------------------------------
/** Random weights (official key names) and inputs of a large model, cached under runs/bench-e2e/. */
function prepare(kind, config, batchInputs) {
  const key = createHash('sha256').update(JSON.stringify({ kind, config, batchInputs, v: 1 })).digest('hex').slice(0, 12);
  const weights = path.join(cache, `${kind}-${key}.safetensors`);
  const inputs = path.join(cache, `${kind}-${key}-inputs.safetensors`);
  if (!existsSync(weights) || !existsSync(inputs)) {
    say(`  writing random weights and inputs to ${path.relative(repoRoot, weights)} …`);
    execFileSync(process.execPath, [path.join(here, 'e2e-prepare.mjs'), JSON.stringify({ kind, config, weights, inputs, batchInputs })], { stdio: 'inherit' });
  }
  return { weights, inputs };
}

const report = { benchmark: 'e2e', issue: 16, date: new Date().toISOString(), quick, machine, settings: { rounds, threads }, notes: [], models: {} };
report.notes.push(
  'Each contender is its own process (peak RSS = getrusage maxrss of that process: model, runtime libraries, activations).',
  'Round-robin: one run of every contender per round after a warm-up run each; medians over all samples are compared, bests are kept too.',
  "ditfa before = the onnxruntime engine as it was before issue 16 (one session per block piece, onnxruntime's default spinning intra-op threads); ditfa onnxruntime = the onnxruntime engine now (shared block sessions, threads that sleep); ditfa raw = the default now (native dense engine, fp32).",
  "ditfa bf16 = loadModel(…, { dense: 'bf16' }) plus the pipeline's compute: 'bf16' (attention kernels in bf16); PyTorch bf16 = torch.autocast('cpu', dtype=torch.bfloat16).",
);

/** The onnxruntime engine as it was before issue 16: a session per block piece, spinning intra-op threads. */
const BEFORE = { engine: 'onnxruntime', ortBlocks: 'per-block', spinning: true };
const fashionDir = path.join(repoRoot, 'models', 'fashion-dit');
const fashionConfig = JSON.parse(readFileSync(path.join(fashionDir, 'config.json'), 'utf8'));
const torchFashion = { input_size: 32, patch_size: 2, in_channels: 1, hidden_size: 192, depth: 6, num_heads: 6, mlp_ratio: 4.0, class_dropout_prob: 0.1, num_classes: 10, learn_sigma: true };

async function bundled() {
  const n = quick ? 2 : 20;
  const B = 2 * n;
  // the same forward input for ditfa and PyTorch: noise, t = 500, labels (cond | null)
  const prep = path.join(work, 'bundled-inputs.safetensors');
  execFileSync(process.execPath, [path.join(here, 'e2e-prepare.mjs'), JSON.stringify({ kind: 'bundled-inputs', B, inputs: prep })], { stdio: 'inherit' });
  const fwd = { model: 'bundled', dir: fashionDir, mode: 'forward', inputs: prep, forwards: quick ? 1 : 5, threads };
  const gen = { model: 'bundled', dir: fashionDir, mode: 'generate', samples: n, steps: 20, guidance: 4, seed: 0, threads };
  const torchCfg = { model: 'dit', config: torchFashion, weights: path.join(fashionDir, 'weights.safetensors'), inputs: prep, forwards: quick ? 1 : 5 };
  const plans = quick ? ['D1'] : ['D1', 'D2', 'D3', 'D4', 'D5', 'D6'];
  const makers = [
    () => ditfa('ditfa before (onnxruntime)', { ...fwd, ...BEFORE }, { step: 'forward' }),
    () => ditfa('ditfa onnxruntime', { ...fwd, engine: 'onnxruntime' }, { step: 'forward' }),
    () => ditfa('ditfa raw', { ...fwd, engine: 'native' }, { step: 'forward' }),
    () => ditfa('ditfa raw bf16', { ...fwd, engine: 'native', dense: 'bf16', compute: 'bf16' }, { step: 'forward' }),
    ...(torch ? [() => pytorch('pytorch fp32', { ...torchCfg, mode: 'fp32' }, { step: 'forward' }), () => pytorch('pytorch bf16', { ...torchCfg, mode: 'bf16' }, { step: 'forward' })] : []),
    () => ditfa('ditfa raw (generation)', { ...gen, engine: 'native' }, { step: 'mean of a 20-step generation' }),
    ...plans.map((p) => () => ditfa(`ditfa ${p}`, { ...gen, engine: 'native', plan: path.join(fashionDir, 'plans', `${p}.json`) }, { step: 'mean of a 20-step generation', plan: p })),
    () => ditfa('ditfa raw bf16 (generation)', { ...gen, engine: 'native', dense: 'bf16', compute: 'bf16' }, { step: 'mean of a 20-step generation' }),
    () => ditfa('ditfa D1 bf16', { ...gen, engine: 'native', dense: 'bf16', compute: 'bf16', plan: path.join(fashionDir, 'plans', 'D1.json') }, { step: 'mean of a 20-step generation', plan: 'D1' }),
  ];
  const { all, failed, loadAverage1mDuringRounds } = await race(`bundled fashion-dit, ${n} samples + CFG (batch ${B}, 256 tokens)`, makers);
  const { rows, by } = summarize(all);
  table(rows);
  attentionRates(rows, B, 256, 192, 6);
  const out = Object.fromEntries(all.map((c) => [c.name, readOut(c)]));
  const crossCheck = {
    'ditfa raw vs pytorch fp32 (max rel error)': maxRelError(out['ditfa raw'], out['pytorch fp32']),
    'ditfa before vs pytorch fp32': maxRelError(out['ditfa before (onnxruntime)'], out['pytorch fp32']),
    'ditfa raw bf16 vs pytorch fp32': maxRelError(out['ditfa raw bf16'], out['pytorch fp32']),
    'pytorch bf16 vs pytorch fp32': maxRelError(out['pytorch bf16'], out['pytorch fp32']),
  };
  say(`  cross-check: ${JSON.stringify(crossCheck)}`);
  const g = (name) => by[name]?.stepMs.median;
  report.models.bundled = {
    model: `models/fashion-dit (${fashionConfig.parameters} parameters, depth 6, hidden 192, 6 heads)`,
    batch: B, tokens: 256, samples: n, loadAverage1mDuringRounds, contenders: rows, failed, crossCheck,
    planStepRatios: Object.fromEntries(plans.map((p) => [p, g(`ditfa ${p}`) / g('ditfa raw (generation)')])),
  };
}

async function large(kind) {
  const isDit = kind === 'dit';
  const blocks = Number(isDit ? (env.DITFA_E2E_DIT_BLOCKS ?? 28) : (env.DITFA_E2E_PIXART_BLOCKS ?? 4));
  const Lt = quick ? 8 : 300;
  const config = isDit
    ? quick
      ? { model_type: 'dit', input_size: 16, patch_size: 2, in_channels: 4, hidden_size: 128, depth: 2, num_heads: 4, mlp_ratio: 4, num_classes: 1000, learn_sigma: true }
      : { model_type: 'dit', input_size: 64, patch_size: 2, in_channels: 4, hidden_size: 1152, depth: blocks, num_heads: 16, mlp_ratio: 4, num_classes: 1000, learn_sigma: true }
    : quick
      ? { model_type: 'pixart', sample_size: 16, patch_size: 2, in_channels: 4, hidden_size: 128, depth: 2, num_heads: 4, mlp_ratio: 4, caption_channels: 64, interpolation_scale: 1, learn_sigma: true }
      : { model_type: 'pixart', sample_size: 128, patch_size: 2, in_channels: 4, hidden_size: 1152, depth: blocks, num_heads: 16, mlp_ratio: 4, caption_channels: 4096, interpolation_scale: 2, learn_sigma: true };
  const { weights, inputs } = prepare(kind, config, { B: 2, Lt });
  const torchConfig = isDit
    ? { input_size: config.input_size, patch_size: 2, in_channels: 4, hidden_size: config.hidden_size, depth: config.depth, num_heads: config.num_heads, mlp_ratio: 4.0, class_dropout_prob: 0.1, num_classes: 1000, learn_sigma: true }
    : { sample_size: config.sample_size, patch_size: 2, in_channels: 4, hidden_size: config.hidden_size, depth: config.depth, num_heads: config.num_heads, mlp_ratio: 4.0, caption_channels: config.caption_channels, interpolation_scale: config.interpolation_scale, learn_sigma: true };
  const base = { model: kind, weights, config, inputs, mode: 'forward', forwards: 1, threads };
  const torchCfg = { model: isDit ? 'dit' : 'pixart', config: torchConfig, weights, inputs, forwards: 1 };
  const makers = [
    ...(withBefore ? [() => ditfa('ditfa before (onnxruntime)', { ...base, ...BEFORE }, { step: 'forward' })] : []),
    ...(withOrt ? [() => ditfa('ditfa onnxruntime', { ...base, engine: 'onnxruntime' }, { step: 'forward' })] : []),
    () => ditfa('ditfa raw', { ...base, engine: 'native' }, { step: 'forward' }),
    () => ditfa('ditfa raw bf16', { ...base, engine: 'native', dense: 'bf16', compute: 'bf16' }, { step: 'forward' }),
    ...(torch ? [() => pytorch('pytorch fp32', { ...torchCfg, mode: 'fp32' }, { step: 'forward' }), () => pytorch('pytorch bf16', { ...torchCfg, mode: 'bf16' }, { step: 'forward' })] : []),
  ];
  const title = isDit ? `DiT-XL/2-512 (random weights, ${config.depth} blocks, batch 2, 1024 tokens)` : `PixArt-Σ-1024 (random weights, ${config.depth} of 28 blocks, batch 2, 4096 tokens, ${Lt} caption tokens)`;
  const { all, failed, loadAverage1mDuringRounds } = await race(title, makers);
  const { rows } = summarize(all);
  table(rows);
  const side = (isDit ? config.input_size : config.sample_size) / 2;
  attentionRates(rows, 2, side * side, config.hidden_size, config.depth);
  const out = Object.fromEntries(all.map((c) => [c.name, readOut(c)]));
  const crossCheck = {
    'ditfa raw vs pytorch fp32 (max rel error)': maxRelError(out['ditfa raw'], out['pytorch fp32']),
    'ditfa before vs pytorch fp32': maxRelError(out['ditfa before (onnxruntime)'], out['pytorch fp32']),
    'ditfa raw bf16 vs pytorch fp32': maxRelError(out['ditfa raw bf16'], out['pytorch fp32']),
    'pytorch bf16 vs pytorch fp32': maxRelError(out['pytorch bf16'], out['pytorch fp32']),
  };
  say(`  cross-check: ${JSON.stringify(crossCheck)}`);
  report.models[isDit ? 'dit-xl-2-512' : 'pixart-sigma-1024'] = { title, config, blocksOf28: config.depth, batch: 2, loadAverage1mDuringRounds, contenders: rows, failed, crossCheck };
}

async function memory() {
  // Peak RSS of a 50-sample generation (batch 100 with CFG) of the bundled model, each contender alone.
  const n = quick ? 4 : 50;
  const B = 2 * n;
  const prep = path.join(work, 'memory-inputs.safetensors');
  execFileSync(process.execPath, [path.join(here, 'e2e-prepare.mjs'), JSON.stringify({ kind: 'bundled-inputs', B, inputs: prep })], { stdio: 'inherit' });
  const steps = quick ? 2 : 5;
  const gen = { model: 'bundled', dir: fashionDir, mode: 'generate', samples: n, steps, guidance: 4, seed: 0, threads };
  const torchCfg = { model: 'dit', config: torchFashion, weights: path.join(fashionDir, 'weights.safetensors'), inputs: prep, forwards: steps };
  const makers = [
    () => ditfa('ditfa before (onnxruntime)', { ...gen, ...BEFORE }),
    () => ditfa('ditfa onnxruntime', { ...gen, engine: 'onnxruntime' }),
    () => ditfa('ditfa raw', { ...gen, engine: 'native' }),
    () => ditfa('ditfa raw bf16', { ...gen, engine: 'native', dense: 'bf16', compute: 'bf16' }),
    ...(torch ? [() => pytorch('pytorch fp32', { ...torchCfg, mode: 'fp32' }), () => pytorch('pytorch bf16', { ...torchCfg, mode: 'bf16' })] : []),
  ];
  say(`\n== memory: ${n} samples + CFG (batch ${B}), a ${steps}-step generation per contender, each alone`);
  const rows = [];
  for (const make of makers) {
    const c = make();
    await c.ready();
    c.samples.push(...(await c.run()));
    await c.quit();
    rows.push({ name: c.name, kind: c.kind, ...c.meta, peakRssBytes: c.peakRssBytes, peakRssGiB: Number((c.peakRssBytes / 2 ** 30).toFixed(3)), stepMsMedian: median(c.samples) * 1000 });
    say(`  ${c.name.padEnd(30)} peak RSS ${(c.peakRssBytes / 2 ** 30).toFixed(2)} GiB  (step ${(median(c.samples) * 1000).toFixed(0)} ms)`);
  }
  const pt = rows.find((r) => r.name === 'pytorch fp32');
  for (const r of rows) if (pt) r.rssVsPytorchFp32 = r.peakRssBytes / pt.peakRssBytes;
  report.models.memory = { samples: n, batch: B, steps, contenders: rows };
}

const dir = path.join(repoRoot, 'bench', 'results');
mkdirSync(dir, { recursive: true });
const file = path.join(dir, `e2e-${quick ? 'quick-' : ''}${report.date.replace(/[:.]/g, '-')}.json`);
const save = () => writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
try {
  // the JSON is rewritten after each model, so an interrupted run keeps what it measured
  if (wanted.includes('bundled')) await bundled(), save();
  if (wanted.includes('dit')) await large('dit'), save();
  if (wanted.includes('pixart')) await large('pixart'), save();
  if (wanted.includes('memory')) await memory(), save();
} finally {
  rmSync(work, { recursive: true, force: true });
}
report.machine.loadAverageAfter = load();

// --- the issue's goals ------------------------------------------------------------------------------
const goals = [];
const med = (m, n) => report.models[m]?.contenders.find((c) => c.name === n)?.stepMs.median;
for (const m of ['bundled', 'dit-xl-2-512', 'pixart-sigma-1024']) {
  if (!report.models[m] || !med(m, 'pytorch fp32')) continue;
  goals.push({ goal: `${m}: ditfa raw fp32 ≤ 1.0× PyTorch fp32`, value: med(m, 'ditfa raw') / med(m, 'pytorch fp32') });
  goals.push({ goal: `${m}: ditfa bf16 ≤ 1.0× PyTorch bf16`, value: med(m, 'ditfa raw bf16') / med(m, 'pytorch bf16') });
}
if (report.models.bundled && med('bundled', 'pytorch bf16')) {
  goals.push({ goal: 'bundled: D1 ≥ 1.3× faster than PyTorch bf16 raw (ratio = PyTorch bf16 ÷ D1)', value: med('bundled', 'pytorch bf16') / med('bundled', 'ditfa D1'), target: 1.3, higherIsBetter: true });
  goals.push({ goal: 'bundled: D1 bf16 ≥ 1.3× faster than PyTorch bf16 raw', value: med('bundled', 'pytorch bf16') / med('bundled', 'ditfa D1 bf16'), target: 1.3, higherIsBetter: true });
}
const mem = report.models.memory?.contenders;
if (mem?.find((r) => r.name === 'pytorch fp32')) {
  goals.push({ goal: 'memory: ditfa raw peak RSS ≤ 1.5× PyTorch fp32 (50 samples)', value: mem.find((r) => r.name === 'ditfa raw').rssVsPytorchFp32, target: 1.5 });
}
for (const g of goals) {
  g.target ??= 1.0;
  g.met = g.higherIsBetter ? g.value >= g.target : g.value <= g.target;
}
report.goals = goals;
say('\ngoals:');
for (const g of goals) say(`  ${g.met ? 'met ' : 'MISS'} ${g.goal}: ${g.value.toFixed(3)}`);

save();
say(`\nwrote ${path.relative(repoRoot, file)}`);
