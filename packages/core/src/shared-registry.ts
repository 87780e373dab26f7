import { DitfaError, ErrorCode } from './errors.js';

/**
 * The process-wide registries (strategies, kernel backends, kernels) live on `globalThis` under one
 * versioned `Symbol.for` key, not in this module. A second copy of `@ditfa/core` in the process (a plugin
 * linked from a folder, a package that pinned another version) finds the registries the first copy made
 * and registers into them, so every copy sees every registration.
 *
 * A copy uses a shared registry only when it has every method that copy calls (shape check). When it
 * does not (a copy of core from an incompatible release), that copy's registry functions throw
 * {@link CoreConflictError} naming both copies, instead of registering into a registry nobody reads.
 * Loading never throws: the error comes at the first registration or lookup.
 */

/** Layout version of the holder: bump it when the holder's own shape changes. */
export const REGISTRY_LAYOUT = 1;
/** The key of the holder on `globalThis`. */
export const REGISTRY_KEY = Symbol.for(`@ditfa/core:registries@${REGISTRY_LAYOUT}`);

/** This copy of core: the URL of this module. */
const THIS_COPY = import.meta.url;

interface Holder {
  readonly layout: number;
  /** Every copy of core that found or made this holder, first one first. */
  readonly copies: string[];
  readonly registries: Record<string, { readonly value: object; readonly owner: string } | undefined>;
}

/** Two copies of `@ditfa/core` whose registries cannot be shared are loaded in one process. */
export class CoreConflictError extends DitfaError {
  /** The copy that made the process-wide registry, and this one (module URLs). */
  readonly copies: readonly [string, string];

  constructor(message: string, copies: readonly [string, string]) {
    super(ErrorCode.CoreConflict, message);
    this.copies = copies;
  }
}

function isHolder(value: unknown): value is Holder {
  const h = value as Partial<Holder> | null;
  return typeof h === 'object' && h !== null && h.layout === REGISTRY_LAYOUT && Array.isArray(h.copies) && typeof h.registries === 'object' && h.registries !== null;
}

function conflictStub<T extends object>(methods: readonly string[], error: () => CoreConflictError): T {
  const stub: Record<string, () => never> = {};
  for (const m of methods) {
    stub[m] = () => {
      throw error();
    };
  }
  return stub as unknown as T;
}

/**
 * The process-wide registry `name`: the one a copy of core already put on `scope` (default
 * `globalThis`) when it has all of `methods`, else a new one from `create`, shared from now on. When the
 * existing one lacks a method, returns a stand-in whose every method throws {@link CoreConflictError}.
 * Internal (not exported from the index): use the registries (`strategyRegistry`, `backendRegistry`, `kernelRegistry`).
 */
export function sharedRegistry<T extends object>(name: string, create: () => T, methods: readonly string[], scope: object = globalThis, copy: string = THIS_COPY): T {
  const slot = scope as Record<symbol, unknown>;
  const existing = slot[REGISTRY_KEY];
  if (existing !== undefined && !isHolder(existing)) {
    return conflictStub<T>(methods, () =>
      new CoreConflictError(
        `Expected the process-wide ditfa registries (globalThis[Symbol.for(${JSON.stringify(REGISTRY_KEY.description)})]) to be those of a compatible copy of @ditfa/core ` +
          `but found ${describeHolder(existing)}; ${copy} cannot register into them. ${REMEDY}`,
        ['unknown', copy],
      ),
    );
  }
  const holder: Holder = (existing as Holder | undefined) ?? { layout: REGISTRY_LAYOUT, copies: [], registries: {} };
  if (existing === undefined) Object.defineProperty(slot, REGISTRY_KEY, { value: holder, configurable: true, enumerable: false, writable: false });
  if (!holder.copies.includes(copy)) holder.copies.push(copy);
  const entry = holder.registries[name];
  if (!entry) {
    const value = create();
    holder.registries[name] = { value, owner: copy };
    return value;
  }
  const missing = methods.filter((m) => typeof (entry.value as Record<string, unknown>)[m] !== 'function');
  if (missing.length === 0) return entry.value as T;
  return conflictStub<T>(methods, () =>
    new CoreConflictError(
      `Two copies of @ditfa/core with incompatible ${name} registries are loaded in this process: ${entry.owner} made the process-wide registry ` +
        `and ${copy} cannot use it (it lacks ${missing.join(', ')}). ${REMEDY}`,
      [entry.owner, copy],
    ),
  );
}

const REMEDY =
  'Install one copy of @ditfa/core (`npm ls @ditfa/core` shows them; `npm dedupe`, or align the versions the packages ask for), ' +
  'so every package registers into the same registries.';

function describeHolder(value: unknown): string {
  const layout = (value as { layout?: unknown } | null)?.layout;
  return typeof layout === 'number' ? `registries of layout ${layout} (this copy speaks layout ${REGISTRY_LAYOUT})` : 'something else';
}

/**
 * The copies of `@ditfa/core` loaded in this process that share its registries (module URLs, the one
 * that made them first). More than one is fine; it explains where a registration came from.
 */
export function coreCopies(scope: object = globalThis): readonly string[] {
  const holder = (scope as Record<symbol, unknown>)[REGISTRY_KEY];
  return isHolder(holder) ? [...holder.copies] : [];
}
