import type { AttentionShape } from './flops.js';
import type { AttentionStrategy, StrategyContext, StrategyLookup } from './strategy.js';

/** The part of a strategy context the look-ahead reads. */
export interface LookaheadContext {
  readonly step: number;
  readonly numSteps: number;
  /** Layer index in model order. */
  readonly layer: number;
  readonly plan: StrategyContext['plan'];
  readonly strategies: StrategyLookup;
}

/** A {@link LookaheadContext} from a strategy context. */
export function lookaheadOf(ctx: StrategyContext): LookaheadContext {
  return { step: ctx.step, numSteps: ctx.numSteps, layer: ctx.layer.index, plan: ctx.plan, strategies: ctx.strategies };
}

/** True when some strategy of the lookup writes `kind` from its `observe` (after every computed call). */
function observedKind(strategies: StrategyLookup, kind: string): boolean {
  return strategies.names().some((n) => strategies.get(n)?.caches.observes.includes(kind) ?? false);
}

/**
 * Plan look-ahead from the strategies' cache declarations: true when a later step of this layer reads
 * cache `kind` before another step writes it. Scanning later steps in order: a method that reads the
 * kind needs it; a method that writes it (or, for a kind written by an observer, any method that does
 * not read it — its call is computed and observed) refreshes it, so the current value is not needed.
 * A method not decided yet (`undefined`, during calibration) counts as a reader, so nothing a later
 * decision could need is dropped.
 */
export function cacheNeededAhead(ctx: LookaheadContext | StrategyContext, kind: string): boolean {
  const c = 'layer' in ctx && typeof ctx.layer === 'object' ? lookaheadOf(ctx as StrategyContext) : (ctx as LookaheadContext);
  const observed = observedKind(c.strategies, kind);
  for (let step = c.step + 1; step < c.numSteps; step++) {
    const method = c.plan.methodAt(step, c.layer);
    if (method === undefined) return true;
    const caches = c.strategies.get(method)?.caches;
    if (!caches) continue;
    if (caches.reads.includes(kind)) return true;
    if (caches.writes.includes(kind) || observed) return false;
  }
  return false;
}

/** The kinds among `strategy`'s `writes` that a later step of the layer reads (what a call at this step must write). */
export function writesNeededAhead(strategy: AttentionStrategy, ctx: LookaheadContext | StrategyContext): string[] {
  return strategy.caches.writes.filter((kind) => cacheNeededAhead(ctx, kind));
}

/**
 * Attention FLOPs of `strategy` at (step, layer) of a plan: its `flops`, told which cache kinds the call
 * writes for later steps (a refresh can cost extra, like WA-RS's residual window). Plans (the planner)
 * and runs (the pipeline) are both counted with this, so a run without fallbacks reproduces its plan's
 * total exactly.
 */
export function layerAttentionFlops(strategy: AttentionStrategy, shape: AttentionShape, ctx: LookaheadContext): number {
  return strategy.flops(shape, { writes: writesNeededAhead(strategy, ctx) });
}
