import { backendRegistry, resolveBackendDetailed } from '@ditfa/core';
// Both backend packages imported, as an application with a GPU would.
import { CPU_BACKEND_PRIORITY, REFERENCE_BACKEND_PRIORITY, cpuBackendStatus } from '@ditfa/kernels-cpu';
import { describe, expect, it } from 'vitest';
import { CUDA_BACKEND_PRIORITY, cudaBackendStatus } from '../src/index.js';

describe('with @ditfa/kernels-cpu and @ditfa/kernels-cuda both imported', () => {
  it('ranks CUDA above the native CPU backend, and the CPU backend above the reference', () => {
    expect(CUDA_BACKEND_PRIORITY).toBeGreaterThan(CPU_BACKEND_PRIORITY);
    expect(CPU_BACKEND_PRIORITY).toBeGreaterThan(REFERENCE_BACKEND_PRIORITY);
    expect(backendRegistry.names()).toEqual(['cuda', 'cpu', 'reference']);
  });

  const cuda = cudaBackendStatus();
  const cpu = cpuBackendStatus();

  it.runIf(cuda.available)('resolves CUDA on a machine with a usable GPU', async () => {
    const { backend, failures } = await resolveBackendDetailed();
    expect(backend.name).toBe('cuda');
    expect(failures).toEqual([]);
  });

  it.runIf(!cuda.available)('resolves the next backend without a usable GPU, saying why CUDA was passed over', async () => {
    const { backend, failures } = await resolveBackendDetailed();
    expect(backend.name).toBe(cpu.available ? 'cpu' : 'reference');
    expect(failures[0]?.name).toBe('cuda');
    expect((failures[0]?.error as Error).message).toContain(cuda.reason!);
  });
});
