import { createReferenceBackend, registerBackend } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { type PipelineEvent, createPipeline } from '../src/index.js';
import { createGridModel } from '../src/testing/index.js';

// This file's registry (vitest isolates files): a native backend that did not build ranks above the reference.
const cause = 'the addon file build/Release/native.node does not exist (the install step did not build it)\nrebuild it with `npm run build:native`';
registerBackend('native', () => {
  throw new Error(cause);
}, 100);
registerBackend('reference', createReferenceBackend, -100);

const request = { classLabels: [2], seed: 1, steps: 2, images: false };

describe('the backend event', () => {
  it('names the backend used and says why the ones ranked above it were passed over', async () => {
    const events: PipelineEvent[] = [];
    const pipe = createPipeline(createGridModel({ blocks: 1, height: 2, width: 3, heads: 1, headDim: 4 }), { onEvent: (e) => events.push(e) });
    await pipe.generate(request);
    await pipe.generate(request);
    const backend = events.filter((e) => e.type === 'backend');
    expect(backend).toEqual([
      { type: 'backend', name: 'reference', fallbackReason: `Using the "reference" kernel backend because:\n  - native: ${cause.replace('\n', '\n    ')}` },
    ]);
  });

  it('carries no reason when the first choice works', async () => {
    const events: PipelineEvent[] = [];
    registerBackend('working', () => ({ ...createReferenceBackend(), name: 'working' }), 200);
    await createPipeline(createGridModel({ blocks: 1, height: 2, width: 3, heads: 1, headDim: 4 }), { onEvent: (e) => events.push(e) }).generate(request);
    expect(events.filter((e) => e.type === 'backend')).toEqual([{ type: 'backend', name: 'working' }]);
  });
});
