import {
  CacheManager,
  InvalidArgumentError,
  StrategyNotFoundError,
  cfgHalves,
  createReferenceBackend,
  defineLayers,
  executeAttention,
  expectInteger,
  sliceBatch,
  strategyContext,
  tensor,
  type AttentionLayer,
  type AttentionStrategy,
  type CacheStats,
  type CfgLayout,
  type CfgOrder,
  type ComputeDtype,
  type KernelBackend,
  type PlanView,
  type QkvInputs,
  type QkvNeed,
  type RowSelection,
  type StrategyContext,
  type StrategyEvent,
  type StrategyLookup,
  type StrategyResult,
  type Tensor,
  type WindowSpec,
} from '@ditfa/core';
import { linear, randomTensor, type ToyModel } from './toy-model.js';

/**
 * A test driver that plays the model adapter's side of the strategy contract (see `@ditfa/core`'s
 * `strategy.ts`) on a {@link ToyModel}, through core's `executeAttention` like the real adapters: per
 * step and attention layer (one `self` layer per block, layer index = block; contexts from core's
 * `strategyContext`) q/k/v are projected only for the rows the strategy needs (none, the conditional
 * half, or all), `'attention'` results are out-projected (once, on the conditional rows under ASC, then copied
 * to both halves), `'projected'` results pass through, and every strategy observes each computed
 * out-projection. The driver counts the dense work so tests can check what a strategy requested.
 *
 * It is not the product pipeline: no sampler, no real model, no planner.
 */

export interface ToyRunOptions {
  readonly model: ToyModel;
  /** One seed per sample: its initial latent and its condition. */
  readonly samples: readonly number[];
  /** CFG order of the batch, or `null` for a batch without CFG (one row per sample). */
  readonly cfg: CfgOrder | null;
  /** `methods[step][layer]` (one layer per block), or a plan view. */
  readonly plan: PlanView | readonly (readonly string[])[];
  readonly strategies: StrategyLookup;
  /** Window of every layer (`null`: no window method applies). */
  readonly window: WindowSpec | null;
  readonly backend?: KernelBackend;
  readonly cache?: CacheManager;
  readonly compute?: ComputeDtype;
  /** Guidance scale (default 4). */
  readonly guidance?: number;
  /** Keep q/k/v and outputs of every (step, block) in the trace (default true). */
  readonly keepTensors?: boolean;
  /** Called after each (step, block) with its trace and the cache manager (to inspect the caches). */
  readonly afterBlock?: (trace: BlockTrace, cache: CacheManager) => void;
}

/** What happened at one (step, layer). */
export interface BlockTrace {
  readonly step: number;
  readonly block: number;
  /** Layer index (equal to the block: one self-attention layer per block). */
  readonly layer: number;
  readonly method: string;
  /** The rows whose q/k/v were computed (`'none'` when none were; without CFG a `'conditional'` need computes `'all'`). */
  readonly need: QkvNeed;
  /** Batch rows whose q/k/v were projected (0, B/2 or B). */
  readonly qkvRows: number;
  /** Batch rows that went through the out-projection (0, B/2 or B). */
  readonly outProjectionRows: number;
  readonly result: { readonly kind: StrategyResult['kind']; readonly rows: 'all' | 'conditional' | null };
  /** The q/k/v handed to the strategy (`null` when it needed none or `keepTensors` is false). */
  readonly inputs: QkvInputs | null;
  /** The strategy's output as returned: attention `[rows, L, H, D]` or projected `[B, L, C]`. */
  readonly output: Tensor | null;
  /** The block's attention branch output after projection and CFG copy, `[B, L, C]`. */
  readonly projected: Tensor | null;
}

export interface ToyRunResult {
  /** Final latents, one `[L, C]` per sample, `[n, L, C]`. */
  readonly latents: Tensor;
  readonly trace: readonly BlockTrace[];
  readonly events: readonly StrategyEvent[];
  readonly cache: CacheStats;
  /** Totals over the run. */
  readonly counts: { readonly qkvRows: number; readonly outProjectionRows: number; readonly outProjectionCalls: number };
  /** Batch rows (2n with CFG, n without). */
  readonly batch: number;
  /** The model's attention layers for this batch (`<block>.self`). */
  readonly layers: readonly AttentionLayer[];
}

function planView(plan: ToyRunOptions['plan'], layers: number): PlanView {
  if (!Array.isArray(plan)) return plan as PlanView;
  const methods = plan as readonly (readonly string[])[];
  methods.forEach((row, s) => {
    if (row.length !== layers) throw new InvalidArgumentError(`Expected ${layers} methods at plan step ${s} but received ${row.length}`);
  });
  return { numSteps: methods.length, numLayers: layers, methodAt: (step, layer) => methods[step]?.[layer] };
}

/** The toy model's layers: one `self` attention layer per block, all of the same shape and window. */
export function toyLayers(
  blocks: number,
  shape: { readonly batch: number; readonly tokens: number; readonly heads: number; readonly headDim: number },
  cfg: boolean,
  window: WindowSpec | null,
): readonly AttentionLayer[] {
  return defineLayers(Array.from({ length: blocks }, (_, block) => ({ block, site: 'self', ...shape, cfg, window })));
}

/** Rows of `x` (`[B, L, C]`) laid out as a CFG batch: per-sample rows in the conditional half, null rows in the other. */
function condition(model: ToyModel, samples: readonly number[], cfg: CfgLayout | null): Float32Array[] {
  const conds = samples.map((seed) => randomTensor([model.channels], seed * 7919 + 17, 0.5).data);
  if (!cfg) return conds;
  const nulls = samples.map(() => model.nullCondition);
  return cfg.order === 'cond-first' ? [...conds, ...nulls] : [...nulls, ...conds];
}

function timeEmbedding(step: number, C: number): Float32Array {
  const e = new Float32Array(C);
  for (let c = 0; c < C; c++) e[c] = 0.3 * Math.sin((step + 1) * (c + 1) * 0.37);
  return e;
}

/** Runs a toy generation of `plan.numSteps` steps. */
export async function runToyPipeline(options: ToyRunOptions): Promise<ToyRunResult> {
  const { model, samples, strategies } = options;
  const { tokens: L, heads: H, headDim: D } = model.config;
  const C = model.channels;
  const n = samples.length;
  expectInteger('samples.length', n, 1);
  const cfg: CfgLayout | null = options.cfg ? { order: options.cfg } : null;
  const B = cfg ? 2 * n : n;
  const layers = toyLayers(model.config.blocks, { batch: B, tokens: L, heads: H, headDim: D }, cfg !== null, options.window);
  const plan = planView(options.plan, layers.length);
  const backend = options.backend ?? createReferenceBackend();
  const cache = options.cache ?? new CacheManager();
  const guidance = options.guidance ?? 4;
  const keep = options.keepTensors ?? true;
  const events: StrategyEvent[] = [];
  const trace: BlockTrace[] = [];
  const counts = { qkvRows: 0, outProjectionRows: 0, outProjectionCalls: 0 };
  const conds = condition(model, samples, cfg);
  const rowsOf = (t: Float32Array, rows: number): Tensor => tensor(t, [rows, L, H, D]);

  // latents[i]: [L, C] per sample
  const latents = samples.map((seed) => randomTensor([L, C], seed * 104729 + 3).data);
  const sampleOfRow = (r: number): number => (cfg ? r % n : r);

  for (let step = 0; step < plan.numSteps; step++) {
    const temb = timeEmbedding(step, C);
    const x = new Float32Array(B * L * C);
    for (let r = 0; r < B; r++) {
      const lat = latents[sampleOfRow(r)]!;
      const cond = conds[r]!;
      for (let l = 0; l < L; l++) for (let c = 0; c < C; c++) x[(r * L + l) * C + c] = lat[l * C + c]! + cond[c]! + temb[c]!;
    }
    for (const layer of layers) {
      const block = layer.block;
      const w = model.blocks[block]!;
      const method = plan.methodAt(step, layer.index);
      const strategy: AttentionStrategy | undefined = method === undefined ? undefined : strategies.get(method);
      if (!strategy || method === undefined) {
        throw new StrategyNotFoundError(`Expected a strategy for method ${JSON.stringify(method)} at step ${step}, layer ${layer.id}; known: ${strategies.names().join(', ')}`);
      }
      const ctx = strategyContext({
        step,
        numSteps: plan.numSteps,
        layer,
        method,
        cfg,
        backend,
        plan,
        cache: cache.scope(layer.index),
        compute: options.compute ?? 'fp32',
        strategies,
        report: (e) => void events.push(e),
      });
      const xt = tensor(x, [B, L, C]);
      let inputs: QkvInputs | null = null;
      let attention: { output: Tensor; rows: RowSelection } | null = null;
      const projected = await executeAttention(strategy, ctx, {
        qkv: async (rows) => {
          const src = rows === 'all' ? xt : cfgHalves(xt, cfg!).cond;
          const R = src.shape[0]!;
          inputs = { rows, q: rowsOf(linear(src.data, w.wq, C), R), k: rowsOf(linear(src.data, w.wk, C), R), v: rowsOf(linear(src.data, w.wv, C), R) };
          return inputs;
        },
        project: async (output, rows) => {
          attention = { output, rows };
          counts.outProjectionCalls += 1;
          return tensor(linear(output.data, w.wo, C), [output.shape[0]!, L, C]);
        },
      });
      const used = inputs as QkvInputs | null;
      const attended = attention as { output: Tensor; rows: RowSelection } | null;
      const qkvRows = used ? used.q.shape[0]! : 0;
      const outProjectionRows = attended ? attended.output.shape[0]! : 0;
      counts.qkvRows += qkvRows;
      counts.outProjectionRows += outProjectionRows;
      const entry: BlockTrace = {
        step,
        block,
        layer: layer.index,
        method,
        need: used ? used.rows : 'none',
        qkvRows,
        outProjectionRows,
        result: attended ? { kind: 'attention', rows: attended.rows } : { kind: 'projected', rows: null },
        inputs: keep ? used : null,
        output: keep ? (attended ? attended.output : projected) : null,
        projected: keep ? projected : null,
      };
      trace.push(entry);
      options.afterBlock?.(entry, cache);
      // residual stream: attention branch, then a small tanh MLP
      for (let i = 0; i < x.length; i++) x[i]! += 0.5 * projected.data[i]!;
      const m = linear(x, w.wm, C);
      for (let i = 0; i < x.length; i++) x[i]! += 0.2 * Math.tanh(m[i]!);
    }
    // guided update of each sample's latent from the model output x
    const eps = tensor(x, [B, L, C]);
    const halves = cfg ? cfgHalves(eps, cfg) : null;
    for (let i = 0; i < n; i++) {
      const lat = latents[i]!;
      const ec = (halves ? sliceBatch(halves.cond, i, i + 1) : sliceBatch(eps, i, i + 1)).data;
      const eu = halves ? sliceBatch(halves.uncond, i, i + 1).data : ec;
      for (let j = 0; j < lat.length; j++) lat[j]! -= (eu[j]! + guidance * (ec[j]! - eu[j]!)) / (plan.numSteps + 1);
    }
  }
  const out = new Float32Array(n * L * C);
  latents.forEach((lat, i) => out.set(lat, i * L * C));
  return { latents: tensor(out, [n, L, C]), trace, events, cache: cache.stats(), counts, batch: B, layers };
}

/** Options of {@link toyContext}. */
export interface ToyContextOptions {
  readonly methods: readonly (string | undefined)[];
  readonly step: number;
  readonly strategies: StrategyLookup;
  /** The layer's window (`null`: no window method applies). */
  readonly window: WindowSpec | null;
  /** q/k/v shape `[B, L, H, D]` of the layer (both CFG halves in `B`). */
  readonly shape: readonly number[];
  readonly cache?: CacheManager;
  /** Block of the layer; the layer index equals it (one `self` layer per block). Default 0. */
  readonly block?: number;
  readonly cfg?: CfgOrder | null;
  readonly backend?: KernelBackend;
  readonly events?: StrategyEvent[];
}

/**
 * A strategy context (built by core's `strategyContext`) for one self-attention layer whose plan is
 * `methods[step]`, for calling strategies directly. Other layers' methods are undecided.
 */
export function toyContext(options: ToyContextOptions): StrategyContext {
  const { methods, step } = options;
  const block = options.block ?? 0;
  const method = methods[step];
  if (method === undefined) throw new InvalidArgumentError(`Expected a method at step ${step} of the plan but received none`);
  const [batch, tokens, heads, headDim] = options.shape;
  if (options.shape.length !== 4) throw new InvalidArgumentError(`Expected a q/k/v shape [B, L, H, D] but received [${options.shape.join(', ')}]`);
  const events = options.events ?? [];
  const cfg: CfgLayout | null = options.cfg ? { order: options.cfg } : null;
  const layer = toyLayers(block + 1, { batch: batch!, tokens: tokens!, heads: heads!, headDim: headDim! }, cfg !== null, options.window)[block]!;
  return strategyContext({
    step,
    numSteps: methods.length,
    layer,
    method,
    cfg,
    backend: options.backend ?? createReferenceBackend(),
    plan: { numSteps: methods.length, numLayers: block + 1, methodAt: (s, l) => (l === layer.index ? methods[s] : undefined) },
    cache: (options.cache ?? new CacheManager()).scope(layer.index),
    strategies: options.strategies,
    report: (e) => void events.push(e),
  });
}

/** A backend that counts the calls of each kernel of `inner` (the reference backend by default). */
export function countingBackend(inner: KernelBackend = createReferenceBackend()): { backend: KernelBackend; calls: Record<'attention' | 'windowAttention' | 'fullWithResidual' | 'windowWithResidual', number> } {
  const calls = { attention: 0, windowAttention: 0, fullWithResidual: 0, windowWithResidual: 0 };
  const backend: KernelBackend = {
    name: inner.name,
    capabilities: () => inner.capabilities(),
    attention: (...a) => (calls.attention++, inner.attention(...a)),
    windowAttention: (...a) => (calls.windowAttention++, inner.windowAttention(...a)),
    fullWithResidual: (...a) => (calls.fullWithResidual++, inner.fullWithResidual(...a)),
    windowWithResidual: (...a) => (calls.windowWithResidual++, inner.windowWithResidual(...a)),
  };
  return { backend, calls };
}
