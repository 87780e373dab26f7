import {
  type AttentionHooks,
  type AttentionLayer,
  type CacheProvider,
  type CfgLayout,
  type ComputeDtype,
  InvalidArgumentError,
  type KernelBackend,
  type PlanView,
  type StrategyEvent,
  type StrategyLookup,
  StrategyNotFoundError,
  type Tensor,
  describeValue,
  executeAttention,
  expectInteger,
  layerAttentionFlops,
  layerShape,
  rawAttentionFlops,
  strategyContext,
  throwIfAborted,
} from '@ditfa/core';
import { NumericalFaultError, firstNonFinite } from './numerics.js';

/** Attention work of a run: FLOPs of what ran (fallbacks included) against the raw model's. */
export interface AttentionWork {
  readonly flops: number;
  /** The same calls with full attention. */
  readonly rawFlops: number;
  /** `flops / rawFlops`. */
  readonly fraction: number;
  /** (step, layer) calls that fell back to another method. */
  readonly fallbacks: number;
}

/** Mutable accumulators a dispatcher adds to (one per generation or calibration run). */
export interface RunTally {
  flops: number;
  rawFlops: number;
  fallbacks: number;
  /** Milliseconds inside strategies (attention kernels), dense hooks excluded. */
  attentionMs: number;
}

export function newTally(): RunTally {
  return { flops: 0, rawFlops: 0, fallbacks: 0, attentionMs: 0 };
}

export function attentionWork(t: RunTally): AttentionWork {
  return { flops: t.flops, rawFlops: t.rawFlops, fraction: t.rawFlops === 0 ? 0 : t.flops / t.rawFlops, fallbacks: t.fallbacks };
}

export interface DispatcherInit {
  readonly step: number;
  readonly numSteps: number;
  readonly layers: readonly AttentionLayer[];
  readonly plan: PlanView;
  /** Per-layer method overrides (the planner's trials); wins over the plan. */
  readonly methodFor?: (layer: number) => string | undefined;
  readonly strategies: StrategyLookup;
  readonly backend: KernelBackend;
  readonly cache: CacheProvider;
  readonly cfg: CfgLayout | null;
  readonly compute?: ComputeDtype;
  readonly tally?: RunTally;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: StrategyEvent) => void;
  /** Check every layer's attention output for NaN/Inf (the numerical fault search). */
  readonly checkFinite?: boolean;
}

/**
 * The attention dispatcher of one step: for attention layer `i` it picks the method (override, else the
 * plan, else `full`), builds the {@link StrategyContext} (the one place in ditfa that does), runs the
 * strategy through core's `executeAttention` with the model's dense hooks, and counts FLOPs of what
 * ran (a `fallback` report counts the method fallen back to), attention time and fallbacks.
 */
export function createDispatcher(init: DispatcherInit): (layer: number, hooks: AttentionHooks) => Promise<Tensor> {
  const { layers, plan, strategies } = init;
  const step = expectInteger('step', init.step, 0);
  return async (index, hooks) => {
    throwIfAborted(init.signal, 'The generation');
    const layer = layers[index];
    if (!layer) throw new InvalidArgumentError(`Expected an attention layer index in [0, ${layers.length - 1}] but received ${describeValue(index)}`);
    const method = init.methodFor?.(index) ?? plan.methodAt(step, index) ?? 'full';
    const strategy = strategies.get(method);
    if (!strategy) {
      throw new StrategyNotFoundError(`Expected a strategy named "${method}" for step ${step}, layer ${layer.id} but the pipeline has: ${strategies.names().join(', ') || 'none'}`);
    }
    let fellBackTo: string | undefined;
    const ctx = strategyContext({
      step,
      numSteps: init.numSteps,
      layer,
      method,
      cfg: layer.cfg ? init.cfg : null,
      backend: init.backend,
      plan,
      cache: init.cache.scope(index),
      compute: init.compute ?? 'fp32',
      strategies,
      report: (e) => {
        if (e.type === 'fallback' && e.step === step && e.layer === index) fellBackTo = e.to;
        init.onEvent?.(e);
      },
    });
    let denseMs = 0;
    const timed = <A extends unknown[], R>(fn: (...a: A) => Promise<R>) =>
      async (...a: A): Promise<R> => {
        const d0 = performance.now();
        try {
          return await fn(...a);
        } finally {
          denseMs += performance.now() - d0;
        }
      };
    const t0 = performance.now();
    const out = await executeAttention(strategy, ctx, { ...hooks, qkv: timed(hooks.qkv), project: timed(hooks.project) });
    const tally = init.tally;
    if (tally) {
      tally.attentionMs += performance.now() - t0 - denseMs;
      const ran = fellBackTo === undefined ? strategy : strategies.get(fellBackTo);
      if (!ran) throw new StrategyNotFoundError(`Strategy "${method}" fell back to "${fellBackTo}", which the pipeline does not have`);
      if (fellBackTo !== undefined) tally.fallbacks += 1;
      const shape = layerShape(layer);
      tally.flops += layerAttentionFlops(ran, shape, { step, numSteps: init.numSteps, layer: index, plan, strategies });
      tally.rawFlops += rawAttentionFlops(shape);
    }
    if (init.checkFinite) {
      const bad = firstNonFinite(out.data);
      if (bad >= 0) throw new NumericalFaultError({ step, layer: layer.id, where: `the attention output (method ${method})`, index: bad, value: out.data[bad]! });
    }
    return out;
  };
}
