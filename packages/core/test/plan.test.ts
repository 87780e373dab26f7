import Ajv2020 from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  PLAN_VERSION,
  PlanMismatchError,
  checkPlanFingerprint,
  defineLayers,
  diffFingerprints,
  parsePlan,
  planJsonSchema,
  planView,
  serializePlan,
  strategySet,
  uniformPlanView,
  upgradePlanV1,
  validatePlan,
  type PlanDocument,
  type PlanDocumentV1,
  type PlanFingerprint,
  type PlanLayer,
} from '../src/index.js';
import { declaredStrategy } from './helpers.js';

// Three layers of one block: self-attention with a 1-D window, cross-attention without one, and a
// second block's self-attention over a 2×4 grid.
const fingerprint: PlanFingerprint = {
  model: { architecture: 'dit depth=2 hidden=64 heads=2 patch=2', weightsHash: 'sha256:abc' },
  latent: { channels: 4, height: 8, width: 8 },
  steps: 3,
  sampler: 'dpm-solver++2m',
  guidance: 4,
  cfgOrder: 'cond-first',
  layers: [
    { id: '0.self', window: { kind: '1d', size: 2 } },
    { id: '0.cross', window: null },
    { id: '1.self', window: { kind: '2d', rows: 2, cols: 4, radius: 1 } },
  ],
};

const e = (method: string, loss: number | null, flopsFraction: number) => ({ method, loss, flopsFraction });

function goodPlan(): PlanDocument {
  return {
    format: 'ditfa-plan',
    version: PLAN_VERSION,
    fingerprint,
    threshold: { delta: 0.05, name: 'D2' },
    candidates: ['ast', 'wars+asc', 'wars', 'full+asc'],
    steps: [
      [e('full', null, 1), e('full', null, 1), e('full', null, 1)],
      [e('ast', 0.01, 0), e('full', 0, 1), e('wars', 0.02, 0.4)],
      [e('wars+asc', 0.03, 0.2), e('full+asc', 0.01, 0.5), e('full+asc', 0.01, 0.5)],
    ],
    totals: { attentionFlopsFraction: 0.62, searchSeconds: 1.5, layerEvaluations: 20 },
  };
}

const clone = <T,>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
const mutate = (f: (d: any) => void): unknown => {
  const d = clone(goodPlan());
  f(d);
  return d;
};

/** The paper's methods as a strategy package declares their caches (core knows none of them). */
const paperLike = strategySet([
  declaredStrategy('full', { writes: ['residual'] }),
  declaredStrategy('full+asc', { writes: ['residual'] }),
  declaredStrategy('wars', { reads: ['residual'] }),
  declaredStrategy('wars+asc', { reads: ['residual'] }),
  declaredStrategy('ast', { reads: ['projected'], observes: ['projected'] }),
]);

const ajv = new Ajv2020.default({ allErrors: true, strict: true, allowUnionTypes: true });
const schemaValid = ajv.compile(planJsonSchema);

function issuesOf(doc: unknown, options?: Parameters<typeof validatePlan>[1]): { code: unknown; paths: string[]; message: string } {
  try {
    validatePlan(doc, options);
  } catch (error) {
    const err = error as { code?: unknown; issues?: { path: string }[]; message: string };
    return { code: err.code, paths: (err.issues ?? []).map((i) => i.path), message: err.message };
  }
  return { code: 'valid', paths: [], message: '' };
}

describe('plan documents (version 2)', () => {
  it('accepts a good document, with or without the strategies, and round-trips it through JSON', () => {
    const plan = validatePlan(goodPlan());
    expect(plan).toEqual(goodPlan());
    expect(validatePlan(goodPlan(), { methods: paperLike })).toEqual(goodPlan());
    expect(parsePlan(serializePlan(plan))).toEqual(plan);
    expect(schemaValid(goodPlan())).toBe(true);
    const view = planView(plan);
    expect(view.numSteps).toBe(3);
    expect(view.numLayers).toBe(3);
    expect(view.methodAt(1, 0)).toBe('ast');
    expect(view.methodAt(2, 2)).toBe('full+asc');
    expect(view.methodAt(3, 0)).toBeUndefined();
    expect(view.methodAt(0, 3)).toBeUndefined();
  });

  // [name, document, path named, whether the JSON schema can catch it too]
  const bad: Array<[string, unknown, string, boolean]> = [
    ['an unknown version', mutate((d) => (d.version = 3)), 'version', true],
    ['a wrong format', mutate((d) => (d.format = 'other')), 'format', true],
    ['a duplicate layer id', mutate((d) => (d.fingerprint.layers[2].id = '0.self')), 'fingerprint.layers[2].id', false],
    ['a layer id without a site', mutate((d) => (d.fingerprint.layers[1].id = '0')), 'fingerprint.layers[1].id', true],
    ['a layer id of the wrong form', mutate((d) => (d.fingerprint.layers[0].id = 'self.0')), 'fingerprint.layers[0].id', true],
    ['a layer without a window field', mutate((d) => delete d.fingerprint.layers[1].window), 'fingerprint.layers[1].window', true],
    ['a bad layer window', mutate((d) => (d.fingerprint.layers[0].window = { kind: '1d', size: -1 })), 'fingerprint.layers[0].window.size', true],
    ['a bad 2-D window', mutate((d) => (d.fingerprint.layers[2].window.rows = 0)), 'fingerprint.layers[2].window.rows', true],
    ['an unknown window kind', mutate((d) => (d.fingerprint.layers[0].window = { kind: '3d' })), 'fingerprint.layers[0].window.kind', true],
    ['no layers', mutate((d) => (d.fingerprint.layers = [])), 'fingerprint.layers', true],
    ['a layer that is not an object', mutate((d) => (d.fingerprint.layers[1] = '0.cross')), 'fingerprint.layers[1]', true],
    ['a steps row shorter than the layers', mutate((d) => d.steps[2].pop()), 'steps[2]', false],
    ['a steps row longer than the layers', mutate((d) => d.steps[1].push(e('full', 0, 1))), 'steps[1]', false],
    ['fewer steps than the fingerprint', mutate((d) => d.steps.pop()), 'steps', false],
    [
      'the version-1 shape (window and numBlocks, no layers)',
      mutate((d) => {
        d.fingerprint.window = d.fingerprint.layers[0].window;
        delete d.fingerprint.layers;
        d.numBlocks = 3;
      }),
      'fingerprint.layers',
      true,
    ],
    ['a version-1 window beside the layers', mutate((d) => (d.fingerprint.window = d.fingerprint.layers[0].window)), 'fingerprint.window', false],
    ['a version-1 numBlocks beside the layers', mutate((d) => (d.numBlocks = 3)), 'numBlocks', false],
    ['a method name of the wrong form', mutate((d) => (d.steps[1][0].method = 'WA-RS')), 'steps[1][0].method', true],
    ['a candidate name of the wrong form', mutate((d) => (d.candidates[1] = 'wars + asc')), 'candidates[1]', true],
    ['a negative loss', mutate((d) => (d.steps[1][1].loss = -1)), 'steps[1][1].loss', true],
    ['a missing flops fraction', mutate((d) => delete d.steps[1][1].flopsFraction), 'steps[1][1].flopsFraction', true],
    ['a bad cfg order', mutate((d) => (d.fingerprint.cfgOrder = 'first')), 'fingerprint.cfgOrder', true],
    ['a missing fingerprint', mutate((d) => delete d.fingerprint), 'fingerprint', true],
    ['missing totals', mutate((d) => delete d.totals), 'totals.attentionFlopsFraction', true],
  ];

  it.each(bad)('rejects a document with %s, naming the field', (_name, doc, path, schemaCatches) => {
    const { code, paths, message } = issuesOf(doc);
    expect(code).toBe(ErrorCode.PlanInvalid);
    expect(paths).toContain(path);
    expect(message).toContain(path);
    // the JSON schema agrees wherever a schema can express the rule
    expect(schemaValid(doc)).toBe(!schemaCatches);
  });

  it('says which version it expected', () => {
    expect(() => validatePlan(mutate((d) => (d.version = 99)))).toThrow(/expected format version 2 \(or 1, upgraded on load\) but received 99 \(number\)/);
    expect(() => validatePlan(mutate((d) => (d.version = '2')))).toThrow(/but received "2" \(string\)/);
  });

  it('names a duplicate layer id and a row of the wrong length in words', () => {
    expect(issuesOf(mutate((d) => (d.fingerprint.layers[2].id = '0.self'))).message).toContain('layer id "0.self" appears twice');
    expect(issuesOf(mutate((d) => d.steps[2].pop())).message).toContain('steps[2]: expected 3 layers but received 2');
  });

  it('checks method names against the strategies when given, else by form', () => {
    const doc = mutate((d) => (d.steps[1][0].method = 'dilated'));
    expect(issuesOf(doc).code).toBe('valid');
    expect(issuesOf(doc, { methods: paperLike }).paths).toEqual(['steps[1][0].method']);
    expect(issuesOf(doc, { methods: paperLike }).message).toContain('unknown method "dilated" (string); known: full, full+asc, wars, wars+asc, ast');
    // a list of names allows those and full
    expect(issuesOf(doc, { methods: ['dilated'] }).paths).toEqual([
      'candidates[0]',
      'candidates[1]',
      'candidates[2]',
      'candidates[3]',
      'steps[1][2].method',
      'steps[2][0].method',
      'steps[2][1].method',
      'steps[2][2].method',
    ]);
    expect(issuesOf(doc, { methods: ['dilated', 'ast', 'wars', 'wars+asc', 'full+asc'] }).code).toBe('valid');
    const dilated = declaredStrategy('dilated');
    expect(issuesOf(doc, { methods: strategySet([...paperLike.list(), dilated]) }).code).toBe('valid');
  });

  it('refuses a step-0 method that reads a cache, when the strategies are known', () => {
    const doc = mutate((d) => (d.steps[0][1].method = 'ast'));
    const { paths, message } = issuesOf(doc, { methods: paperLike });
    expect(paths).toEqual(['steps[0][1].method']);
    expect(message).toContain('step 0 must compute attention but the plan says "ast", which reads a cache of an earlier step');
    expect(issuesOf(mutate((d) => (d.steps[0][2].method = 'wars')), { methods: paperLike }).paths).toEqual(['steps[0][2].method']);
    // a writer at step 0 is fine, and so is a reader later
    expect(issuesOf(mutate((d) => (d.steps[0][0].method = 'full+asc')), { methods: paperLike }).code).toBe('valid');
    // by name only, nothing says that "ast" reads a cache
    expect(issuesOf(doc).code).toBe('valid');
    expect(issuesOf(doc, { methods: ['ast', 'wars', 'wars+asc', 'full+asc'] }).code).toBe('valid');
  });

  it('reports invalid JSON and non-objects as invalid plans', () => {
    expect(() => parsePlan('{')).toThrow(expect.objectContaining({ code: ErrorCode.PlanInvalid }));
    expect(() => validatePlan(null)).toThrow(expect.objectContaining({ code: ErrorCode.PlanInvalid }));
    expect(() => validatePlan([goodPlan()])).toThrow(expect.objectContaining({ code: ErrorCode.PlanInvalid }));
  });

  it('a uniform view uses full attention at step 0', () => {
    const v = uniformPlanView(3, 2, 'wars');
    expect(v.numLayers).toBe(2);
    expect(v.methodAt(0, 1)).toBe('full');
    expect(v.methodAt(2, 1)).toBe('wars');
    expect(v.methodAt(3, 0)).toBeUndefined();
    expect(v.methodAt(1, 2)).toBeUndefined();
  });
});

describe('version-1 plans', () => {
  /** What ditfa 0.1 wrote: one self-attention per block, one window. */
  const v1: PlanDocumentV1 = {
    format: 'ditfa-plan',
    version: 1,
    fingerprint: {
      model: { architecture: 'dit depth=3 hidden=64 heads=2 patch=2', weightsHash: 'sha256:def' },
      latent: { channels: 4, height: 8, width: 8 },
      steps: 2,
      sampler: 'ddim',
      guidance: 1.5,
      cfgOrder: 'cond-second',
      window: { kind: '1d', size: 2 },
    },
    threshold: { delta: 0.025, name: 'D1' },
    candidates: ['ast', 'wars+asc', 'wars', 'full+asc'],
    numBlocks: 3,
    steps: [
      [e('full', null, 1), e('full', null, 1), e('full', null, 1)],
      [e('ast', 0.004, 0), e('wars', 0.01, 0.43), e('full+asc', 0.02, 0.5)],
    ],
    totals: { attentionFlopsFraction: 0.655, searchSeconds: 3.25, blockEvaluations: 12 },
    createdAt: '2025-01-02T03:04:05.000Z',
    generator: 'ditfa 0.1.0',
  };

  /** The same plan in version 2, written out by hand. */
  const v2: PlanDocument = {
    format: 'ditfa-plan',
    version: 2,
    fingerprint: {
      model: { architecture: 'dit depth=3 hidden=64 heads=2 patch=2', weightsHash: 'sha256:def' },
      latent: { channels: 4, height: 8, width: 8 },
      steps: 2,
      sampler: 'ddim',
      guidance: 1.5,
      cfgOrder: 'cond-second',
      layers: [
        { id: '0.self', window: { kind: '1d', size: 2 } },
        { id: '1.self', window: { kind: '1d', size: 2 } },
        { id: '2.self', window: { kind: '1d', size: 2 } },
      ],
    },
    threshold: { delta: 0.025, name: 'D1' },
    candidates: ['ast', 'wars+asc', 'wars', 'full+asc'],
    steps: [
      [e('full', null, 1), e('full', null, 1), e('full', null, 1)],
      [e('ast', 0.004, 0), e('wars', 0.01, 0.43), e('full+asc', 0.02, 0.5)],
    ],
    totals: { attentionFlopsFraction: 0.655, searchSeconds: 3.25, layerEvaluations: 12 },
    createdAt: '2025-01-02T03:04:05.000Z',
    generator: 'ditfa 0.1.0',
  };

  it('are upgraded exactly by validatePlan, parsePlan and upgradePlanV1', () => {
    expect(validatePlan(clone(v1))).toEqual(v2);
    expect(validatePlan(clone(v1), { methods: paperLike })).toEqual(v2);
    expect(parsePlan(JSON.stringify(v1))).toEqual(v2);
    expect(upgradePlanV1(clone(v1))).toEqual(v2);
    const upgraded = validatePlan(clone(v1));
    expect('numBlocks' in upgraded).toBe(false);
    expect('window' in upgraded.fingerprint).toBe(false);
    expect('blockEvaluations' in upgraded.totals).toBe(false);
  });

  it('upgrade to valid version-2 documents that load again unchanged', () => {
    const upgraded = parsePlan(JSON.stringify(v1));
    expect(validatePlan(clone(upgraded))).toEqual(v2);
    expect(parsePlan(serializePlan(upgraded))).toEqual(v2);
    expect(schemaValid(clone(upgraded))).toBe(true);
    // the schema describes version 2 only
    expect(schemaValid(clone(v1))).toBe(false);
  });

  it('keep totals without a layer evaluation count as they are', () => {
    const { blockEvaluations: _dropped, ...totals } = v1.totals;
    expect(validatePlan({ ...clone(v1), totals }).totals).toEqual({ attentionFlopsFraction: 0.655, searchSeconds: 3.25 });
  });

  it('are checked as version 1 before the upgrade', () => {
    const bad = (f: (d: any) => void): unknown => {
      const d = clone(v1) as any;
      f(d);
      return d;
    };
    expect(issuesOf(bad((d) => delete d.numBlocks)).paths).toEqual(['numBlocks']);
    expect(issuesOf(bad((d) => d.steps[1].pop())).message).toContain('steps[1]: expected 3 blocks but received 2');
    expect(issuesOf(bad((d) => (d.fingerprint.window = { kind: '1d', size: 1.5 }))).paths).toEqual(['fingerprint.window.size']);
    expect(issuesOf(bad((d) => delete d.fingerprint.window)).paths).toEqual(['fingerprint.window']);
    expect(issuesOf(bad((d) => (d.steps[0][0].method = 'wars')), { methods: paperLike }).paths).toEqual(['steps[0][0].method']);
  });

  it('fit a model of one self layer per block with that window', () => {
    const layers = defineLayers([0, 1, 2].map((block) => ({ block, site: 'self', batch: 2, tokens: 16, heads: 2, headDim: 8, cfg: true, window: { kind: '1d', size: 2 } as const })));
    const expected: PlanFingerprint = { ...v2.fingerprint, layers: layers.map((l) => ({ id: l.id, window: l.window })) };
    expect(() => checkPlanFingerprint(parsePlan(JSON.stringify(v1)), expected)).not.toThrow();
  });
});

describe('plan fingerprints', () => {
  const mismatchOf = (expected: PlanFingerprint): PlanMismatchError => {
    try {
      checkPlanFingerprint(validatePlan(goodPlan()), expected);
    } catch (error) {
      return error as PlanMismatchError;
    }
    throw new Error('expected a PlanMismatchError');
  };
  const withLayers = (layers: PlanFingerprint['layers']): PlanFingerprint => ({ ...fingerprint, layers });

  it('accepts the fingerprint the plan was made for', () => {
    expect(() => checkPlanFingerprint(validatePlan(goodPlan()), clone(fingerprint))).not.toThrow();
    expect(diffFingerprints(fingerprint, clone(fingerprint))).toEqual([]);
  });

  it('refuses a plan made for something else and names every mismatch', () => {
    const error = mismatchOf({ ...fingerprint, steps: 20, latent: { ...fingerprint.latent, height: 16 } });
    expect(error).toBeInstanceOf(PlanMismatchError);
    expect(error.code).toBe(ErrorCode.PlanMismatch);
    expect(error.mismatches.map((m) => m.field).sort()).toEqual(['latent.height', 'steps']);
    expect(error.message).toContain('steps: the plan was made for 3 but this run uses 20');
    expect(mismatchOf({ ...fingerprint, model: { ...fingerprint.model, weightsHash: 'sha256:other' } }).message).toMatch(/model\.weightsHash/);
  });

  it('refuses a plan for another layer count, naming the count', () => {
    const error = mismatchOf(withLayers([...fingerprint.layers, { id: '1.cross', window: null }]));
    expect(error.code).toBe(ErrorCode.PlanMismatch);
    expect(error.mismatches).toEqual([{ field: 'layers (count)', plan: 3, expected: 4 }]);
    expect(error.message).toContain('layers (count): the plan was made for 3 but this run uses 4');
  });

  it('refuses a plan for other layers, naming the layer and the field', () => {
    const [a, b, c] = fingerprint.layers as [PlanLayer, PlanLayer, PlanLayer];
    expect(mismatchOf(withLayers([a, { ...b, id: '0.temporal' }, c])).mismatches).toEqual([{ field: 'layers[1].id', plan: '0.cross', expected: '0.temporal' }]);
    expect(mismatchOf(withLayers([a, { ...b, window: { kind: '1d', size: 4 } }, c])).mismatches).toEqual([
      { field: 'layers[1].window', plan: null, expected: { kind: '1d', size: 4 } },
    ]);
    expect(mismatchOf(withLayers([{ ...a, window: { kind: '1d', size: 3 } }, b, c])).mismatches).toEqual([{ field: 'layers[0].window.size', plan: 2, expected: 3 }]);
    expect(diffFingerprints(withLayers([a, b, { ...c, window: { kind: '2d', rows: 4, cols: 2, radius: 1 } }]), fingerprint).map((m) => m.field).sort()).toEqual([
      'layers[2].window.cols',
      'layers[2].window.rows',
    ]);
    // layers in another order are other layers
    expect(mismatchOf(withLayers([b, a, c])).mismatches.map((m) => m.field)).toEqual(['layers[0].id', 'layers[0].window', 'layers[1].id', 'layers[1].window']);
  });

  it('names the 2-D window field that differs', () => {
    const [a, , c] = fingerprint.layers;
    const error = mismatchOf(withLayers([a!, { id: '0.cross', window: null }, { ...c!, window: { kind: '2d', rows: 2, cols: 4, radius: 2 } }]));
    expect(error.mismatches).toEqual([{ field: 'layers[2].window.radius', plan: 1, expected: 2 }]);
    expect(error.message).toContain('layers[2].window.radius: the plan was made for 1 but this run uses 2');
  });
});
