// pnpm bench: this package's kernels against onnxruntime-node's com.microsoft.MultiHeadAttention and
// PyTorch's scaled_dot_product_attention (a python subprocess, when torch is installed), in one run, on
// the same inputs, fp32 and bf16, plus window attention at w = L/8 and the fused full + residual call,
// at the shapes the models run: the bundled fashion-dit's step (B=40 = 20 samples with CFG, L=256, H=6,
// D=32), DiT-XL/2-512's (B=2, L=1024, H=16, D=72) and PixArt-Σ-1024's (B=2, L=4096, H=16, D=72).
// Prints GFLOP/s, the ratios and the machine; writes JSON to bench/results/kernels-cpu-attention.json
// at the repository root.
//
// Options: --quick (the first two shapes, fewer rounds), --threads N, --lengths 1024,4096 (B=2, H=16,
// D=72 at those lengths instead of the model shapes).
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { attentionFlops, windowFlops } from '@ditfa/core';
import { cpuBackendStatus, createCpuBackend } from '../dist/base.js';
import { loadNative } from '../dist/binding.js';
import { multiHeadAttentionModel } from './onnx-mha.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..', '..');
const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const quick = argv.includes('--quick');
const MODEL_SHAPES = [
  { name: 'fashion-dit step (20 samples + CFG)', B: 40, L: 256, H: 6, D: 32 },
  { name: 'DiT-XL/2-512', B: 2, L: 1024, H: 16, D: 72 },
  { name: 'PixArt-Σ-1024', B: 2, L: 4096, H: 16, D: 72 },
];
const shapes = option('lengths')
  ? option('lengths').split(',').map((L) => ({ name: `L=${L}`, B: 2, L: Number(L), H: 16, D: 72 }))
  : quick
    ? MODEL_SHAPES.slice(0, 2)
    : MODEL_SHAPES;

const status = cpuBackendStatus();
if (!status.available) {
  process.stderr.write(`The native CPU backend is unavailable:\n  ${status.errors.join('\n  ')}\n${status.remedy}\n`);
  process.exit(1);
}
const backend = createCpuBackend(option('threads') ? { threads: Number(option('threads')) } : {});
const native = loadNative().addon;
const threads = native.threadCount();

// --- the machine ---------------------------------------------------------------------------------
function cpuModel() {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
    if (line) return line.split(':')[1].trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}
function cpuFlags() {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    const wanted = /^(avx2|fma|avx512\w*|amx\w*|avx_vnni)$/;
    return line ? line.split(':')[1].trim().split(/\s+/).filter((f) => wanted.test(f)) : [];
  } catch {
    return [];
  }
}
const fmaPeak = native.fmaPeak(1500);
const machine = {
  cpu: cpuModel(),
  logicalCpus: cpus().length,
  flags: cpuFlags(),
  threads,
  isa: status.activeIsa,
  detectedFeatures: status.features,
  computeDtypes: status.computeDtypes,
  fmaPeakGflops: Number(fmaPeak.toFixed(1)),
  node: process.version,
};
const say = (line) => process.stdout.write(`${line}\n`);
say(`machine: ${machine.cpu}, ${machine.logicalCpus} logical CPUs, ${threads} threads, path ${machine.isa}`);
say(`flags: ${machine.flags.join(' ')}`);
say(`measured fp32 FMA peak: ${machine.fmaPeakGflops} GFLOP/s (${threads} threads)`);

// --- inputs and timing ---------------------------------------------------------------------------
function random(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

function maxDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

let ort = null;
try {
  ort = await import('onnxruntime-node');
} catch (error) {
  say(`onnxruntime-node: not available (${error.message.split('\n')[0]}), skipped`);
}

function torchAvailable() {
  const r = spawnSync('python3', ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}
const torchVersion = torchAvailable();
if (!torchVersion) say('PyTorch: not installed (pip install torch), skipped');

const results = [];
const work = mkdtempSync(join(tmpdir(), 'ditfa-bench-'));
try {
  for (const { name: shapeName, B, L, H, D } of shapes) {
    const scale = 1 / Math.sqrt(D);
    const n = B * L * H * D;
    const shape = [B, L, H, D];
    const q = { data: random(n, 1 + L), shape };
    const k = { data: random(n, 2 + L), shape };
    const v = { data: random(n, 3 + L), shape };
    const flops = attentionFlops(B, L, L, H * D);
    const reps = quick ? 3 : flops >= 1e11 ? 5 : 9;
    const window = { kind: '1d', size: Math.floor(L / 8) };
    const wFlops = windowFlops(B, L, H * D, window);
    const row = { shape: shapeName, L, B, H, D, flops, window: window.size, windowFlops: wFlops };
    say(`\n${shapeName}: L=${L} (B=${B}, H=${H}, D=${D}; ${(flops / 1e9).toFixed(1)} GFLOP per full call, ${reps} rounds, each contender's fastest round)`);

    // Every contender's call, run round-robin: one call each per round, so background load on a shared
    // machine hits them alike. Each gets a warm-up call first.
    const out = new Float32Array(n);
    const bfOut = new Float32Array(n);
    const residualOut = { data: new Float32Array(n), shape };
    const hasBf16 = status.computeDtypes.includes('bf16');
    const contenders = {
      oursFp32: () => backend.attention(q, k, v, { out: { data: out, shape } }),
      ...(hasBf16 ? { oursBf16: () => backend.attention(q, k, v, { compute: 'bf16', out: { data: bfOut, shape } }) } : {}),
      oursWindow: () => backend.windowAttention(q, k, v, window),
      oursFused: () => backend.fullWithResidual(q, k, v, window, { out: { data: new Float32Array(n), shape }, residualOut }),
      oursWindowWithResidual: () => backend.windowWithResidual(q, k, v, window, residualOut),
    };

    let session = null;
    let ortLast = null;
    if (ort) {
      session = await ort.InferenceSession.create(multiHeadAttentionModel({ B, L, H, D, scale }), {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
      });
      const t = (data) => new ort.Tensor('float32', data, [B, L, H * D]);
      const feeds = { query: t(q.data), key: t(k.data), value: t(v.data) };
      contenders.ortFp32 = async () => {
        ortLast = await session.run(feeds);
      };
    }

    let torchProc = null;
    let torchInfo = null;
    const torchOut = { fp32: join(work, 'out-fp32.bin'), bf16: join(work, 'out-bf16.bin') };
    if (torchVersion) {
      for (const [name, t] of [['q', q], ['k', k], ['v', v]]) writeFileSync(join(work, `${name}.bin`), t.data);
      const cfg = { B, L, H, D, scale, threads, q: join(work, 'q.bin'), k: join(work, 'k.bin'), v: join(work, 'v.bin'), out: torchOut };
      writeFileSync(join(work, 'cfg.json'), JSON.stringify(cfg));
      torchProc = spawn('python3', [join(here, 'torch_sdpa.py'), join(work, 'cfg.json')], { stdio: ['pipe', 'pipe', 'inherit'] });
      const lines = createInterface({ input: torchProc.stdout })[Symbol.asyncIterator]();
      const ask = async (cmd) => {
        torchProc.stdin.write(`${cmd}\n`);
        const { value, done } = await lines.next();
        if (done) throw new Error('the PyTorch subprocess exited');
        return Number(value);
      };
      const ready = (await lines.next()).value ?? '';
      const [, version, torchThreads] = ready.split(' ');
      torchInfo = { version, threads: Number(torchThreads) };
      // The subprocess measures its own call; the bench adds nothing around it.
      contenders.torchFp32 = { remote: () => ask('fp32') };
      contenders.torchBf16 = { remote: () => ask('bf16') };
    }

    const times = Object.fromEntries(Object.keys(contenders).map((key) => [key, []]));
    const once = async (fn) => {
      if (typeof fn === 'object') return fn.remote();
      const t0 = performance.now();
      await fn();
      return (performance.now() - t0) / 1000;
    };
    for (const fn of Object.values(contenders)) await once(fn); // warm-up
    // The FMA peak is measured in every round too: on a shared machine it tells how much of the CPU the
    // contenders actually had.
    const peaks = [];
    for (let round = 0; round < reps; round++) {
      peaks.push(native.fmaPeak(300));
      for (const [key, fn] of Object.entries(contenders)) times[key].push(await once(fn));
    }
    row.fmaPeakGflopsPerRound = peaks.map((x) => Number(x.toFixed(1)));
    const stat = (key) => {
      const t = [...(times[key] ?? [])].sort((x, y) => x - y);
      return t.length ? { min: t[0], median: t[Math.floor(t.length / 2)] } : null;
    };
    const oursOut = out.slice();
    let torchResult = null;
    if (torchProc) {
      torchProc.stdin.write('quit\n');
      await new Promise((done) => torchProc.on('close', done));
      const read = (p) => new Float32Array(readFileSync(p).buffer.slice(0));
      torchResult = { ...torchInfo, fp32: stat('torchFp32'), bf16: stat('torchBf16'), maxAbsDiffVsOurs: { fp32: maxDiff(read(torchOut.fp32), oursOut) } };
    }
    let ortResult = null;
    if (session) {
      ortResult = { fp32: stat('ortFp32'), maxAbsDiffVsOurs: maxDiff(ortLast.output.data, oursOut) };
      await session.release();
    }
    // Timings compared below are each contender's fastest round (the least disturbed by other load);
    // medians are kept in the JSON too.
    const ours = {
      fp32: stat('oursFp32'),
      bf16: stat('oursBf16'),
      window: stat('oursWindow'),
      fused: stat('oursFused'),
      windowWithResidual: stat('oursWindowWithResidual'),
      bf16MaxAbsDiffVsFp32: hasBf16 ? maxDiff(bfOut, oursOut) : null,
    };
    for (const x of [ours.fp32, ours.bf16, ours.window, ours.fused, ours.windowWithResidual, ortResult?.fp32, torchResult?.fp32, torchResult?.bf16]) {
      if (x) x.best = x.min;
    }

    const gf = (seconds, f = flops) => (seconds ? f / seconds / 1e9 : null);
    const best = Math.max(gf(ortResult?.fp32.best) ?? 0, gf(torchResult?.fp32.best) ?? 0);
    const idealBandRatio = flops / wFlops;
    row.gflops = {
      oursFp32: gf(ours.fp32.best),
      oursBf16: gf(ours.bf16?.best),
      ortFp32: gf(ortResult?.fp32.best),
      torchFp32: gf(torchResult?.fp32.best),
      torchBf16: gf(torchResult?.bf16.best),
      oursWindow: gf(ours.window.best, wFlops),
      fmaPeakBestRound: Math.max(...peaks),
    };
    row.oursFp32OfPeak = row.gflops.oursFp32 / row.gflops.fmaPeakBestRound;
    row.seconds = Object.fromEntries(Object.keys(times).map((key) => [key, stat(key)]));
    row.roundsPerContender = reps;
    row.ratios = {
      fp32VsBestOfOrtTorch: best ? gf(ours.fp32.best) / best : null,
      fp32VsOrt: ortResult ? ortResult.fp32.best / ours.fp32.best : null,
      fp32VsTorch: torchResult ? torchResult.fp32.best / ours.fp32.best : null,
      bf16VsTorchBf16: ours.bf16 && torchResult ? torchResult.bf16.best / ours.bf16.best : null,
      windowSpeedup: ours.fp32.best / ours.window.best,
      idealBandRatio,
      windowVsIdeal: ours.fp32.best / ours.window.best / idealBandRatio,
      fusedOverFull: ours.fused.best / ours.fp32.best,
      windowWithResidualOverWindow: ours.windowWithResidual.best / ours.window.best,
    };
    row.targets = {
      fp32AtLeast1_1xBest: row.ratios.fp32VsBestOfOrtTorch === null ? null : row.ratios.fp32VsBestOfOrtTorch >= 1.1,
      bf16AtLeast1_1xTorch: row.ratios.bf16VsTorchBf16 === null ? null : row.ratios.bf16VsTorchBf16 >= 1.1,
      windowAtLeast0_85xIdeal: row.ratios.windowVsIdeal >= 0.85,
      fusedAtMost1_15xFull: row.ratios.fusedOverFull <= 1.15,
    };
    row.crossCheck = {
      ortMaxAbsDiff: ortResult?.maxAbsDiffVsOurs ?? null,
      torchFp32MaxAbsDiff: torchResult?.maxAbsDiffVsOurs.fp32 ?? null,
      oursBf16MaxAbsDiffVsFp32: ours.bf16MaxAbsDiffVsFp32 ?? null,
    };
    row.torch = torchResult ? { version: torchResult.version, threads: torchResult.threads } : null;
    row.ort = ortResult ? { version: ort.env?.versions?.common ?? 'unknown', threads } : null;
    results.push(row);

    const f1 = (x) => (x === null || x === undefined ? '   n/a' : x.toFixed(1).padStart(6));
    const f2 = (x) => (x === null || x === undefined ? 'n/a' : `${x.toFixed(2)}x`);
    say(`  fp32 full   ours ${f1(row.gflops.oursFp32)}  ORT ${f1(row.gflops.ortFp32)}  PyTorch ${f1(row.gflops.torchFp32)} GFLOP/s  -> ours/best ${f2(row.ratios.fp32VsBestOfOrtTorch)}`);
    say(`  (ours fp32 = ${(row.oursFp32OfPeak * 100).toFixed(0)}% of the best round's FMA peak ${row.gflops.fmaPeakBestRound.toFixed(1)} GFLOP/s)`);
    say(`  bf16 full   ours ${f1(row.gflops.oursBf16)}  PyTorch ${f1(row.gflops.torchBf16)} GFLOP/s  -> ours/PyTorch ${f2(row.ratios.bf16VsTorchBf16)}`);
    say(
      `  window w=${window.size}: ${(ours.window.best * 1000).toFixed(1)} ms (${f1(row.gflops.oursWindow)} GFLOP/s), speed-up ${f2(row.ratios.windowSpeedup)} of ideal ${f2(idealBandRatio)} -> ${(row.ratios.windowVsIdeal * 100).toFixed(0)}% of ideal`,
    );
    say(`  fused full+residual: ${(ours.fused.best * 1000).toFixed(1)} ms = ${f2(row.ratios.fusedOverFull)} of full (${(ours.fp32.best * 1000).toFixed(1)} ms)`);
    say(`  window+residual: ${(ours.windowWithResidual.best * 1000).toFixed(1)} ms = ${f2(row.ratios.windowWithResidualOverWindow)} of window`);
    say(`  cross-check max |diff| vs ours: ORT ${row.crossCheck.ortMaxAbsDiff?.toExponential(1) ?? 'n/a'}, PyTorch fp32 ${row.crossCheck.torchFp32MaxAbsDiff?.toExponential(1) ?? 'n/a'}`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const report = {
  benchmark: 'kernels-cpu-attention',
  date: new Date().toISOString(),
  machine,
  contenders: {
    ours: '@ditfa/kernels-cpu',
    ort: ort ? 'onnxruntime-node com.microsoft.MultiHeadAttention (fp32; no bf16 CPU kernel)' : 'not available',
    torch: torchVersion ? `torch ${torchVersion} F.scaled_dot_product_attention` : 'not installed',
  },
  notes: [
    'GFLOP/s count 4·B·L²·H·D per full call and 4·B·pairs·H·D per window call (exact band, clipped edges).',
    'Contenders run round-robin (one call each per round, after a warm-up call each) so background load hits them alike; ratios use each contender\'s fastest round, medians are in `seconds`.',
    'Ours bf16 includes the fp32→bf16 conversion of its inputs; PyTorch bf16 is timed on bf16 tensors.',
  ],
  results,
};
const outDir = join(repoRoot, 'bench', 'results');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'kernels-cpu-attention.json'), `${JSON.stringify(report, null, 2)}\n`);
say(`\nwrote ${join(outDir, 'kernels-cpu-attention.json')}`);
