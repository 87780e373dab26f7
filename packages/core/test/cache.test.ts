import { describe, expect, it } from 'vitest';
import { CacheManager, ErrorCode, tensor, type CacheEvent } from '../src/index.js';

const t = (n: number) => tensor(new Float32Array(n), [n]);

describe('CacheManager', () => {
  it('accounts bytes exactly, including replacement and deletion, and tracks the peak', () => {
    const cache = new CacheManager();
    const b0 = cache.scope(0);
    const b1 = cache.scope(1);
    expect(b0.put('residual', t(10)).stored).toBe(true);
    expect(b1.put('residual', t(6)).stored).toBe(true);
    expect(b1.put('projected', t(4)).stored).toBe(true);
    expect(cache.currentBytes).toBe(4 * (10 + 6 + 4));
    // replacing an entry counts only the new tensor
    b0.put('residual', t(2));
    expect(cache.currentBytes).toBe(4 * (2 + 6 + 4));
    expect(cache.peakBytes).toBe(4 * 20);
    expect(b1.delete('projected')).toBe(true);
    expect(b1.delete('projected')).toBe(false);
    expect(cache.currentBytes).toBe(4 * 8);
    expect(cache.entries().reduce((s, e) => s + e.bytes, 0)).toBe(cache.currentBytes);
    expect(cache.entries()).toEqual([
      { layer: 0, kind: 'residual', bytes: 8 },
      { layer: 1, kind: 'residual', bytes: 24 },
    ]);
    expect(b1.layer).toBe(1);
    expect(b0.get('residual')?.data.length).toBe(2);
    expect(b1.has('projected')).toBe(false);
  });

  it('counts a view by its own bytes, not its buffer', () => {
    const cache = new CacheManager();
    const big = new Float32Array(100);
    cache.scope(0).put('k', tensor(big.subarray(10, 20), [10]));
    expect(cache.currentBytes).toBe(40);
  });

  it('refuses a put over the budget, keeps the old entry and reports it', () => {
    const events: CacheEvent[] = [];
    const cache = new CacheManager({ budgetBytes: 100, onEvent: (e) => events.push(e) });
    const s = cache.scope(3);
    expect(s.put('a', t(20))).toEqual({ stored: true, bytes: 80 });
    const refused = s.put('b', t(6));
    expect(refused).toMatchObject({ stored: false, reason: 'budget', budgetBytes: 100, wouldUseBytes: 104 });
    expect(s.has('b')).toBe(false);
    // replacing 'a' by something that fits is fine; a replacement that does not fit keeps the old one
    expect(s.put('a', t(25)).stored).toBe(true);
    expect(s.put('a', t(26)).stored).toBe(false);
    expect(s.get('a')?.data.length).toBe(25);
    expect(cache.currentBytes).toBe(100);
    expect(cache.stats().refusals).toBe(2);
    expect(events.filter((e) => e.type === 'cache-refused')).toHaveLength(2);
    expect(events[0]).toEqual({ type: 'cache-refused', layer: 3, kind: 'b', bytes: 24, budgetBytes: 100, wouldUseBytes: 104 });
  });

  it('resets between generations and makes old scopes stale', () => {
    const cache = new CacheManager();
    const s = cache.scope(0);
    s.put('x', t(4));
    cache.reset();
    expect(cache.currentBytes).toBe(0);
    expect(cache.peakBytes).toBe(0);
    expect(cache.generation).toBe(1);
    expect(() => s.get('x')).toThrow(expect.objectContaining({ code: ErrorCode.CacheStale }));
    expect(cache.scope(0).get('x')).toBeUndefined();
  });

  it('rejects bad arguments with codes', () => {
    expect(() => new CacheManager({ budgetBytes: -1 })).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    const cache = new CacheManager();
    expect(() => cache.scope(-1)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    expect(() => cache.scope(0).put('', t(1))).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    expect(() => cache.scope(0).put('x', [1, 2] as never)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
  });
});

describe('CacheOverlay', () => {
  it('reads through to the base and keeps writes to itself until commit', async () => {
    const { CacheOverlay } = await import('../src/index.js');
    const base = new CacheManager();
    base.scope(0).put('residual', t(4));
    const overlay = new CacheOverlay(base);
    const s = overlay.scope(0);
    expect(s.get('residual')?.data.length).toBe(4);
    s.put('residual', t(8));
    overlay.scope(1).put('projected', t(2));
    expect(s.get('residual')?.data.length).toBe(8);
    expect(base.scope(0).get('residual')?.data.length).toBe(4);
    expect(base.scope(1).has('projected')).toBe(false);
    expect(overlay.projectedBytes).toBe(4 * (8 + 2));
    overlay.commit([0]);
    expect(base.scope(0).get('residual')?.data.length).toBe(8);
    expect(base.scope(1).has('projected')).toBe(false);
    overlay.discard();
    expect(overlay.scope(1).has('projected')).toBe(false);
    expect(base.currentBytes).toBe(32);
  });

  it('records deletions and checks the base budget as if committed', async () => {
    const { CacheOverlay } = await import('../src/index.js');
    const base = new CacheManager({ budgetBytes: 40 });
    base.scope(0).put('a', t(6));
    const overlay = new CacheOverlay(base);
    expect(overlay.scope(1).put('b', t(5)).stored).toBe(false);
    expect(overlay.scope(0).delete('a')).toBe(true);
    expect(overlay.scope(0).has('a')).toBe(false);
    expect(overlay.scope(1).put('b', t(10)).stored).toBe(true);
    overlay.commit();
    expect(base.scope(0).has('a')).toBe(false);
    expect(base.currentBytes).toBe(40);
  });
});
