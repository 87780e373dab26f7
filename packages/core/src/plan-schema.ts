import { PLAN_FORMAT, PLAN_VERSION } from './plan.js';

/**
 * JSON Schema (draft 2020-12) of a plan document, for tools outside TypeScript. `validatePlan` checks
 * everything this schema says plus what a schema cannot: the step count against the fingerprint, the
 * block count of every step, and method names against the registered strategies.
 */
export const planJsonSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://ditfa.dev/schemas/plan-v1.json',
  title: 'ditfa attention compression plan',
  type: 'object',
  required: ['format', 'version', 'fingerprint', 'threshold', 'candidates', 'numBlocks', 'steps', 'totals'],
  properties: {
    format: { const: PLAN_FORMAT },
    version: { const: PLAN_VERSION },
    fingerprint: {
      type: 'object',
      required: ['model', 'latent', 'steps', 'sampler', 'guidance', 'cfgOrder', 'window'],
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
        window: {
          oneOf: [
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
          ],
        },
      },
    },
    threshold: {
      type: 'object',
      required: ['delta'],
      properties: { delta: { type: 'number', minimum: 0 }, name: { type: 'string' } },
    },
    candidates: { type: 'array', items: { type: 'string', minLength: 1 } },
    numBlocks: { type: 'integer', minimum: 1 },
    steps: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'array',
        items: {
          type: 'object',
          required: ['method', 'loss', 'flopsFraction'],
          properties: {
            method: { type: 'string', minLength: 1 },
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
        blockEvaluations: { type: 'integer', minimum: 0 },
      },
    },
    createdAt: { type: 'string' },
    generator: { type: 'string' },
  },
} as const;
