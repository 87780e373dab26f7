import { describe, expect, it } from 'vitest';
import {
  CacheManager,
  ErrorCode,
  InvalidStrategyError,
  cacheNeededAhead,
  checkStrategySet,
  createReferenceBackend,
  defineLayers,
  layerAttentionFlops,
  layerShape,
  lookaheadOf,
  strategyContext,
  strategySet,
  writesNeededAhead,
  type LookaheadContext,
  type StrategyFlopOptions,
} from '../src/index.js';
import { declaredStrategy, planOf } from './helpers.js';

/**
 * Test strategies with their own cache kinds (core names none):
 * - `w` writes kind `r` (like a residual-refreshing full step), `r` reads it (like WA-RS);
 * - `o` reads kind `o` and its observer writes it after every computed call (like AST's output);
 * - `x` keeps no cache.
 */
const W = declaredStrategy('w', { writes: ['r'] });
const R = declaredStrategy('r', { reads: ['r'] });
const O = declaredStrategy('o', { reads: ['o'], observes: ['o'] });
const X = declaredStrategy('x');
const strategies = strategySet([W, R, O, X]);

/** Look-ahead of layer 0 at `step` of a one-layer plan; `undefined` marks an undecided step. */
function at(methods: (string | undefined)[], step: number): LookaheadContext {
  return { step, numSteps: methods.length, layer: 0, plan: planOf(methods.map((m) => [m])), strategies };
}

describe('cacheNeededAhead: a kind with a writer and a reader', () => {
  it.each<[(string | undefined)[], number, boolean]>([
    [['w', 'r'], 0, true],
    [['w', 'o', 'r'], 0, true], // o neither reads nor writes r
    [['w', 'x', 'x', 'r'], 0, true], // nor does a cache-less method: r is not observed
    [['w', 'w', 'r'], 0, false], // the next writer refreshes it first
    [['w', 'w', 'r'], 1, true],
    [['w', 'r', 'w', 'r'], 0, true],
    [['w', 'r', 'w', 'r'], 1, false], // after its last reader, until the next writer
    [['w', 'r', 'r'], 1, true],
    [['w', 'o', 'o'], 0, false], // nobody reads it
    [['w'], 0, false], // the last step
    [['w', 'r'], 1, false],
    [['w', 'unknown', 'r'], 0, true], // a method the lookup lacks is skipped
  ])('plan %j at step %i: %s', (methods, step, needed) => {
    expect(cacheNeededAhead(at(methods, step), 'r')).toBe(needed);
  });

  it('counts undecided steps (calibration) as readers', () => {
    expect(cacheNeededAhead(at(['w', undefined], 0), 'r')).toBe(true);
    expect(cacheNeededAhead(at(['w', 'x', undefined, 'w'], 0), 'r')).toBe(true);
    // decided steps before it still decide: a writer first means not needed
    expect(cacheNeededAhead(at(['w', 'w', undefined], 0), 'r')).toBe(false);
  });
});

describe('cacheNeededAhead: an observed kind', () => {
  it.each<[(string | undefined)[], number, boolean]>([
    [['w', 'o'], 0, true],
    [['w', 'o', 'o'], 0, true],
    [['w', 'o', 'o'], 1, true], // the reused output is reused again
    [['w', 'x', 'o'], 0, false], // x is computed and observed: it refreshes o
    [['w', 'r', 'o'], 0, false], // so is any method that does not read o
    [['w', 'w', 'o'], 0, false],
    [['w', 'o', 'x'], 1, false],
    [['w', undefined, 'x'], 0, true],
  ])('plan %j at step %i: %s', (methods, step, needed) => {
    expect(cacheNeededAhead(at(methods, step), 'o')).toBe(needed);
  });

  it('treats a kind as observed only when a strategy of the lookup observes it', () => {
    // the same reader without its observer: only a declared writer refreshes the kind
    const alone = strategySet([declaredStrategy('o', { reads: ['o'] }), X, W]);
    const ctx = (methods: string[]): LookaheadContext => ({ step: 0, numSteps: methods.length, layer: 0, plan: planOf(methods.map((m) => [m])), strategies: alone });
    expect(cacheNeededAhead(ctx(['w', 'x', 'o']), 'o')).toBe(true);
    expect(cacheNeededAhead(at(['w', 'x', 'o'], 0), 'o')).toBe(false);
  });
});

describe('cacheNeededAhead per layer', () => {
  // steps[step][layer]: layer 0 reads r at step 2, layer 1 refreshes it at step 1
  const plan = planOf([
    ['w', 'w'],
    ['x', 'w'],
    ['r', 'r'],
  ]);
  const layers = defineLayers([0, 1].map((block) => ({ block, site: 'self', batch: 2, tokens: 4, heads: 1, headDim: 2, cfg: true, window: { kind: '1d', size: 1 } })));

  it('reads the plan of its own layer', () => {
    expect(cacheNeededAhead({ step: 0, numSteps: 3, layer: 0, plan, strategies }, 'r')).toBe(true);
    expect(cacheNeededAhead({ step: 0, numSteps: 3, layer: 1, plan, strategies }, 'r')).toBe(false);
    expect(cacheNeededAhead({ step: 1, numSteps: 3, layer: 1, plan, strategies }, 'r')).toBe(true);
  });

  it('takes a strategy context too, reading the layer index from ctx.layer', () => {
    const cache = new CacheManager();
    const ctx = (layer: 0 | 1) =>
      strategyContext({ step: 0, numSteps: 3, layer: layers[layer]!, method: 'w', cfg: { order: 'cond-first' }, backend: createReferenceBackend(), plan, cache: cache.scope(layer), strategies });
    expect(lookaheadOf(ctx(1))).toEqual({ step: 0, numSteps: 3, layer: 1, plan, strategies });
    expect(cacheNeededAhead(ctx(0), 'r')).toBe(true);
    expect(cacheNeededAhead(ctx(1), 'r')).toBe(false);
    expect(writesNeededAhead(W, ctx(0))).toEqual(['r']);
    expect(writesNeededAhead(W, ctx(1))).toEqual([]);
  });
});

describe('writes of a call', () => {
  // a writer of two kinds, read by two different readers
  const W2 = declaredStrategy('w2', { writes: ['r', 's'] });
  const S = declaredStrategy('s', { reads: ['s'] });
  const both = strategySet([W2, R, S, X]);
  const ctx = (methods: string[], step = 0): LookaheadContext => ({ step, numSteps: methods.length, layer: 0, plan: planOf(methods.map((m) => [m])), strategies: both });

  it('are exactly the declared writes a later step reads', () => {
    expect(writesNeededAhead(W2, ctx(['w2', 'r']))).toEqual(['r']);
    expect(writesNeededAhead(W2, ctx(['w2', 's']))).toEqual(['s']);
    expect(writesNeededAhead(W2, ctx(['w2', 's', 'r']))).toEqual(['r', 's']);
    expect(writesNeededAhead(W2, ctx(['w2', 'x']))).toEqual([]);
    expect(writesNeededAhead(R, ctx(['w2', 'r', 'r'], 1))).toEqual([]); // a reader writes nothing
  });

  it('are what layerAttentionFlops passes to the strategy\'s flops', () => {
    const seen: (readonly string[] | undefined)[] = [];
    // closed form: the call's raw cost plus one extra raw cost per kind written
    const priced = declaredStrategy('w2', { writes: ['r', 's'] }, (shape, options?: StrategyFlopOptions) => {
      seen.push(options?.writes);
      return (1 + (options?.writes?.length ?? 0)) * 4 * shape.batch * shape.tokens * shape.tokens * shape.channels;
    });
    const lookup = strategySet([priced, R, S, X]);
    const [layer] = defineLayers([{ block: 0, site: 'self', batch: 2, tokens: 4, heads: 1, headDim: 3, cfg: false, window: null }]);
    const shape = layerShape(layer!);
    const flops = (methods: string[]): number =>
      layerAttentionFlops(priced, shape, { step: 0, numSteps: methods.length, layer: 0, plan: planOf(methods.map((m) => [m])), strategies: lookup });
    // raw: 4·2·4·4·3 = 384
    expect(flops(['w2', 'x'])).toBe(384);
    expect(flops(['w2', 'r'])).toBe(768);
    expect(flops(['w2', 's', 'r'])).toBe(1152);
    expect(seen).toEqual([[], ['r'], ['r', 's']]);
  });
});

describe('checkStrategySet', () => {
  it('throws an InvalidStrategyError naming the reader and the kind nobody writes', () => {
    let error: unknown;
    try {
      checkStrategySet(strategySet([R, X]));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidStrategyError);
    expect(error).toMatchObject({ code: ErrorCode.InvalidStrategy });
    expect((error as Error).message).toMatch(/Strategy "r" reads the cache kind "r" but no strategy of this pipeline writes it/);
    expect(() => checkStrategySet(strategySet([X, declaredStrategy('o', { reads: ['o'] })]))).toThrow(/"o" reads the cache kind "o"/);
  });

  it('passes when a writer or an observer of every read kind is present', () => {
    expect(() => checkStrategySet(strategySet([W, R]))).not.toThrow();
    expect(() => checkStrategySet(strategySet([O]))).not.toThrow(); // observes what it reads
    expect(() => checkStrategySet(strategySet([declaredStrategy('o', { reads: ['o'] }), declaredStrategy('keeper', { observes: ['o'] })]))).not.toThrow();
    expect(() => checkStrategySet(strategies)).not.toThrow();
    expect(() => checkStrategySet(strategySet([]))).not.toThrow();
  });
});
