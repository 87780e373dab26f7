import { describe, expect, it } from 'vitest';
import {
  BackendRegistry,
  ErrorCode,
  KernelRegistry,
  StrategyRegistry,
  createReferenceBackend,
  defineStrategy,
  describeFailures,
  strategySet,
  type KernelBackend,
} from '../src/index.js';

const strategy = (name: string) =>
  defineStrategy({ name, needs: () => 'all', run: async () => ({ kind: 'projected', output: null as never }), flops: () => 0 });

describe('strategy registry', () => {
  it('ignores the same object twice and rejects a different one under a taken name', () => {
    const reg = new StrategyRegistry();
    const a = strategy('wars');
    reg.register(a);
    reg.register(a);
    expect(reg.names()).toEqual(['wars']);
    expect(() => reg.register(strategy('wars'))).toThrow(expect.objectContaining({ code: ErrorCode.StrategyConflict, name: 'StrategyConflictError' }));
    expect(reg.get('wars')).toBe(a);
  });

  it('lets a higher priority replace and ignores a lower one; lists by priority', () => {
    const reg = new StrategyRegistry();
    const low = strategy('ast');
    const high = strategy('ast');
    reg.register(low, 0);
    reg.register(high, 5);
    expect(reg.get('ast')).toBe(high);
    reg.register(strategy('ast'), 1);
    expect(reg.get('ast')).toBe(high);
    reg.register(strategy('full'), 10);
    expect(reg.names()).toEqual(['full', 'ast']);
  });

  it('validates the shape of what is registered', () => {
    const reg = new StrategyRegistry();
    expect(() => reg.register({ name: 'x' } as never)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidStrategy }));
    expect(() => reg.register({ ...strategy('x'), name: 'Bad Name' })).toThrow(expect.objectContaining({ code: ErrorCode.InvalidStrategy }));
    expect(() => reg.register({ ...strategy('x'), caches: {} } as never)).toThrow(/caches\.reads to be an array of cache kinds/);
    expect(() => reg.register({ ...strategy('x'), caches: undefined } as never)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidStrategy }));
    expect(() => reg.register({ ...strategy('x'), caches: { reads: [], writes: [''], observes: [] } })).toThrow(/caches\.writes/);
    expect(() => reg.register({ ...strategy('x'), caches: { reads: [], writes: [], observes: [3] } } as never)).toThrow(/caches\.observes/);
    expect(() => reg.register({ ...strategy('x'), appliesTo: true } as never)).toThrow(/appliesTo to be a function/);
    expect(() => reg.register({ ...strategy('x'), flops: undefined } as never)).toThrow(/flops\(\) function/);
    expect(() => reg.require('nope')).toThrow(expect.objectContaining({ code: ErrorCode.StrategyNotFound }));
  });

  it('defineStrategy fills the cache lists, copies and freezes them', () => {
    const reads = ['residual'];
    const s = defineStrategy({ name: 'wars', caches: { reads }, needs: () => 'all', run: async () => ({ kind: 'projected', output: null as never }), flops: () => 0 });
    expect(s.caches).toEqual({ reads: ['residual'], writes: [], observes: [] });
    reads.push('other');
    expect(s.caches.reads).toEqual(['residual']);
    expect(Object.isFrozen(s) && Object.isFrozen(s.caches) && Object.isFrozen(s.caches.reads)).toBe(true);
    expect(strategy('plain').caches).toEqual({ reads: [], writes: [], observes: [] });
    expect(() => defineStrategy({ ...strategy('y'), caches: { reads: [''] } })).toThrow(expect.objectContaining({ code: ErrorCode.InvalidStrategy }));
  });

  it('has a side-effect-free path that touches no global', () => {
    const set = strategySet([strategy('wars'), strategy('ast')]);
    expect(set.names().sort()).toEqual(['ast', 'wars']);
    expect(() => strategySet([strategy('wars'), strategy('wars')])).toThrow(expect.objectContaining({ code: ErrorCode.StrategyConflict }));
  });
});

describe('backend registry', () => {
  it('resolves by priority and caches the instance', async () => {
    const reg = new BackendRegistry();
    let made = 0;
    reg.register('reference', () => createReferenceBackend(), -10);
    reg.register('fast', () => ({ ...createReferenceBackend(), name: 'fast', made: ++made }) as KernelBackend, 10);
    expect(reg.names()).toEqual(['fast', 'reference']);
    expect((await reg.resolve()).name).toBe('fast');
    await reg.resolve();
    expect(made).toBe(1);
  });

  it('falls back past a failing backend', async () => {
    const reg = new BackendRegistry();
    reg.register('native', () => {
      throw new Error('addon not built; run pnpm rebuild');
    }, 10);
    reg.register('reference', createReferenceBackend, 0);
    expect((await reg.resolve()).name).toBe('reference');
  });

  it('says which backends it passed over and why (resolveDetailed)', async () => {
    const reg = new BackendRegistry();
    const cause = new Error('the addon file build/Release/x.node does not exist\nrebuild it');
    reg.register('native', () => {
      throw cause;
    }, 10);
    reg.register('reference', createReferenceBackend, 0);
    const first = await reg.resolveDetailed();
    expect(first.backend.name).toBe('reference');
    expect(first.failures).toEqual([{ name: 'native', error: cause }]);
    expect(describeFailures(first.failures)).toBe('  - native: the addon file build/Release/x.node does not exist\n    rebuild it');
    // the first choice working: nothing passed over
    expect((await reg.resolveDetailed(['reference'])).failures).toEqual([]);
  });

  it('throws one error listing every failure when none works', async () => {
    const reg = new BackendRegistry();
    reg.register('cpu', () => {
      throw new Error('addon missing: run `pnpm --filter @ditfa/kernels-cpu rebuild`');
    }, 5);
    reg.register('cuda', async () => {
      throw new Error('no CUDA driver');
    }, 10);
    let error: any;
    try {
      await reg.resolve();
    } catch (e) {
      error = e;
    }
    expect(error?.code).toBe(ErrorCode.BackendUnavailable);
    expect(error.failures.map((f: { name: string }) => f.name)).toEqual(['cuda', 'cpu']);
    expect(error.message).toContain('cuda: no CUDA driver');
    expect(error.message).toContain('cpu: addon missing');
    await expect(reg.resolve(['gpu9'])).rejects.toThrow(/no backend named "gpu9"/);
    await expect(new BackendRegistry().resolve()).rejects.toMatchObject({ code: ErrorCode.BackendUnavailable });
  });

  it('rejects conflicts and ignores the same factory twice', () => {
    const reg = new BackendRegistry();
    reg.register('reference', createReferenceBackend);
    reg.register('reference', createReferenceBackend);
    expect(() => reg.register('reference', () => createReferenceBackend())).toThrow(expect.objectContaining({ code: ErrorCode.BackendConflict }));
    expect(() => reg.register('', createReferenceBackend)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
  });
});

describe('kernel table', () => {
  it('lets a plugin add a kernel for a backend and run it, with a fallback backend', async () => {
    const table = new KernelRegistry();
    const backend = createReferenceBackend();
    const twice = (_b: KernelBackend, x: number) => x * 2;
    table.register({ kernelName: 'double', backendName: 'reference', kernelFunc: twice });
    table.register({ kernelName: 'double', backendName: 'reference', kernelFunc: twice });
    expect(await table.run(backend, 'double', 21)).toBe(42);
    const other = { ...backend, name: 'cpu' };
    await expect(table.run(other, 'double', 1)).rejects.toMatchObject({ code: ErrorCode.KernelNotFound });
    await expect(table.run(other, 'double', 1)).rejects.toThrow(/registered for: reference/);
    expect(await table.run(other, 'double', 2, 'reference')).toBe(4);
    expect(() => table.register({ kernelName: 'double', backendName: 'reference', kernelFunc: (_b, x: number) => x })).toThrow(
      expect.objectContaining({ code: ErrorCode.KernelConflict }),
    );
  });
});
