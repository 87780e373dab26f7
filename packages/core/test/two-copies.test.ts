import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ErrorCode, StrategyRegistry, defineStrategy } from '../src/index.js';
import { REGISTRY_KEY, sharedRegistry } from '../src/shared-registry.js';

/**
 * Two copies of @ditfa/core in one process: the built dist, and a copy of it under another path (what a
 * plugin linked from a folder or an older pin brings). Each scenario runs in its own Node process, so
 * its `globalThis` starts empty, with real ESM loading (two URLs, two module instances).
 */
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist', 'index.js');

function secondCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ditfa-core-copy-'));
  cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: '@ditfa/core', version: '0.0.0-copy', type: 'module' }));
  return join(dir, 'dist', 'index.js');
}

function run(script: string): Record<string, unknown> {
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`the scenario failed (${result.status}):\n${result.stderr}`);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

const strategySource = `({ name: 'plugin', needs: () => 'all', run: async () => ({ kind: 'projected', output: null }), flops: () => 0 })`;

describe.skipIf(!existsSync(dist))('two copies of core in one process', () => {
  it('share one set of registries: what one copy registers, the other resolves', () => {
    const copy = secondCopy();
    const out = run(`
      const a = await import(${JSON.stringify(pathToFileURL(dist).href)});
      const b = await import(${JSON.stringify(pathToFileURL(copy).href)});
      const out = { distinct: a.StrategyRegistry !== b.StrategyRegistry };
      const s = b.defineStrategy(${strategySource});
      b.registerStrategy(s);
      out.strategySeenByA = a.strategyRegistry.get('plugin') === s;
      out.sameRegistry = a.strategyRegistry === b.strategyRegistry && a.backendRegistry === b.backendRegistry && a.kernelRegistry === b.kernelRegistry;
      b.registerBackend('plugin-backend', () => ({ ...b.createReferenceBackend(), name: 'plugin-backend' }), 5);
      out.resolvedByA = (await a.resolveBackend()).name;
      a.registerKernel({ kernelName: 'double', backendName: 'plugin-backend', kernelFunc: (_b, x) => 2 * x });
      out.kernelByB = await b.runKernel(await b.resolveBackend(), 'double', 21);
      out.copies = a.coreCopies();
      const e = await a.resolveBackend(['missing']).catch((e) => e);
      out.errorIsB = e instanceof b.DitfaError;
      out.errorCode = e.code;
      process.stdout.write(JSON.stringify(out));
    `);
    expect(out.distinct).toBe(true);
    expect(out.strategySeenByA).toBe(true);
    expect(out.sameRegistry).toBe(true);
    expect(out.resolvedByA).toBe('plugin-backend');
    expect(out.kernelByB).toBe(42);
    expect(out.copies).toEqual([pathToFileURL(join(root, 'dist', 'shared-registry.js')).href, pathToFileURL(join(dirname(copy), 'shared-registry.js')).href]);
    expect(out.errorIsB).toBe(true);
    expect(out.errorCode).toBe(ErrorCode.BackendUnavailable);
  });

  it('an incompatible copy fails at its first registration with a coded error naming both copies, never silently', () => {
    const old = 'file:///somewhere/node_modules/@ditfa/core/dist/shared-registry.js';
    const out = run(`
      // what an incompatible older copy left: a strategy registry without list() or require()
      globalThis[Symbol.for(${JSON.stringify(REGISTRY_KEY.description)})] = {
        layout: 1, copies: [${JSON.stringify(old)}],
        registries: { strategies: { owner: ${JSON.stringify(old)}, value: { register() {}, unregister() {}, get() {}, names() { return []; } } } },
      };
      const a = await import(${JSON.stringify(pathToFileURL(dist).href)});
      const out = { imported: true };
      try { a.registerStrategy(a.defineStrategy(${strategySource})); } catch (e) { out.error = { code: e.code, name: e.name, message: e.message, copies: e.copies }; }
      // the registries that are compatible are shared as usual
      a.registerBackend('x', () => a.createReferenceBackend());
      out.backends = a.backendRegistry.names();
      process.stdout.write(JSON.stringify(out));
    `);
    expect(out.imported).toBe(true);
    const error = out.error as { code: string; name: string; message: string; copies: string[] };
    expect(error.code).toBe(ErrorCode.CoreConflict);
    expect(error.name).toBe('CoreConflictError');
    expect(error.message).toContain(old);
    expect(error.message).toContain(pathToFileURL(join(root, 'dist', 'shared-registry.js')).href);
    expect(error.message).toContain('lacks require, list');
    expect(error.copies).toEqual([old, pathToFileURL(join(root, 'dist', 'shared-registry.js')).href]);
    expect(out.backends).toEqual(['x']);
  });
});

describe('sharedRegistry', () => {
  const methods = ['register', 'unregister', 'get', 'require', 'names', 'list'];

  it('makes the registry once per scope and hands the same one to the next copy', () => {
    const scope = {};
    const first = sharedRegistry('strategies', () => new StrategyRegistry(), methods, scope, 'file:///a/shared-registry.js');
    const second = sharedRegistry('strategies', () => new StrategyRegistry(), methods, scope, 'file:///b/shared-registry.js');
    expect(second).toBe(first);
    const s = defineStrategy({ name: 'x', needs: () => 'all', run: async () => ({ kind: 'projected', output: null as never }), flops: () => 0 });
    second.register(s);
    expect(first.get('x')).toBe(s);
  });

  it('refuses a holder of another layout with a coded error at use, not at creation', () => {
    const scope = { [REGISTRY_KEY]: { layout: 2, copies: [], registries: {} } };
    const reg = sharedRegistry('strategies', () => new StrategyRegistry(), methods, scope, 'file:///b/shared-registry.js');
    expect(() => reg.names()).toThrow(expect.objectContaining({ code: ErrorCode.CoreConflict, message: expect.stringContaining('layout 2') }));
  });
});
