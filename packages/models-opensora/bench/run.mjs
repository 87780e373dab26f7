#!/usr/bin/env node
// Per-step time of Open-Sora STDiT3-XL/2 (v1.2) with random weights at real sizes, CFG on (one video,
// batch 2): raw, then each method on every layer of one site (spatial, temporal, cross), and all three
// sites compressed together. Step 1 of a two-step plan is timed, after a full step 0 that fills the
// caches the methods read. Reported: step time, attention (the kernel calls) vs dense time, the
// attention share of each site in the raw step, and measured vs FLOP-predicted ratios. JSON goes to
// <repo>/bench/results/.
//
// Two clocks: the process's CPU time (user + system, every thread) and wall time. On a shared machine
// other processes stretch wall time by whatever they take; CPU time measures the work itself, so the
// ratios use it, single-threaded by default (onnxruntime and the kernels on one thread each) so that
// no thread spins waiting for another.
//
// Env: DITFA_BENCH_SIZES=240p,480p  DITFA_BENCH_BLOCKS=1 (STDiT3 block pairs of the 28)
//      DITFA_BENCH_REPS=1  DITFA_BENCH_THREADS=1  DITFA_BENCH_CAPTION_TOKENS=100 (valid of 300)
//      DITFA_BENCH_ARENA=1 (keep onnxruntime's CPU memory arenas)  DITFA_BENCH_QUICK=1 (tiny sizes, checks the script)
//      DITFA_BENCH_BACKEND_MODULE=<module that registers a kernel backend> (default @ditfa/kernels-cpu)
import { execSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CacheManager, CacheOverlay, createReferenceBackend, layerAttentionFlops, layerShape, rawAttentionFlops, resolveBackend, strategySet, tensor } from '@ditfa/core';
import { createDispatcher, newTally } from '@ditfa/pipeline';
import { asc } from '@ditfa/strategy-asc';
import { ast } from '@ditfa/strategy-ast';
import { wars } from '@ditfa/strategy-wars';
import { OpenSoraModel, canonicalWeights, latentSize, mlpHidden, openSoraConfig, randomCheckpoint, stdit3XL2 } from '../dist/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../..');
const env = process.env;
const quick = env.DITFA_BENCH_QUICK === '1';
const reps = Number(env.DITFA_BENCH_REPS ?? 1);
const threads = Number(env.DITFA_BENCH_THREADS ?? 1);
const blocks = Number(env.DITFA_BENCH_BLOCKS ?? 1);
const validTokens = Number(env.DITFA_BENCH_CAPTION_TOKENS ?? (quick ? 5 : 100));
const B = 2; // one video, CFG on

/** Method per site for each configuration timed at step 1 (layers of other sites run full). */
const CONFIGS = [
  { name: 'raw', methods: {} },
  { name: 'spatial full+asc', methods: { spatial: 'full+asc' } },
  { name: 'spatial wars', methods: { spatial: 'wars' } },
  { name: 'spatial wars+asc', methods: { spatial: 'wars+asc' } },
  { name: 'spatial ast', methods: { spatial: 'ast' } },
  { name: 'temporal full+asc', methods: { temporal: 'full+asc' } },
  { name: 'temporal ast', methods: { temporal: 'ast' } },
  // the temporal site has no window by default; this measures what one would buy (2 frames per side)
  { name: 'temporal wars (window 2)', methods: { temporal: 'wars' }, temporalWindow: 2 },
  { name: 'cross full+asc', methods: { cross: 'full+asc' } },
  { name: 'cross ast', methods: { cross: 'ast' } },
  { name: 'all: spatial wars+asc, temporal ast, cross ast', methods: { spatial: 'wars+asc', temporal: 'ast', cross: 'ast' } },
];
const SITES = ['spatial', 'temporal', 'cross'];

function machine() {
  let flags = [];
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = (line ?? '').split(':')[1].trim().split(/\s+/).filter((f) => /^(avx2|fma|avx512f|avx512_bf16|amx_bf16|amx_tile|avx512_vnni)$/.test(f));
  } catch {}
  let gpu = null;
  try { gpu = execSync('nvidia-smi --query-gpu=name,driver_version --format=csv,noheader', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim(); } catch {}
  const ortVersion = JSON.parse(readFileSync(path.join(here, '../node_modules/onnxruntime-node/package.json'), 'utf8')).version;
  return { cpu: os.cpus()[0]?.model, cores: os.cpus().length, flags, memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), gpu, node: process.version, onnxruntime: ortVersion, ortThreads: threads, platform: `${os.platform()} ${os.release()}`, loadAverage: os.loadavg().map((l) => +l.toFixed(2)) };
}

async function backend() {
  const mod = env.DITFA_BENCH_BACKEND_MODULE ?? '@ditfa/kernels-cpu';
  let importError = null;
  try { await import(mod); } catch (e) { importError = `${mod}: ${e.message.split('\n')[0]}`; }
  try { return { backend: await resolveBackend(), note: null }; } catch (e) {
    return { backend: createReferenceBackend(), note: `no native backend (${importError ?? e.message.split('\n')[0]}); core's TypeScript reference backend was used` };
  }
}

const siteOf = (layer) => (layer.site.endsWith('cross') ? 'cross' : layer.site);
/** CPU milliseconds of the process so far (every thread: onnxruntime's, the kernels' pool, JS). */
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

/** The backend with every kernel call's wall and CPU time added to `into.current` (the site being run). */
function timedBackend(kb, into) {
  const wrap = (name) => async (...args) => {
    const w0 = performance.now();
    const c0 = cpuMs();
    try { return await kb[name](...args); } finally {
      into.current.kernelMs += performance.now() - w0;
      into.current.kernelCpuMs += cpuMs() - c0;
    }
  };
  return { name: kb.name, capabilities: () => kb.capabilities(), attention: wrap('attention'), windowAttention: wrap('windowAttention'), fullWithResidual: wrap('fullWithResidual'), windowWithResidual: wrap('windowWithResidual') };
}
const rss = () => process.memoryUsage().rss;

/** Dense FLOPs of one layer at one step under `method` (multiply-adds × 2): its q/k/v (or cross q) and out-projection rows, plus the MLP after a cross layer. */
function denseFlops(config, layer, method) {
  const C = config.hiddenSize;
  const share = method === 'ast' ? 0 : method.endsWith('+asc') ? 0.5 : 1;
  const tokens = layer.batch * layer.tokens; // every row's query tokens
  if (siteOf(layer) === 'cross') return share * tokens * 2 * C * C * 2 + tokens * 2 * C * mlpHidden(config) * 2;
  return share * tokens * 2 * C * (3 * C + C);
}

async function benchSize(name, config, video) {
  const latent = latentSize('stdit3', video);
  process.stdout.write(`\n== ${name}: ${video.frames} frames ${video.height}×${video.width} → latent ${latent.frames}×${latent.height}×${latent.width}; STDiT3 ${config.depth} of 28 block pairs, hidden ${config.hiddenSize}\n`);
  globalThis.gc?.();
  const rss0 = rss();
  const t0 = performance.now();
  let ck = randomCheckpoint(config, { seed: 1 });
  let weightsBytes = 0;
  for (const t of ck.values()) weightsBytes += t.bytes.byteLength;
  // without onnxruntime's per-session arenas, activations are freed after every run: one block pair's
  // dozen sessions would otherwise each keep its peak (7.7 GB at 240p)
  const model = await OpenSoraModel.create(config, canonicalWeights(config, ck), { threads, weightsHash: 'sha256:random', memArena: env.DITFA_BENCH_ARENA === '1' });
  ck = null;
  globalThis.gc?.();
  const loadSeconds = (performance.now() - t0) / 1000;
  const { backend: kb, note } = await backend();
  kb.setThreads?.(threads);
  const meter = { current: null };
  const timedKb = timedBackend(kb, meter);
  const strategies = strategySet([wars(), ast(), ...asc()]);
  const { frames: T, height: H, width: W } = latent;
  const C = config.inChannels;
  const x = tensor(Float32Array.from({ length: B * C * T * H * W }, (_, i) => Math.sin(i * 0.37)), [B, C, T, H, W]);
  const L = config.modelMaxLength;
  const captions = tensor(Float32Array.from({ length: B * L * config.captionChannels }, (_, i) => 0.1 * Math.sin(i * 0.013)), [B, L, config.captionChannels]);
  const mask = Array.from({ length: B * L }, (_, i) => (i % L < validTokens ? 1 : 0));
  const cond = { captions, mask, height: video.height, width: video.width, fps: 24 };
  const layers = model.attentionLayers(T, H, W, B, true);
  const layersOf = (cfg) => (cfg.temporalWindow === undefined ? layers : model.attentionLayers(T, H, W, B, true, { temporal: cfg.temporalWindow }));
  const methodsOf = (cfg) => layers.map((l) => cfg.methods[siteOf(l)] ?? 'full');
  const viewOf = (step1) => ({ numSteps: 2, numLayers: layers.length, methodAt: (s, j) => (s === 0 ? 'full' : step1[j]) });

  /** One timed step: embed, every layer through a dispatcher, the final layer; attention and dense hook time per site. */
  async function step(index, view, cache, layers = layersOf({})) {
    const tally = newTally();
    const events = [];
    const attend = createDispatcher({ step: index, numSteps: 2, layers, plan: view, strategies, backend: timedKb, cache, cfg: { order: 'cond-first' }, tally, onEvent: (e) => events.push(e) });
    const perSite = Object.fromEntries(SITES.map((s) => [s, { kernelMs: 0, kernelCpuMs: 0, hooksMs: 0, hooksCpuMs: 0 }]));
    const timed = (fn, site) => async (...a) => {
      const h0 = performance.now();
      const c0 = cpuMs();
      try { return await fn(...a); } finally {
        site.hooksMs += performance.now() - h0;
        site.hooksCpuMs += cpuMs() - c0;
      }
    };
    let gcCpuMs = 0;
    let gcMs = 0;
    const wrapped = async (i, hooks) => {
      // onnxruntime's outputs are JS-owned buffers of up to ~1 GB at 480p: collect the last layer's before
      // the next (the collection's own time is not counted)
      const g0 = performance.now();
      const gc0 = cpuMs();
      globalThis.gc?.();
      gcCpuMs += cpuMs() - gc0;
      gcMs += performance.now() - g0;
      const site = perSite[siteOf(layers[i])];
      meter.current = site;
      return attend(i, { ...hooks, qkv: timed(hooks.qkv, site), project: timed(hooks.project, site) });
    };
    globalThis.gc?.();
    const c0 = cpuMs();
    const s0 = performance.now();
    const state = await model.embed(x, index === 0 ? 500 : 400, cond);
    const end = await model.runLayers(state, 0, layers.length, wrapped);
    await model.output(end);
    const totalMs = performance.now() - s0 - gcMs;
    const totalCpuMs = cpuMs() - c0 - gcCpuMs;
    if (events.length) throw new Error(`unexpected strategy events in the benchmark: ${JSON.stringify(events.slice(0, 3))}`);
    const attentionCpuMs = SITES.reduce((a, s) => a + perSite[s].kernelCpuMs, 0);
    const attentionMs = SITES.reduce((a, s) => a + perSite[s].kernelMs, 0);
    return { totalCpuMs, attentionCpuMs, denseCpuMs: totalCpuMs - attentionCpuMs, totalMs, attentionMs, denseMs: totalMs - attentionMs, strategyMs: tally.attentionMs, ortMs: end.ortMs, perSite };
  }

  // step 0 (full) twice: once before steps reading the residual and AST's outputs of the temporal and
  // cross layers, once before spatial AST; each configuration's step 1 reads them through an overlay
  // Configurations grouped by the step 0 they read; each group's step-0 caches live only while it runs.
  const windowed = CONFIGS.find((c) => c.temporalWindow !== undefined);
  const groups = [
    { step0: methodsOf({ methods: { spatial: 'wars', temporal: 'ast', cross: 'ast' } }), layers: layers, configs: CONFIGS.filter((c) => c.temporalWindow === undefined && c.methods.spatial !== 'ast') },
    { step0: methodsOf({ methods: { spatial: 'ast' } }), layers: layers, configs: CONFIGS.filter((c) => c.methods.spatial === 'ast') },
    { step0: methodsOf(windowed), layers: layersOf(windowed), configs: [windowed] },
  ];
  process.stdout.write(`loaded in ${loadSeconds.toFixed(1)} s (weights ${(weightsBytes / 2 ** 30).toFixed(2)} GiB, RSS +${((rss() - rss0) / 2 ** 30).toFixed(2)} GiB); kernels: ${kb.name}${note ? ` (${note})` : ''}\n`);
  const samples = new Map(CONFIGS.map((c) => [c.name, []]));
  const cacheBytes = [];
  let peakRss = 0;
  for (let r = 0; r < reps; r++) {
    for (const group of groups) {
      const base = new CacheManager();
      const s0 = await step(0, viewOf(group.step0), base, group.layers);
      if (r === 0) cacheBytes.push({ configs: group.configs.map((c) => c.name), bytes: base.stats().peakBytes });
      process.stdout.write(`rep ${r + 1} step 0 for ${group.configs.length} configuration(s): ${s0.totalCpuMs.toFixed(0)} ms CPU\n`);
      for (const cfg of group.configs) {
      const m = methodsOf(cfg);
      const s = await step(1, viewOf(m), new CacheOverlay(base), layersOf(cfg));
      peakRss = Math.max(peakRss, rss());
      samples.get(cfg.name).push(s);
      process.stdout.write(`rep ${r + 1} ${cfg.name.padEnd(46)} step ${s.totalCpuMs.toFixed(0).padStart(7)} ms CPU (${s.totalMs.toFixed(0)} wall)  attention ${s.attentionCpuMs.toFixed(0).padStart(6)} ms CPU\n`);
      }
    }
  }
  const results = CONFIGS.map((cfg) => {
    const best = [...samples.get(cfg.name)].sort((a, b) => a.totalCpuMs - b.totalCpuMs)[0];
    const m = methodsOf(cfg);
    const view = viewOf(m);
    let attentionFlops = 0;
    let dense = 0;
    layersOf(cfg).forEach((l, j) => {
      attentionFlops += layerAttentionFlops(strategies.get(m[j]), layerShape(l), { step: 1, numSteps: 2, layer: j, plan: view, strategies });
      dense += denseFlops(config, l, m[j]);
    });
    return { name: cfg.name, methods: cfg.methods, ...best, samples: samples.get(cfg.name), attentionFlops, denseFlops: dense };
  });
  await model.dispose();
  const raw = results[0];
  const rawAttention = layers.reduce((a, l) => a + rawAttentionFlops(layerShape(l)), 0);
  const siteFlops = Object.fromEntries(SITES.map((s) => [s, layers.filter((l) => siteOf(l) === s).reduce((a, l) => a + rawAttentionFlops(layerShape(l)), 0)]));
  for (const r of results) {
    const predAttn = r.attentionFlops / raw.attentionFlops;
    const predDense = r.denseFlops / raw.denseFlops;
    r.ratios = {
      attention: { measured: r.attentionCpuMs / raw.attentionCpuMs, predicted: predAttn },
      dense: { measured: r.denseCpuMs / raw.denseCpuMs, predicted: predDense },
      step: { measured: r.totalCpuMs / raw.totalCpuMs, predicted: (raw.attentionCpuMs * predAttn + raw.denseCpuMs * predDense) / raw.totalCpuMs },
      stepWall: { measured: r.totalMs / raw.totalMs },
    };
  }
  process.stdout.write(`raw step ${raw.totalCpuMs.toFixed(0)} ms CPU (${raw.totalMs.toFixed(0)} ms wall): attention ${(100 * raw.attentionCpuMs / raw.totalCpuMs).toFixed(1)} % (${SITES.map((s) => `${s} ${(100 * raw.perSite[s].kernelCpuMs / raw.totalCpuMs).toFixed(1)} %`).join(', ')})\n`);
  process.stdout.write('CPU-time ratios vs raw (measured / predicted from FLOPs):\n');
  for (const r of results) {
    const f = (q) => `${q.measured.toFixed(3)} / ${q.predicted.toFixed(3)}`;
    if (r.attentionCpuMs === undefined) continue;
    process.stdout.write(`${r.name.padEnd(46)} attention ${f(r.ratios.attention).padEnd(16)} dense ${f(r.ratios.dense).padEnd(16)} step ${f(r.ratios.step)}\n`);
  }
  return {
    name, video, latent, tokens: { frames: layers[2].tokens, perFrame: layers[0].tokens, captionKeys: L, validCaptionTokens: validTokens }, batch: B,
    blocks: config.depth, config, layers: layers.map((l) => ({ id: l.id, batch: l.batch, tokens: l.tokens, kvTokens: l.kvTokens ?? null, window: l.window })),
    attentionFlops: { raw: rawAttention, perSite: siteFlops, note: 'cross-attention counted at the padded caption length (an upper bound; kernels attend to the valid tokens only)' },
    backend: kb.name, backendCapabilities: kb.capabilities(), backendNote: note, reps, loadSeconds,
    memory: { weightsBytes, peakRssBytes: peakRss, step0CacheBytes: cacheBytes },
    results,
  };
}

const info = machine();
process.stdout.write(`machine: ${JSON.stringify(info)}\n`);
const out = { date: new Date().toISOString(), machine: info, quick, blocks, ortMemArena: env.DITFA_BENCH_ARENA === '1', note: `${blocks} of the 28 STDiT3-XL/2 block pairs (per-step ratios do not depend on the depth; absolute times scale with it)`, sizes: [] };
const want = (env.DITFA_BENCH_SIZES ?? '240p,480p').split(',');
const VIDEOS = {
  // Open-Sora v1.2's 240p and 480p at 9:16 (opensora/datasets/aspect.py), 51 frames (2 s at 24 fps)
  '240p': { frames: 51, height: 240, width: 426 },
  '480p': { frames: 51, height: 480, width: 854 },
};
for (const size of want) {
  if (quick) {
    const config = openSoraConfig({ version: 'stdit3', inChannels: 4, patchSize: [1, 2, 2], hiddenSize: 96, depth: 1, numHeads: 4, mlpRatio: 4, captionChannels: 64, modelMaxLength: 16, inputSqSize: 512, qkNorm: true, predSigma: true });
    out.sizes.push(await benchSize(`quick (${size})`, config, { frames: 17, height: 48, width: 64 }));
    break;
  }
  const video = VIDEOS[size];
  if (!video) throw new Error(`unknown size ${size}: expected one of ${Object.keys(VIDEOS).join(', ')}`);
  out.sizes.push(await benchSize(`stdit3-xl-2 ${size}`, stdit3XL2({ depth: blocks }), video));
}
const dir = path.join(repoRoot, 'bench/results');
mkdirSync(dir, { recursive: true });
const file = path.join(dir, `models-opensora-${quick ? 'quick-' : ''}${out.date.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
process.stdout.write(`\nwrote ${path.relative(repoRoot, file)}\n`);
