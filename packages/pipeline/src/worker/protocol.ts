import { AbortedError, DitfaError, ErrorCode, isDitfaError } from '@ditfa/core';

/**
 * What crosses between a {@link WorkerPipeline} and its worker thread: plain data only. Errors travel as
 * {@link SerializedError} and are re-created on the other side with their name, code, message, stack,
 * extra fields and cause; tensors' buffers are transferred (moved), not copied.
 */

/** A module export to call in the worker: `(await import(module))[export](...args)`. */
export interface ModuleRef {
  /** A file URL, an absolute path, a relative path or a package specifier (resolved from `parentURL`). */
  readonly module: string | URL;
  /** The export to call (default `'default'`). */
  readonly export?: string;
  /** Arguments, structured-cloneable (plain data). */
  readonly args?: readonly unknown[];
}

/** A {@link ModuleRef} with its module resolved to a URL (what the worker receives). */
export interface ResolvedRef {
  readonly url: string;
  readonly export: string;
  readonly args: readonly unknown[];
}

export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
  readonly code?: string;
  /** Made by a ditfa error class (of any copy of core). */
  readonly ditfa: boolean;
  /** Other own fields that can be cloned (a fault's `step` and `layer`, a mismatch list, …). */
  readonly fields: Record<string, unknown>;
  readonly cause?: SerializedError | { readonly value: unknown };
}

/** A call the main thread makes; `flag` is a shared word the worker polls between attention layers (1 = aborted). */
export type Request =
  | { readonly type: 'call'; readonly id: number; readonly method: 'generate' | 'fingerprint' | 'layers' | 'backend' | 'calibrate'; readonly args: readonly unknown[]; readonly flag?: Int32Array }
  | { readonly type: 'abort'; readonly id: number }
  | { readonly type: 'dispose' };

export type Reply =
  | { readonly type: 'ready'; readonly model: WorkerModelInfo }
  | { readonly type: 'init-error'; readonly error: SerializedError }
  | { readonly type: 'event'; readonly event: unknown }
  | { readonly type: 'progress'; readonly id: number; readonly kind: 'progress' | 'checkpoint'; readonly event: unknown }
  | { readonly type: 'result'; readonly id: number; readonly value: unknown }
  | { readonly type: 'error'; readonly id: number; readonly error: SerializedError }
  | { readonly type: 'disposed'; readonly error?: SerializedError };

/** What the main thread knows of the model in the worker. */
export interface WorkerModelInfo {
  readonly architecture: string;
  readonly weightsHash: string;
  readonly cfgOrder: 'cond-first' | 'cond-second';
  readonly prediction: string;
  readonly learnSigma: boolean;
  /** True when the model decodes latents (images). */
  readonly decodes: boolean;
  /** The adapter's `config` when it has one that can be cloned (models-dit: its `ModelConfig`), else null. */
  readonly config: unknown;
}

function cloneable(value: unknown): boolean {
  try {
    structuredClone(value);
    return true;
  } catch {
    return false;
  }
}

const OWN = new Set(['name', 'message', 'stack', 'code', 'cause']);

/** An error (or anything thrown) as plain data. */
export function serializeError(error: unknown, depth = 0): SerializedError {
  if (!(error instanceof Error) && !isDitfaError(error)) {
    return { name: 'Error', message: `A non-error value was thrown: ${String(error)}`, ditfa: false, fields: cloneable(error) ? { value: error } : {} };
  }
  const e = error as Error & { code?: unknown; cause?: unknown };
  const fields: Record<string, unknown> = {};
  for (const key of Object.keys(e)) {
    if (OWN.has(key)) continue;
    const v = (e as unknown as Record<string, unknown>)[key];
    if (cloneable(v)) fields[key] = v;
  }
  let cause: SerializedError['cause'];
  if (e.cause !== undefined && depth < 4) cause = e.cause instanceof Error || isDitfaError(e.cause) ? serializeError(e.cause, depth + 1) : cloneable(e.cause) ? { value: e.cause } : undefined;
  return {
    name: e.name,
    message: e.message,
    ...(e.stack === undefined ? {} : { stack: e.stack }),
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    ditfa: isDitfaError(e),
    fields,
    ...(cause === undefined ? {} : { cause }),
  };
}

/**
 * Re-creates a serialized error: a ditfa error becomes a `DitfaError` (an `AbortedError` for
 * `ERR_DITFA_ABORTED`) with the same `code`, `name`, message and fields, so `instanceof DitfaError`,
 * `error.code` and `error.name === 'AbortError'` work as they would in-thread; another error becomes an
 * `Error` with its name, message and `code` (Node's, when it had one). The stack says it came from the worker.
 */
export function reviveError(s: SerializedError, cause?: unknown): Error {
  let e: Error;
  if (s.ditfa && s.code === ErrorCode.Aborted) e = new AbortedError('The call');
  else if (s.ditfa && s.code !== undefined) e = new DitfaError(s.code, s.message);
  else {
    e = new Error(s.message);
    if (s.code !== undefined) Object.defineProperty(e, 'code', { value: s.code, enumerable: true, configurable: true, writable: true });
  }
  Object.defineProperty(e, 'message', { value: s.message, enumerable: false, configurable: true, writable: true });
  Object.defineProperty(e, 'name', { value: s.name, enumerable: false, configurable: true, writable: true });
  for (const [k, v] of Object.entries(s.fields)) {
    try {
      (e as unknown as Record<string, unknown>)[k] = v;
    } catch {
      // a read-only field of the class: its constructor set it already
    }
  }
  const main = (e.stack ?? '').split('\n').slice(1).join('\n');
  if (s.stack !== undefined) e.stack = `${s.stack}\n    --- in the worker thread, re-thrown on the main thread:\n${main}`;
  const c = cause ?? (s.cause === undefined ? undefined : 'ditfa' in s.cause ? reviveError(s.cause) : s.cause.value);
  if (c !== undefined) Object.defineProperty(e, 'cause', { value: c, enumerable: false, configurable: true, writable: true });
  return e;
}

/**
 * The ArrayBuffers a value's typed arrays own whole (each once), for a transfer list. A view into part
 * of a buffer (a pooled `Buffer`, a slice) is left out and copied, so nothing else is detached.
 */
export function transferables(value: unknown, out: Set<ArrayBuffer> = new Set(), depth = 0): ArrayBuffer[] {
  if (depth > 6 || value === null || typeof value !== 'object') return [...out];
  if (ArrayBuffer.isView(value)) {
    const b = value.buffer;
    if (b instanceof ArrayBuffer && value.byteOffset === 0 && value.byteLength === b.byteLength && b.byteLength > 0) out.add(b);
    return [...out];
  }
  const items = Array.isArray(value) ? value : Object.values(value as Record<string, unknown>);
  for (const v of items) transferables(v, out, depth + 1);
  return [...out];
}
