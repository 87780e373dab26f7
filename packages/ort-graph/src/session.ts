import { DitfaError } from '@ditfa/core';
import type * as Ort from 'onnxruntime-node';

/**
 * onnxruntime-node, loaded on first use (never at import: a missing or broken native binding becomes a
 * coded {@link OrtUnavailableError} with its cause, thrown only to the caller that needs a session).
 */

export type OrtModule = typeof Ort;
export type OrtSession = Ort.InferenceSession;
export type OrtTensor = Ort.Tensor;

export class OrtUnavailableError extends DitfaError {
  constructor(cause: unknown) {
    super(
      'ERR_DITFA_ORT_UNAVAILABLE',
      `Expected onnxruntime-node to load but it failed: ${cause instanceof Error ? cause.message : String(cause)}. ` +
        'Reinstall the workspace (pnpm install); the CPU binary ships inside the npm package.',
      { cause },
    );
  }
}

export class OrtSessionError extends DitfaError {
  constructor(what: string, cause: unknown) {
    super('ERR_DITFA_ORT_SESSION', `Expected onnxruntime to ${what} but it failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

let ortPromise: Promise<OrtModule> | undefined;

/** The onnxruntime-node module (loaded once). */
export function loadOrt(): Promise<OrtModule> {
  ortPromise ??= import('onnxruntime-node').then(
    (m) => ((m as unknown as { default?: OrtModule }).default ?? m) as OrtModule,
    (cause: unknown) => {
      ortPromise = undefined;
      throw new OrtUnavailableError(cause);
    },
  );
  return ortPromise;
}

export interface SessionOptions {
  /** Intra-op threads (0 = onnxruntime's default, one per core). */
  readonly threads?: number;
  /** Graph optimisation level (default `'all'`). */
  readonly optimization?: 'disabled' | 'basic' | 'extended' | 'all';
}

/** Creates a CPU session from model bytes. */
export async function createSession(model: Uint8Array, options: SessionOptions = {}): Promise<OrtSession> {
  const ort = await loadOrt();
  try {
    return await ort.InferenceSession.create(model, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: options.optimization ?? 'all',
      intraOpNumThreads: options.threads ?? 0,
      interOpNumThreads: 1,
      executionMode: 'sequential',
    });
  } catch (cause) {
    throw new OrtSessionError('create a session', cause);
  }
}

/** A float32 ORT tensor over `data` (no copy). */
export function floatTensor(ort: OrtModule, data: Float32Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor('float32', data, dims);
}

/** An int64 ORT tensor. */
export function int64Tensor(ort: OrtModule, data: BigInt64Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor('int64', data, dims);
}
