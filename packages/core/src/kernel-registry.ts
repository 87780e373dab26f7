import { DitfaError, ErrorCode, InvalidArgumentError, describeValue } from './errors.js';
import type { KernelBackend } from './kernel-backend.js';
import { sharedRegistry } from './shared-registry.js';

/**
 * The open kernel table: a plugin registers further kernels for a backend by name, the way tfjs'
 * `registerKernel` does, so a third-party strategy can ship its own kernels. The built-in kernels are
 * methods of {@link KernelBackend}; this table holds the others.
 */
export type KernelFunc<Args = unknown, Result = unknown> = (backend: KernelBackend, args: Args) => Result | Promise<Result>;

export interface KernelConfig<Args = unknown, Result = unknown> {
  readonly kernelName: string;
  /** Backend name (`'reference'`, `'cpu'`, `'cuda'`…) this implementation is for. */
  readonly backendName: string;
  readonly kernelFunc: KernelFunc<Args, Result>;
}

export class KernelConflictError extends DitfaError {
  constructor(message: string) {
    super(ErrorCode.KernelConflict, message);
  }
}

export class KernelNotFoundError extends DitfaError {
  constructor(message: string) {
    super(ErrorCode.KernelNotFound, message);
  }
}

const key = (kernelName: string, backendName: string): string => `${backendName}\u0000${kernelName}`;

export class KernelRegistry {
  readonly #kernels = new Map<string, KernelConfig>();

  register<Args, Result>(config: KernelConfig<Args, Result>): void {
    const { kernelName, backendName, kernelFunc } = config ?? ({} as KernelConfig<Args, Result>);
    if (typeof kernelName !== 'string' || kernelName === '' || typeof backendName !== 'string' || backendName === '') {
      throw new InvalidArgumentError(
        `Expected non-empty kernelName and backendName strings but received ${describeValue(kernelName)} and ${describeValue(backendName)}`,
      );
    }
    if (typeof kernelFunc !== 'function') {
      throw new InvalidArgumentError(`Expected a kernelFunc for kernel "${kernelName}" but received ${describeValue(kernelFunc)}`);
    }
    const existing = this.#kernels.get(key(kernelName, backendName));
    if (existing) {
      if (existing.kernelFunc === kernelFunc) return;
      throw new KernelConflictError(`Kernel "${kernelName}" is already registered for backend "${backendName}" with a different function`);
    }
    this.#kernels.set(key(kernelName, backendName), config as KernelConfig);
  }

  unregister(kernelName: string, backendName: string): boolean {
    return this.#kernels.delete(key(kernelName, backendName));
  }

  get(kernelName: string, backendName: string): KernelConfig | undefined {
    return this.#kernels.get(key(kernelName, backendName));
  }

  /** Backends that have an implementation of `kernelName`. */
  backendsFor(kernelName: string): string[] {
    return [...this.#kernels.values()].filter((k) => k.kernelName === kernelName).map((k) => k.backendName);
  }

  /**
   * Runs `kernelName` on `backend`. When the backend has no implementation and `fallbackBackend` has
   * one (typically `'reference'`), that one runs instead; otherwise {@link KernelNotFoundError}.
   */
  async run<Args, Result>(backend: KernelBackend, kernelName: string, args: Args, fallbackBackend?: string): Promise<Result> {
    const config = this.get(kernelName, backend.name) ?? (fallbackBackend ? this.get(kernelName, fallbackBackend) : undefined);
    if (!config) {
      const available = this.backendsFor(kernelName);
      throw new KernelNotFoundError(
        `Kernel "${kernelName}" is not registered for backend "${backend.name}"` +
          (available.length ? ` (it is registered for: ${available.join(', ')})` : ' (no backend has it; register it with registerKernel)'),
      );
    }
    return (await config.kernelFunc(backend, args)) as Result;
  }
}

/** The process-wide kernel table, shared by every copy of `@ditfa/core` in the process. */
export const kernelRegistry: KernelRegistry = sharedRegistry('kernels', () => new KernelRegistry(), ['register', 'unregister', 'get', 'backendsFor', 'run']);

export function registerKernel<Args, Result>(config: KernelConfig<Args, Result>): void {
  kernelRegistry.register(config);
}

export function getKernel(kernelName: string, backendName: string): KernelConfig | undefined {
  return kernelRegistry.get(kernelName, backendName);
}

export function runKernel<Args, Result>(backend: KernelBackend, kernelName: string, args: Args, fallbackBackend?: string): Promise<Result> {
  return kernelRegistry.run<Args, Result>(backend, kernelName, args, fallbackBackend);
}
