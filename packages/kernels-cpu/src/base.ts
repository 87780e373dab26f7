/**
 * Side-effect-free entry of @ditfa/kernels-cpu: creating the backend and reading its status register
 * nothing. `@ditfa/kernels-cpu` (index) registers the backend with core's registry on import.
 */
export {
  BF16_ERROR_BOUND,
  CPU_BACKEND_NAME,
  CPU_MAX_HEAD_DIM,
  CPU_MAX_TOKENS,
  CpuBackendUnavailableError,
  cpuBackendStatus,
  createCpuBackend,
  type CpuBackend,
  type CpuBackendOptions,
  type CpuBackendStatus,
  type FullWithResidualOptions,
} from './backend.js';
export { REBUILD_COMMAND } from './binding.js';
export { type CpuDenseKernels, type DensePath } from './dense.js';
