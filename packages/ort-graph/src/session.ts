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
  /** Intra-op threads spin while waiting for work (onnxruntime's default: true). */
  readonly spinning?: boolean;
  /** Per-session CPU memory arena (onnxruntime's default: true). */
  readonly memArena?: boolean;
  /** Memory pattern planning (onnxruntime's default: true). */
  readonly memPattern?: boolean;
  /** Extra session config entries (`session.…` keys of onnxruntime's `onnxruntime_session_options_config_keys.h`). */
  readonly configEntries?: Readonly<Record<string, string>>;
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
      ...(options.memArena === undefined ? {} : { enableCpuMemArena: options.memArena }),
      ...(options.memPattern === undefined ? {} : { enableMemPattern: options.memPattern }),
      extra: flatExtra({
        ...(options.spinning === undefined ? {} : { 'session.intra_op.allow_spinning': options.spinning ? '1' : '0', 'session.inter_op.allow_spinning': options.spinning ? '1' : '0' }),
        ...options.configEntries,
      }),
    });
  } catch (cause) {
    throw new OrtSessionError('create a session', cause);
  }
}

/** onnxruntime-node joins nested `extra` keys with dots; a flat key with dots is nested here the same way. */
function flatExtra(entries: Readonly<Record<string, string>>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(entries)) {
    const parts = key.split('.');
    let node = root;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]!] = value;
  }
  return root;
}

/** A float32 ORT tensor over `data` (no copy). */
export function floatTensor(ort: OrtModule, data: Float32Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor('float32', data, dims);
}

/** An int64 ORT tensor. */
export function int64Tensor(ort: OrtModule, data: BigInt64Array, dims: readonly number[]): OrtTensor {
  return new ort.Tensor('int64', data, dims);
}
