import type { AttentionShape } from './flops.js';
import type { AttentionStrategy, StrategyContext } from './strategy.js';

/** The part of a strategy context lookahead reads. */
export type LookaheadContext = Pick<StrategyContext, 'step' | 'block' | 'numSteps' | 'plan' | 'strategies'>;

/**
 * Plan lookahead shared by strategies. A method the plan has not decided yet (`undefined`, during
 * calibration) counts as one that might need what is being considered, so nothing is dropped that a
 * later decision could need.
 */

/** True when a later step of this block reads the residual before another step refreshes it. */
export function residualNeededAhead(ctx: LookaheadContext): boolean {
  for (let step = ctx.step + 1; step < ctx.numSteps; step++) {
    const method = ctx.plan.methodAt(step, ctx.block);
    if (method === undefined) return true;
    const traits = ctx.strategies.get(method)?.traits;
    if (!traits) continue;
    if (traits.consumesResidual) return true;
    if (traits.refreshesResidual) return false;
  }
  return false;
}

/** True when the next step of this block reuses this step's projected output (AST). */
export function outputNeededNext(ctx: LookaheadContext): boolean {
  if (ctx.step + 1 >= ctx.numSteps) return false;
  const method = ctx.plan.methodAt(ctx.step + 1, ctx.block);
  if (method === undefined) return true;
  return ctx.strategies.get(method)?.traits.reusesOutput ?? false;
}

/**
 * Attention FLOPs of `strategy` at (step, block) of a plan: its `flops`, with the WA-RS residual refresh
 * counted when a later step of the block reads the residual. Plans (the planner) and runs (the pipeline)
 * are both counted with this, so a run without fallbacks reproduces its plan's total exactly.
 */
export function blockAttentionFlops(strategy: AttentionStrategy, shape: AttentionShape, ctx: LookaheadContext): number {
  const refreshResidual = strategy.traits.refreshesResidual && residualNeededAhead(ctx);
  return strategy.flops(shape, { refreshResidual });
}
