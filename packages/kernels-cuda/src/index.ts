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

/** Above the CPU backend, so a machine with a GPU picks it first. */
export const CUDA_BACKEND_PRIORITY = 20;

/** The factory registered under `'cuda'`: throws with cause and remedy when unavailable. */
export const cudaBackendFactory = (): ReturnType<typeof createCudaBackend> => createCudaBackend();

registerBackend('cuda', cudaBackendFactory, CUDA_BACKEND_PRIORITY);
