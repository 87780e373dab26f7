import { DitfaError, ErrorCode, InvalidArgumentError, describeValue } from './errors.js';
import type { KernelBackend } from './kernel-backend.js';
import { sharedRegistry } from './shared-registry.js';

/**
 * Creates a backend or explains why it cannot. A factory throws (with a cause and a remedy in the
 * message) when its backend is unavailable, e.g. a native addon that failed to load.
 */
export type BackendFactory = () => KernelBackend | Promise<KernelBackend>;

export class BackendConflictError extends DitfaError {
  constructor(message: string) {
    super(ErrorCode.BackendConflict, message);
  }
}

/** One backend's reason for failing during resolution. */
export interface BackendFailure {
  readonly name: string;
  readonly error: unknown;
}

/** No requested backend could be created; `failures` holds each backend's reason. */
export class BackendUnavailableError extends DitfaError {
  readonly failures: readonly BackendFailure[];

  constructor(message: string, failures: readonly BackendFailure[]) {
    super(ErrorCode.BackendUnavailable, message, { cause: failures.length === 1 ? failures[0]?.error : new AggregateError(failures.map((f) => f.error)) });
    this.failures = failures;
  }
}

interface Entry {
  readonly factory: BackendFactory;
  readonly priority: number;
  instance?: Promise<KernelBackend>;
}

function reason(error: unknown): string {
  if (error instanceof Error) return error.message.split('\n').join('\n    ');
  return String(error);
}

/**
 * Backends by name, resolved by priority (highest first). The same factory registered twice is
 * ignored; a different factory under a taken name with the same priority is a
 * {@link BackendConflictError}; a higher priority replaces a lower one.
 */
export class BackendRegistry {
  readonly #entries = new Map<string, Entry>();

  register(name: string, factory: BackendFactory, priority = 0): void {
    if (typeof name !== 'string' || name.length === 0) {
      throw new InvalidArgumentError(`Expected a non-empty backend name but received ${describeValue(name)}`);
    }
    if (typeof factory !== 'function') {
      throw new InvalidArgumentError(`Expected a factory function for backend "${name}" but received ${describeValue(factory)}`);
    }
    if (!Number.isFinite(priority)) {
      throw new InvalidArgumentError(`Expected a finite priority for backend "${name}" but received ${describeValue(priority)}`);
    }
    const existing = this.#entries.get(name);
    if (existing) {
      if (existing.factory === factory) return;
      if (existing.priority > priority) return;
      if (existing.priority === priority) {
        throw new BackendConflictError(`Cannot register a different backend under the taken name "${name}" with the same priority ${priority}`);
      }
    }
    this.#entries.set(name, { factory, priority });
  }

  /** Registered names, highest priority first. */
  names(): string[] {
    return [...this.#entries.entries()].sort((a, b) => b[1].priority - a[1].priority).map(([name]) => name);
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /**
   * Resolves a backend. With `names`, tries exactly those in the given order; otherwise every
   * registered backend by priority. Created backends are kept (one instance per name). When none works,
   * throws one {@link BackendUnavailableError} listing every backend's failure.
   */
  async resolve(names?: readonly string[]): Promise<KernelBackend> {
    return (await this.resolveDetailed(names)).backend;
  }

  /**
   * {@link resolve}, also saying which backends were tried before the one that worked and why each
   * failed (`failures`, in the order tried; empty when the first choice worked). A pipeline reports
   * them, so a native backend that did not build is not passed over in silence.
   */
  async resolveDetailed(names?: readonly string[]): Promise<BackendResolution> {
    const order = names ?? this.names();
    const failures: BackendFailure[] = [];
    for (const name of order) {
      const entry = this.#entries.get(name);
      if (!entry) {
        failures.push({ name, error: new Error(`no backend named "${name}" is registered (registered: ${this.names().join(', ') || 'none'})`) });
        continue;
      }
      try {
        entry.instance ??= Promise.resolve().then(entry.factory);
        return { backend: await entry.instance, failures };
      } catch (error) {
        delete entry.instance;
        failures.push({ name, error });
      }
    }
    if (order.length === 0) {
      throw new BackendUnavailableError('No kernel backend is registered; import a backend package or pass a backend directly', []);
    }
    throw new BackendUnavailableError(`No kernel backend could be created. Tried ${order.join(', ')}:\n${describeFailures(failures)}`, failures);
  }
}

/** What {@link BackendRegistry.resolveDetailed} found: the backend, and the ones tried before it with their reasons. */
export interface BackendResolution {
  readonly backend: KernelBackend;
  readonly failures: readonly BackendFailure[];
}

/** One line per failure, `  - name: reason` (continuation lines indented): for messages and warnings. */
export function describeFailures(failures: readonly BackendFailure[]): string {
  return failures.map((f) => `  - ${f.name}: ${reason(f.error)}`).join('\n');
}

/**
 * The process-wide backend registry that backend packages register into on import of their index.
 * Shared by every copy of `@ditfa/core` in the process (see `coreCopies()`).
 */
export const backendRegistry: BackendRegistry = sharedRegistry('backends', () => new BackendRegistry(), ['register', 'names', 'has', 'resolve', 'resolveDetailed']);

export function registerBackend(name: string, factory: BackendFactory, priority = 0): void {
  backendRegistry.register(name, factory, priority);
}

export function resolveBackend(names?: readonly string[]): Promise<KernelBackend> {
  return backendRegistry.resolve(names);
}

/** {@link resolveBackend} with the backends tried before the chosen one and why each failed. */
export function resolveBackendDetailed(names?: readonly string[]): Promise<BackendResolution> {
  return backendRegistry.resolveDetailed(names);
}
