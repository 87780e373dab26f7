/**
 * @ditfa/kernels-cpu — native CPU attention kernels. Importing this entry registers two backends with
 * core's registry: `'cpu'` (priority {@link CPU_BACKEND_PRIORITY}) and core's reference backend under
 * `'reference'` (priority {@link REFERENCE_BACKEND_PRIORITY}), so `resolveBackend()` picks the native
 * kernels and falls back to the reference when the addon is unavailable. Import `@ditfa/kernels-cpu/base`
 * to use the backend without registering anything.
 */
import { REFERENCE_BACKEND_NAME, createReferenceBackend, registerBackend } from '@ditfa/core';
import { CPU_BACKEND_NAME, createCpuBackend } from './backend.js';

export * from './base.js';

/** Priority of the native CPU backend in core's registry. */
export const CPU_BACKEND_PRIORITY = 100;
/** Priority of the reference fallback registered here (core's own factory, so other packages may register it too). */
export const REFERENCE_BACKEND_PRIORITY = -100;

const cpuFactory = (): ReturnType<typeof createCpuBackend> => createCpuBackend();

registerBackend(CPU_BACKEND_NAME, cpuFactory, CPU_BACKEND_PRIORITY);
registerBackend(REFERENCE_BACKEND_NAME, createReferenceBackend, REFERENCE_BACKEND_PRIORITY);
