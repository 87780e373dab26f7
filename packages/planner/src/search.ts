import {
  AbortedError,
  CacheOverlay,
  DitfaError,
  InvalidArgumentError,
  PLAN_FORMAT,
  PLAN_VERSION,
  StrategyNotFoundError,
  diffFingerprints,
  meanRelativeAbsoluteError,
  rawAttentionFlops,
  layerAttentionFlops,
  layerShape,
  type CacheProvider,
  type AttentionLayer,
  type CalibrationTarget,
  type LossSpace,
  type PlanDocument,
  type PlanEntry,
  type PlanFingerprint,
  type PlanView,
  type Tensor,
} from '@ditfa/core';
import { resolveThreshold, type ThresholdName } from './thresholds.js';

/** The paper's candidates, most compressive first (the search re-sorts by the FLOP model anyway). */
export const DEFAULT_CANDIDATES = Object.freeze(['ast', 'wars+asc', 'wars', 'full+asc']);

export type SearchMode = 'prefix' | 'naive';

/** Where the loss is measured: core's {@link LossSpace} (re-exported for the planner's users). */
export type { LossSpace };

export type PlannerEvent =
  | { readonly type: 'step-start'; readonly step: number; readonly numSteps: number }
  | {
      readonly type: 'candidate';
      readonly step: number;
      /** Layer index in model order. */
      readonly layer: number;
      readonly method: string;
      readonly loss: number;
      readonly limit: number;
      readonly accepted: boolean;
    }
  | { readonly type: 'layer-decided'; readonly step: number; readonly layer: number; readonly method: string; readonly loss: number | null }
  | { readonly type: 'step-done'; readonly step: number; readonly numSteps: number; readonly layerEvaluations: number; readonly seconds: number };

/** A partial search, saved after every step so an interrupted search can resume. */
export interface SearchState {
  readonly format: 'ditfa-plan-search';
  readonly version: 2;
  readonly fingerprint: PlanFingerprint;
  readonly threshold: { readonly delta: number; readonly name?: ThresholdName };
  readonly candidates: readonly string[];
  readonly mode: SearchMode;
  /** Absent in states saved before it existed: `output`. */
  readonly lossOn?: LossSpace;
  /** Sites searched when not every site of the model; absent: all. */
  readonly sites?: readonly string[];
  /** Decided steps, `decided[step][layer]`. */
  readonly decided: readonly (readonly { readonly method: string; readonly loss: number | null }[])[];
  readonly layerEvaluations: number;
  readonly searchSeconds: number;
}

export interface SearchOptions {
  /** δ: a name D1..D6 or a number. */
  readonly threshold: ThresholdName | number | string;
  /** Candidate method names; default: the paper's four, sorted by the FLOP model (most compressive first). */
  readonly candidates?: readonly string[];
  /** `prefix` (default) starts each trial from the stored state before the layer under test; `naive` recomputes every layer. */
  readonly mode?: SearchMode;
  /** Where the loss is measured (default `output`, the paper's). */
  readonly lossOn?: LossSpace;
  /**
   * Attention sites the search may compress (e.g. `['spatial', 'temporal', 'cross']`); layers at other
   * sites stay at full attention. Default: the self-attention sites, as in the paper (on DiT and
   * PixArt-Σ every site; on Open-Sora spatial and temporal, not the cross-attention sites).
   */
  readonly sites?: readonly string[];
  readonly signal?: AbortSignal;
  readonly onProgress?: (event: PlannerEvent) => void;
  /** Called with the partial search after every decided step (save it to resume later). */
  readonly onCheckpoint?: (state: SearchState) => void;
  /** A saved partial search to continue. */
  readonly resume?: SearchState;
  /** Name of the tool that made the plan, stored in the document. */
  readonly generator?: string;
}

export class SearchResumeError extends DitfaError {
  constructor(message: string) {
    super('ERR_DITFA_PLAN_RESUME_MISMATCH', message);
  }
}

interface Decision {
  method: string;
  loss: number | null;
}

/**
 * The paper's Algorithm 1 over attention layers. One calibration generation; step 0 runs full
 * attention; at every later step the reference output is the model output with every layer at full
 * attention for this step (earlier steps under their chosen methods); layers in model order,
 * candidates that apply to the layer in order of decreasing compression, the first whose loss is below
 * `(i+1)/N · δ` is accepted (`i` the layer's index in model order, `N` the number of layers); then the
 * step runs for real with the chosen methods, filling the caches. Layers at sites the search does not
 * cover (by default the cross-attention sites: the paper compresses self-attention only; see
 * {@link SearchOptions.sites}) have no candidates and stay at full attention.
 *
 * The limit: the paper gives block `i` of `N` the budget `(i+1)/N · δ` because the output error it
 * measures is cumulative — every decision before `i` is already in the model output — so the budget
 * grows linearly along the order in which decisions are made and reaches δ at the last. With several
 * attention layers per block the decisions are made per layer in the order the model runs them, so the
 * same reasoning gives layer `i` of `N` layers `(i+1)/N · δ`; for models with one self-attention per
 * block (DiT, PixArt-Σ) this is exactly the paper's rule.
 *
 * In `prefix` mode a trial for layer `i` starts from the stored state entering layer `i` (layers before
 * `i` keep their decided methods, so their output does not change), and layer `i` runs with its caches
 * in an overlay that is committed when its candidate is accepted, so the step's real run is the chain of
 * accepted trials and costs nothing extra. The plan is identical to `naive` mode's.
 */
export async function searchPlan<H>(target: CalibrationTarget<H>, options: SearchOptions): Promise<PlanDocument> {
  const started = performance.now();
  const threshold = resolveThreshold(options.threshold);
  const mode = options.mode ?? 'prefix';
  if (mode !== 'prefix' && mode !== 'naive') {
    throw new InvalidArgumentError(`Expected search mode 'prefix' or 'naive' but received ${JSON.stringify(mode)}`);
  }
  const lossOn = options.lossOn ?? 'output';
  if (lossOn !== 'output' && lossOn !== 'prediction') {
    throw new InvalidArgumentError(`Expected lossOn 'output' or 'prediction' but received ${JSON.stringify(lossOn)}`);
  }
  if (lossOn === 'prediction' && !target.prediction) {
    throw new InvalidArgumentError("Expected a calibration target with prediction() for lossOn 'prediction' but this one has none");
  }
  const measured = async (output: Tensor, step: number): Promise<Tensor> => (lossOn === 'prediction' ? target.prediction!(output, step) : output);
  const N = target.layers.length;
  const T = target.numSteps;
  const candidateNames = checkCandidates(target, options.candidates ?? DEFAULT_CANDIDATES.filter((c) => target.strategies.get(c)));
  const sites = searchedSites(target.layers, options.sites);
  const ordered = orderCandidates(target, candidateNames);
  const candidatesFor = (layer: number): string[] => (sites === null || sites.includes(target.layers[layer]!.site) ? ordered(layer) : []);
  const decided: Decision[][] = [];
  let evaluations = 0;
  let priorSeconds = 0;

  if (options.resume) {
    const r = options.resume;
    const mismatches = diffFingerprints(r.fingerprint, target.fingerprint).map((m) => m.field);
    if (r.threshold.delta !== threshold.delta) mismatches.push('threshold');
    if (r.candidates.join(',') !== candidateNames.join(',')) mismatches.push('candidates');
    if ((r.lossOn ?? 'output') !== lossOn) mismatches.push('lossOn');
    if (JSON.stringify(r.sites ?? null) !== JSON.stringify(sites)) mismatches.push('sites');
    if (r.decided.length > T || r.decided.some((row) => row.length !== N)) mismatches.push('decided steps');
    if (mismatches.length > 0) {
      throw new SearchResumeError(`Cannot resume a search made for something else (differs in: ${mismatches.join(', ')})`);
    }
    for (const row of r.decided) decided.push(row.map((d) => ({ ...d })));
    evaluations = r.layerEvaluations;
    priorSeconds = r.searchSeconds;
  }

  const emit = options.onProgress ?? (() => {});
  const checkAbort = (): void => {
    if (options.signal?.aborted) throw new AbortedError('The plan search', { cause: options.signal.reason });
  };
  const run = async (hidden: H, from: number, to: number, step: number, methods: readonly string[], plan: PlanView, cache: CacheProvider): Promise<H> => {
    evaluations += to - from;
    return target.runLayers(hidden, from, to, { step, methodFor: (b) => methods[b]!, plan, cache });
  };
  /** Decided steps before `step`; at `step` the given methods; later steps: undecided for `free`, full elsewhere. */
  const view = (step: number, methods: readonly string[], free: number | 'all' | 'none'): PlanView => ({
    numSteps: T,
    numLayers: N,
    methodAt: (s, b) => {
      if (s < 0 || s >= T || b < 0 || b >= N) return undefined;
      if (s < step) return decided[s]?.[b]?.method;
      if (s === step) return methods[b];
      return free === 'all' || free === b ? undefined : 'full';
    },
  });

  const { cache } = await target.begin();
  try {
    const replayed = decided.length;
    for (let step = 0; step < T; step++) {
      checkAbort();
      const stepStart = performance.now();
      const evalsBefore = evaluations;
      const h0 = await target.embed(step);
      let output: Tensor;
      if (step < replayed || step === 0) {
        // Replay a resumed step, or step 0 (always full): run it for real.
        const methods = step < replayed ? decided[step]!.map((d) => d.method) : Array<string>(N).fill('full');
        if (step >= replayed) emit({ type: 'step-start', step, numSteps: T });
        output = await target.output(await run(h0, 0, N, step, methods, view(step, methods, 'all'), cache), step);
        if (step >= replayed) decided.push(methods.map((method) => ({ method, loss: null })));
      } else {
        emit({ type: 'step-start', step, numSteps: T });
        const allFull = Array<string>(N).fill('full');
        const reference = await target.output(await run(h0, 0, N, step, allFull, view(step, allFull, 'none'), new CacheOverlay(cache)), step);
        const referenceMeasured = await measured(reference, step);
        const chosen = [...allFull];
        const row: Decision[] = [];
        let prefix: H = h0;
        for (let i = 0; i < N; i++) {
          checkAbort();
          const limit = ((i + 1) / N) * threshold.delta;
          let accepted: Decision | null = null;
          for (const m of candidatesFor(i)) {
            const methods = chosen.map((c, b) => (b === i ? m : c));
            const overlay = new CacheOverlay(cache);
            let after: H | null = null;
            let end: H;
            if (mode === 'prefix') {
              after = await run(prefix, i, i + 1, step, methods, view(step, methods, i), overlay);
              end = i + 1 < N ? await run(after, i + 1, N, step, methods, view(step, methods, i), overlay) : after;
            } else {
              end = await run(h0, 0, N, step, methods, view(step, methods, 'none'), overlay);
            }
            const loss = meanRelativeAbsoluteError(referenceMeasured.data, (await measured(await target.output(end, step), step)).data);
            const ok = loss < limit;
            emit({ type: 'candidate', step, layer: i, method: m, loss, limit, accepted: ok });
            if (ok) {
              accepted = { method: m, loss };
              chosen[i] = m;
              if (after !== null) {
                overlay.commit([i]);
                prefix = after;
              }
              break;
            }
          }
          if (!accepted) {
            accepted = { method: 'full', loss: null };
            chosen[i] = 'full';
            if (mode === 'prefix') {
              const overlay = new CacheOverlay(cache);
              prefix = await run(prefix, i, i + 1, step, chosen, view(step, chosen, i), overlay);
              overlay.commit([i]);
            }
          }
          row.push(accepted);
          emit({ type: 'layer-decided', step, layer: i, method: accepted.method, loss: accepted.loss });
        }
        if (mode === 'prefix') {
          output = await target.output(prefix, step);
        } else {
          output = await target.output(await run(h0, 0, N, step, chosen, view(step, chosen, 'all'), cache), step);
        }
        decided.push(row);
      }
      await target.advance(step, output);
      if (step >= replayed) {
        emit({ type: 'step-done', step, numSteps: T, layerEvaluations: evaluations - evalsBefore, seconds: (performance.now() - stepStart) / 1000 });
        options.onCheckpoint?.({
          format: 'ditfa-plan-search',
          version: 2,
          fingerprint: target.fingerprint,
          threshold,
          candidates: candidateNames,
          mode,
          ...(lossOn === 'output' ? {} : { lossOn }),
          ...(sites === null ? {} : { sites }),
          decided: decided.map((r) => r.map((d) => ({ ...d }))),
          layerEvaluations: evaluations,
          searchSeconds: priorSeconds + (performance.now() - started) / 1000,
        });
      }
    }
  } finally {
    await target.end?.();
  }

  return buildPlanDocument(target, decided, {
    threshold,
    candidates: candidateNames,
    lossOn,
    ...(sites === null ? {} : { sites }),
    layerEvaluations: evaluations,
    searchSeconds: priorSeconds + (performance.now() - started) / 1000,
    generator: options.generator,
  });
}

/** Checks candidate names: known strategies, `full` excluded (it is the fallback). */
function checkCandidates(target: CalibrationTarget<unknown>, names: readonly string[]): string[] {
  if (target.layers.length === 0) throw new InvalidArgumentError('Expected a calibration target with at least one attention layer but it has none');
  if (names.length === 0) throw new InvalidArgumentError('Expected at least one candidate method but received none');
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) throw new InvalidArgumentError(`Expected each candidate once but received "${twice}" more than once`);
  for (const n of names) {
    if (n === 'full') throw new InvalidArgumentError('Expected candidates other than "full" (full attention is the fallback) but received "full"');
    if (!target.strategies.get(n)) {
      throw new StrategyNotFoundError(`Expected a strategy for candidate "${n}" but the pipeline has: ${target.strategies.names().join(', ')}`);
    }
  }
  // Recorded in the plan in the order of their FLOPs on the first layer (most compressive first, stable).
  const shape = layerShape(target.layers[0]!);
  return [...names].map((n, i) => ({ n, i, f: target.strategies.get(n)!.flops(shape) })).sort((a, b) => a.f - b.f || a.i - b.i).map((x) => x.n);
}

/**
 * The sites a search with these options compresses, as the plan records them: in model order, or `null`
 * for every site of the model. Default (`sites` absent): the self-attention sites (the paper compresses
 * self-attention only); a site is self-attention when its layers attend over their own tokens (no
 * `kvTokens`, or as many as `tokens`). Given sites must each be named once and exist among the layers.
 * Tools use it to tell whether a stored plan was searched as a default search would be.
 */
export function searchedSites(layers: readonly AttentionLayer[], sites?: readonly string[]): string[] | null {
  const present = [...new Set(layers.map((l) => l.site))];
  let chosen: string[];
  if (sites === undefined) {
    const self = (site: string): boolean => layers.every((l) => l.site !== site || l.kvTokens === undefined || l.kvTokens === l.tokens);
    chosen = present.filter(self);
  } else {
    if (!Array.isArray(sites) || sites.length === 0) throw new InvalidArgumentError(`Expected a non-empty list of attention sites but received ${JSON.stringify(sites)}`);
    const twice = sites.find((n, i) => sites.indexOf(n) !== i);
    if (twice !== undefined) throw new InvalidArgumentError(`Expected each site once but received "${twice}" more than once`);
    const unknown = sites.filter((n) => !present.includes(n));
    if (unknown.length > 0) throw new InvalidArgumentError(`Expected sites of this model (${present.join(', ')}) but received ${unknown.map((n) => JSON.stringify(n)).join(', ')}`);
    // Stored in model order, so that a resumed search compares equal whatever order the caller gave.
    chosen = present.filter((n) => sites.includes(n));
  }
  return chosen.length === present.length ? null : chosen;
}

/**
 * The candidates of each layer: those that apply to it (`appliesTo`), ordered by their FLOPs on the
 * layer's shape, most compressive first (stable).
 */
function orderCandidates(target: CalibrationTarget<unknown>, names: readonly string[]): (layer: number) => string[] {
  const cache = new Map<number, string[]>();
  return (layer) => {
    let order = cache.get(layer);
    if (!order) {
      const l = target.layers[layer]!;
      const shape = layerShape(l);
      order = [...names]
        .map((n) => target.strategies.get(n)!)
        .filter((s) => s.appliesTo?.(l) ?? true)
        .map((s, i) => ({ n: s.name, i, f: s.flops(shape) }))
        .sort((a, b) => a.f - b.f || a.i - b.i)
        .map((x) => x.n);
      cache.set(layer, order);
    }
    return order;
  };
}

/** Per-entry FLOPs fractions (residual refreshes included, from the final plan) and the totals. */
export function buildPlanDocument(
  target: Pick<CalibrationTarget<unknown>, 'layers' | 'numSteps' | 'fingerprint' | 'strategies'>,
  decided: readonly (readonly Decision[])[],
  info: {
    threshold: { delta: number; name?: ThresholdName };
    candidates: readonly string[];
    lossOn?: LossSpace;
    sites?: readonly string[];
    layerEvaluations: number;
    searchSeconds: number;
    generator?: string | undefined;
  },
): PlanDocument {
  const N = target.layers.length;
  const T = target.numSteps;
  const plan: PlanView = { numSteps: T, numLayers: N, methodAt: (s, b) => decided[s]?.[b]?.method };
  let total = 0;
  let raw = 0;
  const steps: PlanEntry[][] = decided.map((row, step) =>
    row.map((d, layer) => {
      const strategy = target.strategies.get(d.method);
      if (!strategy) throw new StrategyNotFoundError(`Expected a strategy for method "${d.method}" but none is in the pipeline`);
      const shape = layerShape(target.layers[layer]!);
      const flops = layerAttentionFlops(strategy, shape, { step, layer, numSteps: T, plan, strategies: target.strategies });
      const r = rawAttentionFlops(shape);
      total += flops;
      raw += r;
      return { method: d.method, loss: d.loss, flopsFraction: r === 0 ? 0 : flops / r };
    }),
  );
  return {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    fingerprint: target.fingerprint,
    threshold: info.threshold,
    candidates: [...info.candidates],
    ...(info.lossOn === 'prediction' ? { lossOn: info.lossOn } : {}),
    ...(info.sites ? { sites: [...info.sites] } : {}),
    steps,
    totals: { attentionFlopsFraction: raw === 0 ? 0 : total / raw, searchSeconds: info.searchSeconds, layerEvaluations: info.layerEvaluations },
    createdAt: new Date().toISOString(),
    ...(info.generator ? { generator: info.generator } : {}),
  };
}
