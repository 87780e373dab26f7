import type { BackendCapabilities, KernelBackend } from '../kernel-backend.js';
import {
  referenceAttention,
  referenceFullWithResidual,
  referenceWindowAttention,
  referenceWindowWithResidual,
} from './attention.js';

export const REFERENCE_BACKEND_NAME = 'reference';

const capabilities: BackendCapabilities = Object.freeze({
  device: 'js',
  computeDtypes: Object.freeze(['fp32'] as const),
  maxHeadDim: Number.MAX_SAFE_INTEGER,
  windows: Object.freeze(['1d', '2d'] as const),
  threads: 1,
  features: Object.freeze([]),
  offThread: false,
});

/**
 * The TypeScript reference backend. It computes in float64 internally, so `compute: 'bf16'` is
 * accepted and answered at full precision (an upper bound on what a bf16 kernel should reach).
 */
export function createReferenceBackend(): KernelBackend {
  return {
    name: REFERENCE_BACKEND_NAME,
    capabilities: () => capabilities,
    attention: async (q, k, v, options) => referenceAttention(q, k, v, options),
    windowAttention: async (q, k, v, window, options) => referenceWindowAttention(q, k, v, window, options),
    fullWithResidual: async (q, k, v, window, options) => referenceFullWithResidual(q, k, v, window, options),
    windowWithResidual: async (q, k, v, window, residual, options) => referenceWindowWithResidual(q, k, v, window, residual, options),
  };
}
