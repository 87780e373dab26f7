import { DitfaError, ErrorCode, InvalidArgumentError, describeValue } from './errors.js';
import type { AttentionStrategy, StrategyLookup, StrategyTraits } from './strategy.js';

export class StrategyConflictError extends DitfaError {
  constructor(message: string) {
    super(ErrorCode.StrategyConflict, message);
  }
}

export class StrategyNotFoundError extends DitfaError {
  constructor(message: string) {
    super(ErrorCode.StrategyNotFound, message);
  }
}

export class InvalidStrategyError extends DitfaError {
  constructor(message: string) {
    super(ErrorCode.InvalidStrategy, message);
  }
}

const NAME = /^[a-z][a-z0-9._-]*(\+[a-z][a-z0-9._-]*)*$/;

/** Throws {@link InvalidStrategyError} unless `value` has the shape of an {@link AttentionStrategy}. */
export function validateStrategy(value: unknown): AttentionStrategy {
  const s = value as Partial<AttentionStrategy> | null;
  if (!s || typeof s !== 'object') {
    throw new InvalidStrategyError(`Expected an attention strategy object but received ${describeValue(value)}`);
  }
  if (typeof s.name !== 'string' || !NAME.test(s.name)) {
    throw new InvalidStrategyError(
      `Expected a strategy name of lowercase words joined by '+' (like "wars+asc") but received ${describeValue(s.name)}`,
    );
  }
  for (const fn of ['needs', 'run', 'flops'] as const) {
    if (typeof s[fn] !== 'function') {
      throw new InvalidStrategyError(`Expected strategy "${s.name}" to have a ${fn}() function but received ${describeValue(s[fn])}`);
    }
  }
  if (s.observe !== undefined && typeof s.observe !== 'function') {
    throw new InvalidStrategyError(`Expected strategy "${s.name}" observe to be a function but received ${describeValue(s.observe)}`);
  }
  const t = s.traits as Partial<StrategyTraits> | undefined;
  for (const key of ['consumesResidual', 'refreshesResidual', 'reusesOutput'] as const) {
    if (typeof t?.[key] !== 'boolean') {
      throw new InvalidStrategyError(`Expected strategy "${s.name}" traits.${key} to be a boolean but received ${describeValue(t?.[key])}`);
    }
  }
  return s as AttentionStrategy;
}

export interface StrategySpec extends Omit<AttentionStrategy, 'traits'> {
  readonly traits?: Partial<StrategyTraits>;
}

/** Makes a strategy from a plain spec (traits default to false), validated and frozen. */
export function defineStrategy(spec: StrategySpec): AttentionStrategy {
  const strategy: AttentionStrategy = {
    ...spec,
    traits: Object.freeze({ consumesResidual: false, refreshesResidual: false, reusesOutput: false, ...spec.traits }),
  };
  return Object.freeze(validateStrategy(strategy));
}

/**
 * Strategies by name. Registration is explicit: the same object twice is ignored, a different object
 * under a taken name with the same priority throws {@link StrategyConflictError}, a higher priority
 * replaces a lower one (and a lower one is ignored).
 */
export class StrategyRegistry implements StrategyLookup {
  readonly #entries = new Map<string, { strategy: AttentionStrategy; priority: number }>();

  register(strategy: AttentionStrategy, priority = 0): void {
    validateStrategy(strategy);
    if (!Number.isFinite(priority)) {
      throw new InvalidArgumentError(`Expected a finite priority for strategy "${strategy.name}" but received ${describeValue(priority)}`);
    }
    const existing = this.#entries.get(strategy.name);
    if (existing) {
      if (existing.strategy === strategy) return;
      if (existing.priority > priority) return;
      if (existing.priority === priority) {
        throw new StrategyConflictError(
          `Cannot register a different strategy under the taken name "${strategy.name}" with the same priority ${priority}`,
        );
      }
    }
    this.#entries.set(strategy.name, { strategy, priority });
  }

  unregister(name: string): boolean {
    return this.#entries.delete(name);
  }

  get(name: string): AttentionStrategy | undefined {
    return this.#entries.get(name)?.strategy;
  }

  /** The strategy or a {@link StrategyNotFoundError} listing what is registered. */
  require(name: string): AttentionStrategy {
    const s = this.get(name);
    if (!s) {
      throw new StrategyNotFoundError(`Expected a registered strategy named "${name}" but the registered ones are: ${this.names().join(', ') || 'none'}`);
    }
    return s;
  }

  /** Names, highest priority first (registration order among equals). */
  names(): string[] {
    return [...this.#entries.entries()].sort((a, b) => b[1].priority - a[1].priority).map(([name]) => name);
  }

  list(): AttentionStrategy[] {
    return this.names().map((n) => this.#entries.get(n)!.strategy);
  }
}

/** The process-wide registry that strategy packages' `register()` functions write to. */
export const strategyRegistry = new StrategyRegistry();

export function registerStrategy(strategy: AttentionStrategy, priority = 0): void {
  strategyRegistry.register(strategy, priority);
}

/**
 * The side-effect-free path: a lookup over exactly the given strategies, no globals touched. Same
 * conflict rules as the registry.
 */
export function strategySet(strategies: readonly AttentionStrategy[]): StrategyRegistry {
  const set = new StrategyRegistry();
  for (const s of strategies) set.register(s);
  return set;
}
