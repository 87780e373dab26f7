import Ajv2020 from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  PLAN_VERSION,
  checkPlanFingerprint,
  parsePlan,
  planJsonSchema,
  planView,
  serializePlan,
  strategySet,
  defineStrategy,
  uniformPlanView,
  validatePlan,
  type PlanDocument,
  type PlanFingerprint,
} from '../src/index.js';

const fingerprint: PlanFingerprint = {
  model: { architecture: 'dit depth=2 hidden=64 heads=2 patch=2', weightsHash: 'sha256:abc' },
  latent: { channels: 4, height: 8, width: 8 },
  steps: 3,
  sampler: 'dpm-solver++2m',
  guidance: 4,
  cfgOrder: 'cond-first',
  window: { kind: '1d', size: 2 },
};

function goodPlan(): PlanDocument {
  const e = (method: string, loss: number | null, flopsFraction: number) => ({ method, loss, flopsFraction });
  return {
    format: 'ditfa-plan',
    version: PLAN_VERSION,
    fingerprint,
    threshold: { delta: 0.05, name: 'D2' },
    candidates: ['ast', 'wars+asc', 'wars', 'full+asc'],
    numBlocks: 2,
    steps: [
      [e('full', null, 1), e('full', null, 1)],
      [e('ast', 0.01, 0), e('wars', 0.02, 0.4)],
      [e('wars+asc', 0.03, 0.2), e('full+asc', 0.01, 0.5)],
    ],
    totals: { attentionFlopsFraction: 0.52, searchSeconds: 1.5, blockEvaluations: 20 },
  };
}

const mutate = (f: (d: any) => void): unknown => {
  const d = JSON.parse(JSON.stringify(goodPlan()));
  f(d);
  return d;
};

const ajv = new Ajv2020.default({ allErrors: true, strict: false });
const schemaValid = ajv.compile(planJsonSchema);

describe('plan documents', () => {
  it('accepts a good document and round-trips it through JSON', () => {
    const plan = validatePlan(goodPlan());
    expect(parsePlan(serializePlan(plan))).toEqual(plan);
    expect(schemaValid(goodPlan())).toBe(true);
    const view = planView(plan);
    expect(view.methodAt(1, 0)).toBe('ast');
    expect(view.methodAt(3, 0)).toBeUndefined();
  });

  const bad: Array<[string, unknown, string, boolean]> = [
    ['wrong version', mutate((d) => (d.version = 99)), 'version', true],
    ['wrong format', mutate((d) => (d.format = 'other')), 'format', true],
    ['unknown method', mutate((d) => (d.steps[1][0].method = 'magic')), 'steps[1][0].method', false],
    ['missing steps', mutate((d) => d.steps.pop()), 'steps', false],
    ['missing block', mutate((d) => d.steps[2].pop()), 'steps[2]', false],
    ['ast at step 0', mutate((d) => (d.steps[0][1].method = 'ast')), 'steps[0][1].method', false],
    ['negative loss', mutate((d) => (d.steps[1][1].loss = -1)), 'steps[1][1].loss', true],
    ['bad window', mutate((d) => (d.fingerprint.window = { kind: '1d', size: -1 })), 'fingerprint.window.size', true],
    ['bad cfg order', mutate((d) => (d.fingerprint.cfgOrder = 'first')), 'fingerprint.cfgOrder', true],
    ['missing fingerprint', mutate((d) => delete d.fingerprint), 'fingerprint', true],
    ['missing totals', mutate((d) => delete d.totals), 'totals.attentionFlopsFraction', true],
  ];

  it.each(bad)('rejects a document with %s, naming the field', (_name, doc, path, schemaCatches) => {
    let error: any;
    try {
      validatePlan(doc);
    } catch (e) {
      error = e;
    }
    expect(error?.code).toBe(ErrorCode.PlanInvalid);
    expect(error.issues.map((i: { path: string }) => i.path)).toContain(path);
    expect(error.message).toContain(path);
    // the JSON schema agrees wherever a schema can express the rule
    if (schemaCatches) expect(schemaValid(doc)).toBe(false);
  });

  it('says what version it expected', () => {
    expect(() => validatePlan(mutate((d) => (d.version = 99)))).toThrow(/expected format version 1 but received 99 \(number\)/);
  });

  it('accepts plugin methods when told about them', () => {
    const doc = mutate((d) => (d.steps[1][0].method = 'dilated'));
    expect(() => validatePlan(doc)).toThrow(expect.objectContaining({ code: ErrorCode.PlanInvalid }));
    expect(() => validatePlan(doc, { methods: ['dilated'] })).not.toThrow();
    const dilated = defineStrategy({ name: 'dilated', needs: () => 'all', run: async () => ({ kind: 'projected', output: null as never }), flops: () => 0 });
    expect(() => validatePlan(doc, { methods: strategySet([dilated]) })).not.toThrow();
  });

  it('reports invalid JSON as an invalid plan', () => {
    expect(() => parsePlan('{')).toThrow(expect.objectContaining({ code: ErrorCode.PlanInvalid }));
    expect(() => validatePlan(null)).toThrow(expect.objectContaining({ code: ErrorCode.PlanInvalid }));
  });

  it('refuses a plan made for something else and names every mismatch', () => {
    const plan = validatePlan(goodPlan());
    expect(() => checkPlanFingerprint(plan, fingerprint)).not.toThrow();
    let error: any;
    try {
      checkPlanFingerprint(plan, { ...fingerprint, steps: 20, latent: { ...fingerprint.latent, height: 16 }, window: { kind: '1d', size: 4 } });
    } catch (e) {
      error = e;
    }
    expect(error?.code).toBe(ErrorCode.PlanMismatch);
    expect(error.mismatches.map((m: { field: string }) => m.field).sort()).toEqual(['latent.height', 'steps', 'window.size']);
    expect(error.message).toContain('steps: the plan was made for 3 but this run uses 20');
    expect(() => checkPlanFingerprint(plan, { ...fingerprint, model: { ...fingerprint.model, weightsHash: 'sha256:other' } })).toThrow(
      /model\.weightsHash/,
    );
  });

  it('a uniform view uses full attention at step 0', () => {
    const v = uniformPlanView(3, 2, 'wars');
    expect(v.methodAt(0, 1)).toBe('full');
    expect(v.methodAt(2, 1)).toBe('wars');
    expect(v.methodAt(3, 0)).toBeUndefined();
  });
});

describe('step 0 rules from traits', () => {
  it('refuses a plugin method that consumes a residual at step 0 when the strategies are known', () => {
    const reader = defineStrategy({ name: 'sparse-reader', traits: { consumesResidual: true }, needs: () => 'all', run: async () => ({ kind: 'projected', output: null as never }), flops: () => 0 });
    const doc = mutate((d) => (d.steps[0][0].method = 'sparse-reader'));
    expect(() => validatePlan(doc, { methods: strategySet([reader]) })).toThrow(/step 0 must compute attention/);
    expect(() => validatePlan(doc, { methods: ['sparse-reader'] })).not.toThrow();
  });
});
