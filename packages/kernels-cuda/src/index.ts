/**
 * @ditfa/kernels-cuda — CUDA attention kernels behind core's KernelBackend contract. Importing this entry
 * registers the backend as `'cuda'` (priority {@link CUDA_BACKEND_PRIORITY}) in core's backend registry;
 * `@ditfa/kernels-cuda/base` exports the same API without registering. Importing never throws: without a
 * build, driver or GPU, resolution of `'cuda'` fails with the cause and a remedy, and
 * {@link cudaBackendStatus} says why.
 */
import { registerBackend } from '@ditfa/core';
import { createCudaBackend } from './base.js';

export * from './base.js';
export { NativeDtype, KernelPath, ADDON_ABI_VERSION, type BuildStatus, type NativeProbe } from './binding.js';

/**
 * Above the native CPU backend (`@ditfa/kernels-cpu` registers `'cpu'` at 100) and its reference
 * fallback (-100): with both packages imported, `resolveBackend()` tries CUDA first and, on a machine
 * without a usable GPU, falls back to the CPU backend (the pipeline's `backend` event says why).
 */
export const CUDA_BACKEND_PRIORITY = 200;

/** The factory registered under `'cuda'`: throws with cause and remedy when unavailable. */
export const cudaBackendFactory = (): ReturnType<typeof createCudaBackend> => createCudaBackend();

registerBackend('cuda', cudaBackendFactory, CUDA_BACKEND_PRIORITY);
