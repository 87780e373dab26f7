import { DitfaError, ErrorCode, InvalidArgumentError, describeValue } from './errors.js';
import { sharedRegistry } from './shared-registry.js';
import type { AttentionStrategy, StrategyCaches, StrategyLookup } from './strategy.js';

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
  if (s.companions !== undefined && (!Array.isArray(s.companions) || s.companions.some((c) => !c || typeof c !== 'object'))) {
    throw new InvalidStrategyError(`Expected strategy "${s.name}" companions to be an array of strategies but received ${describeValue(s.companions)}`);
  }
  if (s.appliesTo !== undefined && typeof s.appliesTo !== 'function') {
    throw new InvalidStrategyError(`Expected strategy "${s.name}" appliesTo to be a function but received ${describeValue(s.appliesTo)}`);
  }
  const c = s.caches as Partial<StrategyCaches> | undefined;
  for (const key of ['reads', 'writes', 'observes'] as const) {
    const kinds = c?.[key];
    if (!Array.isArray(kinds) || kinds.some((k) => typeof k !== 'string' || k === '')) {
      throw new InvalidStrategyError(`Expected strategy "${s.name}" caches.${key} to be an array of cache kinds (non-empty strings) but received ${describeValue(kinds)}`);
    }
  }
  return s as AttentionStrategy;
}

export interface StrategySpec extends Omit<AttentionStrategy, 'caches'> {
  /** Cache kinds read, written and observed across steps; each list defaults to empty. */
  readonly caches?: Partial<StrategyCaches>;
}

/** Makes a strategy from a plain spec (cache lists default to empty), validated and frozen. */
export function defineStrategy(spec: StrategySpec): AttentionStrategy {
  const c = spec.caches ?? {};
  const strategy: AttentionStrategy = {
    ...spec,
    caches: Object.freeze({
      reads: Object.freeze([...(c.reads ?? [])]),
      writes: Object.freeze([...(c.writes ?? [])]),
      observes: Object.freeze([...(c.observes ?? [])]),
    }),
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
    addCompanions(this, [strategy], priority);
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

/**
 * The process-wide registry that strategy packages' `register()` functions write to. Shared by every
 * copy of `@ditfa/core` in the process (see `coreCopies()`).
 */
export const strategyRegistry: StrategyRegistry = sharedRegistry('strategies', () => new StrategyRegistry(), ['register', 'unregister', 'get', 'require', 'names', 'list']);

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
  addCompanions(set, strategies);
  return set;
}

/** Registers the companions of `strategies` (recursively) whose names are still free. */
function addCompanions(registry: StrategyRegistry, strategies: readonly AttentionStrategy[], priority = 0): void {
  const pending = strategies.flatMap((s) => s.companions ?? []);
  const seen = new Set<AttentionStrategy>();
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (seen.has(c)) continue;
    seen.add(c);
    validateStrategy(c);
    if (!registry.get(c.name)) registry.register(c, priority);
    pending.push(...(c.companions ?? []));
  }
}

/**
 * Checks that a set of strategies can work together: every cache kind a strategy reads is written by
 * some strategy of the set (in its `writes` or `observes`). Throws {@link InvalidStrategyError} naming
 * the reader and the kind otherwise (e.g. `wars` without the residual-refreshing `full` of
 * `@ditfa/strategy-wars`), since such a method would fall back at every step.
 */
export function checkStrategySet(strategies: StrategyLookup): void {
  const written = new Set<string>();
  for (const n of strategies.names()) {
    const c = strategies.get(n)?.caches;
    for (const k of [...(c?.writes ?? []), ...(c?.observes ?? [])]) written.add(k);
  }
  for (const n of strategies.names()) {
    for (const kind of strategies.get(n)?.caches.reads ?? []) {
      if (!written.has(kind)) {
        throw new InvalidStrategyError(
          `Strategy "${n}" reads the cache kind "${kind}" but no strategy of this pipeline writes it (strategies: ${strategies.names().join(', ')}); ` +
            'add the package\'s companion strategies too (e.g. strategies() of @ditfa/strategy-wars brings the residual-refreshing "full")',
        );
      }
    }
  }
}
