import { PLAN_FORMAT, PLAN_VERSION } from './plan.js';

/** A layer's window: a 1-D band or a 2-D neighbourhood (`WindowSpec`). */
const windowShapes = [
  {
    type: 'object',
    required: ['kind', 'size'],
    properties: { kind: { const: '1d' }, size: { type: 'integer', minimum: 0 } },
  },
  {
    type: 'object',
    required: ['kind', 'rows', 'cols', 'radius'],
    properties: {
      kind: { const: '2d' },
      rows: { type: 'integer', minimum: 1 },
      cols: { type: 'integer', minimum: 1 },
      radius: { type: 'integer', minimum: 0 },
    },
  },
] as const;

/** Method names: lowercase words joined by `+` (`wars+asc`), as `validatePlan` checks them without a strategy lookup. */
const methodName = { type: 'string', pattern: '^[a-z][a-z0-9._-]*(\\+[a-z][a-z0-9._-]*)*$' } as const;

/**
 * JSON Schema (draft 2020-12) of a plan document of format version 2, for tools outside TypeScript.
 * It describes version 2 only: version-1 documents (`numBlocks`, one `fingerprint.window`,
 * `totals.blockEvaluations`) fail it, but `validatePlan` and `parsePlan` still accept them and upgrade
 * them to version 2 (`upgradePlanV1`), so re-serialize an old plan to get a document this schema accepts.
 *
 * `validatePlan` checks everything this schema says plus what a schema cannot: the step count against
 * `fingerprint.steps`, one entry per layer of `fingerprint.layers` in every step, unique layer ids, and,
 * given the strategies, method names against them and that no step-0 method reads a cache.
 */
export const planJsonSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://ditfa.dev/schemas/plan-v2.json',
  title: 'ditfa attention compression plan (format version 2)',
  type: 'object',
  required: ['format', 'version', 'fingerprint', 'threshold', 'candidates', 'steps', 'totals'],
  properties: {
    format: { const: PLAN_FORMAT },
    version: { const: PLAN_VERSION },
    fingerprint: {
      type: 'object',
      required: ['model', 'latent', 'steps', 'sampler', 'guidance', 'cfgOrder', 'layers'],
      properties: {
        model: {
          type: 'object',
          required: ['architecture', 'weightsHash'],
          properties: { architecture: { type: 'string' }, weightsHash: { type: 'string' } },
        },
        latent: {
          type: 'object',
          required: ['channels', 'height', 'width'],
          properties: {
            channels: { type: 'integer', minimum: 1 },
            height: { type: 'integer', minimum: 1 },
            width: { type: 'integer', minimum: 1 },
            frames: { type: 'integer', minimum: 1 },
          },
        },
        steps: { type: 'integer', minimum: 1 },
        sampler: { type: 'string', minLength: 1 },
        guidance: { type: ['number', 'null'] },
        cfgOrder: { enum: ['cond-first', 'cond-second', 'none'] },
        layers: {
          description: 'The attention layers in model order; steps[s][j] decides layers[j]. Ids are unique (validatePlan checks it).',
          type: 'array',
          minItems: 1,
          items: {
            type: 'object',
            required: ['id', 'window'],
            properties: {
              id: { type: 'string', pattern: '^\\d+\\.[a-z][a-z0-9_-]*$', description: '<block>.<site>, e.g. 3.self' },
              window: { oneOf: [...windowShapes, { type: 'null' }] },
            },
          },
        },
      },
    },
    threshold: {
      type: 'object',
      required: ['delta'],
      properties: { delta: { type: 'number', minimum: 0 }, name: { type: 'string' } },
    },
    candidates: { type: 'array', items: methodName },
    steps: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'array',
        items: {
          type: 'object',
          required: ['method', 'loss', 'flopsFraction'],
          properties: {
            method: methodName,
            loss: { type: ['number', 'null'], minimum: 0 },
            flopsFraction: { type: 'number', minimum: 0 },
          },
        },
      },
    },
    totals: {
      type: 'object',
      required: ['attentionFlopsFraction'],
      properties: {
        attentionFlopsFraction: { type: 'number', minimum: 0 },
        searchSeconds: { type: 'number', minimum: 0 },
        layerEvaluations: { type: 'integer', minimum: 0 },
      },
    },
    createdAt: { type: 'string' },
    generator: { type: 'string' },
  },
} as const;
