/**
 * Error classes of ditfa. Every error has a stable `code` (match on it, never on the message), an
 * optional `cause`, and a message that says what was expected and what was received.
 */

/** Stable error codes. Adding a code is a minor change; renaming one is a major change. */
export const ErrorCode = {
  InvalidArgument: 'ERR_DITFA_INVALID_ARGUMENT',
  ShapeMismatch: 'ERR_DITFA_SHAPE_MISMATCH',
  StrategyConflict: 'ERR_DITFA_STRATEGY_CONFLICT',
  StrategyNotFound: 'ERR_DITFA_STRATEGY_NOT_FOUND',
  InvalidStrategy: 'ERR_DITFA_INVALID_STRATEGY',
  BackendConflict: 'ERR_DITFA_BACKEND_CONFLICT',
  BackendUnavailable: 'ERR_DITFA_BACKEND_UNAVAILABLE',
  KernelConflict: 'ERR_DITFA_KERNEL_CONFLICT',
  KernelNotFound: 'ERR_DITFA_KERNEL_NOT_FOUND',
  PlanInvalid: 'ERR_DITFA_PLAN_INVALID',
  PlanMismatch: 'ERR_DITFA_PLAN_MISMATCH',
  CacheBudgetExceeded: 'ERR_DITFA_CACHE_BUDGET_EXCEEDED',
  CacheMissing: 'ERR_DITFA_CACHE_MISSING',
  CacheStale: 'ERR_DITFA_CACHE_STALE',
  Aborted: 'ERR_DITFA_ABORTED',
  NumericalFault: 'ERR_DITFA_NUMERICAL_FAULT',
  CoreConflict: 'ERR_DITFA_CORE_CONFLICT',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface DitfaErrorOptions {
  cause?: unknown;
}

/** Marks every ditfa error, whichever copy of core made it (`Symbol.for`: one symbol per process). */
const DITFA_ERROR = Symbol.for('@ditfa/core:error');

/**
 * Base class of every error ditfa throws on purpose.
 *
 * `error instanceof DitfaError` also holds for errors made by another copy of `@ditfa/core` loaded in the
 * same process (each copy marks its errors with one process-wide symbol), so code that catches ditfa
 * errors keeps working when a plugin brings its own copy. Subclasses match by prototype only: compare
 * `code` to be safe across copies.
 */
export class DitfaError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options: DitfaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    return this === DitfaError && isDitfaError(value);
  }
}
Object.defineProperty(DitfaError.prototype, DITFA_ERROR, { value: true });

/** True for an error of any copy of `@ditfa/core` (a coded error: `code` is a string). */
export function isDitfaError(value: unknown): value is DitfaError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[DITFA_ERROR] === true && typeof (value as { code?: unknown }).code === 'string';
}

/** An argument had the wrong type, range or form. */
export class InvalidArgumentError extends DitfaError {
  constructor(message: string, options?: DitfaErrorOptions) {
    super(ErrorCode.InvalidArgument, message, options);
  }
}

/** Tensor shapes (or data lengths) do not agree with each other. */
export class ShapeMismatchError extends DitfaError {
  constructor(message: string, options?: DitfaErrorOptions) {
    super(ErrorCode.ShapeMismatch, message, options);
  }
}

/** Describes a received value for an error message: `-3 (number)`, `"abc" (string)`, `[2,3] (array)`. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return `${JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value)} (string)`;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return `${String(value)} (${typeof value})`;
  }
  if (Array.isArray(value)) {
    const text = JSON.stringify(value);
    return `${text !== undefined && text.length <= 60 ? text : `array of length ${value.length}`} (array)`;
  }
  if (ArrayBuffer.isView(value)) {
    return `${value.constructor.name} of length ${(value as unknown as { length?: number }).length ?? value.byteLength}`;
  }
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  const ctor = (value as object).constructor;
  return ctor && ctor !== Object ? `${ctor.name} instance` : 'object';
}

/** Throws {@link InvalidArgumentError} unless `value` is an integer in `[min, max]`. */
export function expectInteger(name: string, value: unknown, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range =
      min === 0 && max === Number.MAX_SAFE_INTEGER
        ? 'a non-negative integer'
        : min === 1 && max === Number.MAX_SAFE_INTEGER
          ? 'a positive integer'
          : max === Number.MAX_SAFE_INTEGER
            ? `an integer >= ${min}`
            : `an integer in [${min}, ${max}]`;
    throw new InvalidArgumentError(`Expected ${range} for ${name} but received ${describeValue(value)}`);
  }
  return value;
}

/** Throws {@link InvalidArgumentError} unless `value` is a finite number. */
export function expectFinite(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new InvalidArgumentError(`Expected a finite number for ${name} but received ${describeValue(value)}`);
  }
  return value;
}

/**
 * The error thrown when an AbortSignal fired. Its `name` is `'AbortError'`, what `fetch`, timers and
 * streams reject with, so `error.name === 'AbortError'` checks work; its `code` is
 * `ERR_DITFA_ABORTED` and its `cause` the signal's reason.
 */
export class AbortedError extends DitfaError {
  constructor(what: string, options?: DitfaErrorOptions) {
    super(ErrorCode.Aborted, `${what} was aborted`, options);
    this.name = 'AbortError';
  }
}

/** Throws {@link AbortedError} (with the signal's reason as cause) when `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new AbortedError(what, { cause: signal.reason });
}
