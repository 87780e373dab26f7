import type { StrategyContext } from './strategy.js';

/**
 * Plan lookahead shared by strategies. A method the plan has not decided yet (`undefined`, during
 * calibration) counts as one that might need what is being considered, so nothing is dropped that a
 * later decision could need.
 */

/** True when a later step of this block reads the residual before another step refreshes it. */
export function residualNeededAhead(ctx: StrategyContext): boolean {
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
export function outputNeededNext(ctx: StrategyContext): boolean {
  if (ctx.step + 1 >= ctx.numSteps) return false;
  const method = ctx.plan.methodAt(ctx.step + 1, ctx.block);
  if (method === undefined) return true;
  return ctx.strategies.get(method)?.traits.reusesOutput ?? false;
}
