import { DitfaError, ErrorCode, describeValue } from './errors.js';
import type { WindowSpec } from './kernel-backend.js';
import type { PlanView, StrategyLookup } from './strategy.js';

/**
 * Compression plans: per (step, block) the method, its measured loss and its FLOPs fraction, plus a
 * fingerprint of what the plan was made for. A plan made for another model, latent size, step count,
 * sampler, guidance, CFG order or window is refused with {@link PlanMismatchError}.
 */

export const PLAN_FORMAT = 'ditfa-plan';
export const PLAN_VERSION = 1;

/** The methods every ditfa installation knows; plugins add more (pass them to the validator). */
export const BUILTIN_METHODS = ['full', 'wars', 'ast', 'wars+asc', 'full+asc'] as const;
export type BuiltinMethod = (typeof BUILTIN_METHODS)[number];

/** Built-in methods that need a cache from an earlier step and so cannot run at step 0. */
const NEEDS_EARLIER_STEP = new Set<string>(['wars', 'wars+asc', 'ast']);

/** True when `method` reads a cache an earlier step must have filled (by its traits when strategies are known). */
function needsEarlierStep(method: string, options: ValidatePlanOptions): boolean {
  const m = options.methods as StrategyLookup | undefined;
  const traits = m && typeof m.get === 'function' && typeof m.names === 'function' ? m.get(method)?.traits : undefined;
  if (traits) return traits.consumesResidual || traits.reusesOutput;
  return NEEDS_EARLIER_STEP.has(method);
}

export interface PlanFingerprint {
  readonly model: {
    /** Architecture and its size, e.g. `dit depth=28 hidden=1152 heads=16 patch=2`. */
    readonly architecture: string;
    /** Hash of the weights (e.g. `sha256:…`). */
    readonly weightsHash: string;
  };
  /** Latent the model denoises (channels × [frames ×] height × width). */
  readonly latent: { readonly channels: number; readonly height: number; readonly width: number; readonly frames?: number };
  readonly steps: number;
  /** Sampler and its configuration, e.g. `dpm-solver++2m`. */
  readonly sampler: string;
  /** Guidance scale; `null` without CFG. */
  readonly guidance: number | null;
  readonly cfgOrder: 'cond-first' | 'cond-second' | 'none';
  readonly window: WindowSpec;
}

export interface PlanEntry {
  readonly method: string;
  /** Loss measured when the method was chosen; `null` where nothing was measured (step 0). */
  readonly loss: number | null;
  /** This block's attention FLOPs at this step as a fraction of the raw model's. */
  readonly flopsFraction: number;
}

export interface PlanTotals {
  /** Attention FLOPs of the whole generation as a fraction of the raw model's. */
  readonly attentionFlopsFraction: number;
  readonly searchSeconds?: number;
  readonly blockEvaluations?: number;
}

export interface PlanDocument {
  readonly format: typeof PLAN_FORMAT;
  readonly version: typeof PLAN_VERSION;
  readonly fingerprint: PlanFingerprint;
  readonly threshold: { readonly delta: number; readonly name?: string };
  /** Candidate methods in the order they were tried (decreasing compression). */
  readonly candidates: readonly string[];
  readonly numBlocks: number;
  /** `steps[step][block]`. */
  readonly steps: readonly (readonly PlanEntry[])[];
  readonly totals: PlanTotals;
  readonly createdAt?: string;
  readonly generator?: string;
}

export interface PlanIssue {
  readonly path: string;
  readonly message: string;
}

export class PlanValidationError extends DitfaError {
  readonly issues: readonly PlanIssue[];

  constructor(issues: readonly PlanIssue[]) {
    const shown = issues.slice(0, 12).map((i) => `  - ${i.path}: ${i.message}`);
    if (issues.length > 12) shown.push(`  - … and ${issues.length - 12} more`);
    super(ErrorCode.PlanInvalid, `Invalid plan document (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n${shown.join('\n')}`);
    this.issues = issues;
  }
}

export interface PlanMismatch {
  readonly field: string;
  readonly plan: unknown;
  readonly expected: unknown;
}

export class PlanMismatchError extends DitfaError {
  readonly mismatches: readonly PlanMismatch[];

  constructor(mismatches: readonly PlanMismatch[]) {
    const lines = mismatches.map((m) => `  - ${m.field}: the plan was made for ${JSON.stringify(m.plan)} but this run uses ${JSON.stringify(m.expected)}`);
    super(ErrorCode.PlanMismatch, `The plan was made for something else:\n${lines.join('\n')}\nCalibrate a plan for this configuration (ditfa calibrate).`);
    this.mismatches = mismatches;
  }
}

export interface ValidatePlanOptions {
  /** Method names beyond the built-ins (plugins), or a strategy lookup whose names are all allowed. */
  readonly methods?: Iterable<string> | StrategyLookup;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown, min: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min;

function validateWindowSpec(w: unknown, path: string, issues: PlanIssue[]): void {
  if (!isObject(w)) {
    issues.push({ path, message: `expected a window object but received ${describeValue(w)}` });
    return;
  }
  if (w.kind === '1d') {
    if (!isInt(w.size, 0)) issues.push({ path: `${path}.size`, message: `expected a non-negative integer but received ${describeValue(w.size)}` });
  } else if (w.kind === '2d') {
    for (const k of ['rows', 'cols'] as const) {
      if (!isInt(w[k], 1)) issues.push({ path: `${path}.${k}`, message: `expected a positive integer but received ${describeValue(w[k])}` });
    }
    if (!isInt(w.radius, 0)) issues.push({ path: `${path}.radius`, message: `expected a non-negative integer but received ${describeValue(w.radius)}` });
  } else {
    issues.push({ path: `${path}.kind`, message: `expected '1d' or '2d' but received ${describeValue(w.kind)}` });
  }
}

function allowedMethods(options: ValidatePlanOptions): Set<string> {
  const allowed = new Set<string>(BUILTIN_METHODS);
  const m = options.methods;
  if (m && typeof (m as StrategyLookup).names === 'function') for (const n of (m as StrategyLookup).names()) allowed.add(n);
  else if (m) for (const n of m as Iterable<string>) allowed.add(n);
  return allowed;
}

/** Validates an untrusted plan document (e.g. parsed JSON) and returns it typed, or throws {@link PlanValidationError}. */
export function validatePlan(doc: unknown, options: ValidatePlanOptions = {}): PlanDocument {
  const issues: PlanIssue[] = [];
  const push = (path: string, message: string): void => void issues.push({ path, message });
  if (!isObject(doc)) throw new PlanValidationError([{ path: '$', message: `expected a plan object but received ${describeValue(doc)}` }]);
  if (doc.format !== PLAN_FORMAT) push('format', `expected "${PLAN_FORMAT}" but received ${describeValue(doc.format)}`);
  if (doc.version !== PLAN_VERSION) {
    push('version', `expected format version ${PLAN_VERSION} but received ${describeValue(doc.version)}; re-create the plan with this version of ditfa`);
  }
  const fp = doc.fingerprint;
  let steps = -1;
  if (!isObject(fp)) push('fingerprint', `expected an object but received ${describeValue(fp)}`);
  else {
    if (!isObject(fp.model) || typeof fp.model.architecture !== 'string' || typeof fp.model.weightsHash !== 'string') {
      push('fingerprint.model', 'expected { architecture: string, weightsHash: string }');
    }
    const latent = fp.latent;
    if (!isObject(latent)) push('fingerprint.latent', `expected an object but received ${describeValue(latent)}`);
    else {
      for (const k of ['channels', 'height', 'width'] as const) {
        if (!isInt(latent[k], 1)) push(`fingerprint.latent.${k}`, `expected a positive integer but received ${describeValue(latent[k])}`);
      }
      if (latent.frames !== undefined && !isInt(latent.frames, 1)) push('fingerprint.latent.frames', `expected a positive integer but received ${describeValue(latent.frames)}`);
    }
    if (!isInt(fp.steps, 1)) push('fingerprint.steps', `expected a positive integer but received ${describeValue(fp.steps)}`);
    else steps = fp.steps;
    if (typeof fp.sampler !== 'string' || fp.sampler === '') push('fingerprint.sampler', `expected a non-empty string but received ${describeValue(fp.sampler)}`);
    if (fp.guidance !== null && (typeof fp.guidance !== 'number' || !Number.isFinite(fp.guidance))) {
      push('fingerprint.guidance', `expected a finite number or null but received ${describeValue(fp.guidance)}`);
    }
    if (fp.cfgOrder !== 'cond-first' && fp.cfgOrder !== 'cond-second' && fp.cfgOrder !== 'none') {
      push('fingerprint.cfgOrder', `expected "cond-first", "cond-second" or "none" but received ${describeValue(fp.cfgOrder)}`);
    }
    validateWindowSpec(fp.window, 'fingerprint.window', issues);
  }
  if (!isObject(doc.threshold) || typeof doc.threshold.delta !== 'number' || !(doc.threshold.delta >= 0)) {
    push('threshold.delta', `expected a non-negative number but received ${describeValue(isObject(doc.threshold) ? doc.threshold.delta : doc.threshold)}`);
  }
  const allowed = allowedMethods(options);
  if (!Array.isArray(doc.candidates)) push('candidates', `expected an array of method names but received ${describeValue(doc.candidates)}`);
  else {
    doc.candidates.forEach((c, i) => {
      if (typeof c !== 'string' || !allowed.has(c)) push(`candidates[${i}]`, `unknown method ${describeValue(c)}; known: ${[...allowed].join(', ')}`);
    });
  }
  const numBlocks = doc.numBlocks;
  if (!isInt(numBlocks, 1)) push('numBlocks', `expected a positive integer but received ${describeValue(numBlocks)}`);
  if (!Array.isArray(doc.steps)) push('steps', `expected an array of steps but received ${describeValue(doc.steps)}`);
  else {
    if (steps >= 1 && doc.steps.length !== steps) {
      push('steps', `expected ${steps} steps (fingerprint.steps) but received ${doc.steps.length}`);
    }
    doc.steps.forEach((row, s) => {
      if (!Array.isArray(row)) return push(`steps[${s}]`, `expected an array of block entries but received ${describeValue(row)}`);
      if (isInt(numBlocks, 1) && row.length !== numBlocks) push(`steps[${s}]`, `expected ${numBlocks} blocks but received ${row.length}`);
      row.forEach((e, b) => {
        const path = `steps[${s}][${b}]`;
        if (!isObject(e)) return push(path, `expected { method, loss, flopsFraction } but received ${describeValue(e)}`);
        if (typeof e.method !== 'string' || !allowed.has(e.method)) {
          push(`${path}.method`, `unknown method ${describeValue(e.method)}; known: ${[...allowed].join(', ')}`);
        } else if (s === 0 && needsEarlierStep(e.method, options)) {
          push(`${path}.method`, `step 0 must compute attention but the plan says ${JSON.stringify(e.method)}`);
        }
        if (e.loss !== null && (typeof e.loss !== 'number' || !(e.loss >= 0))) push(`${path}.loss`, `expected a non-negative number or null but received ${describeValue(e.loss)}`);
        if (typeof e.flopsFraction !== 'number' || !(e.flopsFraction >= 0)) {
          push(`${path}.flopsFraction`, `expected a non-negative number but received ${describeValue(e.flopsFraction)}`);
        }
      });
    });
  }
  const totals = doc.totals;
  if (!isObject(totals) || typeof totals.attentionFlopsFraction !== 'number' || !(totals.attentionFlopsFraction >= 0)) {
    push('totals.attentionFlopsFraction', `expected a non-negative number but received ${describeValue(isObject(totals) ? totals.attentionFlopsFraction : totals)}`);
  }
  if (issues.length > 0) throw new PlanValidationError(issues);
  return doc as unknown as PlanDocument;
}

/** Parses and validates plan JSON text. */
export function parsePlan(json: string, options?: ValidatePlanOptions): PlanDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (cause) {
    throw Object.assign(new PlanValidationError([{ path: '$', message: `not valid JSON: ${(cause as Error).message}` }]), { cause });
  }
  return validatePlan(doc, options);
}

/** Stable, readable JSON for a plan. */
export function serializePlan(plan: PlanDocument): string {
  return `${JSON.stringify(plan, null, 2)}\n`;
}

function compareFields(path: string, plan: unknown, expected: unknown, out: PlanMismatch[]): void {
  if (isObject(plan) && isObject(expected)) {
    for (const key of new Set([...Object.keys(plan), ...Object.keys(expected)])) compareFields(path ? `${path}.${key}` : key, plan[key], expected[key], out);
    return;
  }
  if (plan !== expected) out.push({ field: path, plan, expected });
}

/** The fields in which two fingerprints differ (empty when they agree). */
export function diffFingerprints(plan: PlanFingerprint, expected: PlanFingerprint): PlanMismatch[] {
  const out: PlanMismatch[] = [];
  compareFields('', plan, expected, out);
  return out;
}

/** Throws {@link PlanMismatchError} naming every field in which the plan's fingerprint differs from `expected`. */
export function checkPlanFingerprint(plan: PlanDocument, expected: PlanFingerprint): void {
  const mismatches = diffFingerprints(plan.fingerprint, expected);
  if (mismatches.length > 0) throw new PlanMismatchError(mismatches);
}

/** A {@link PlanView} over a plan document. */
export function planView(plan: PlanDocument): PlanView {
  return {
    numSteps: plan.steps.length,
    numBlocks: plan.numBlocks,
    methodAt: (step, block) => plan.steps[step]?.[block]?.method,
  };
}

/** A plan view that uses one method everywhere (`full` gives the raw model). Step 0 is always `full`. */
export function uniformPlanView(numSteps: number, numBlocks: number, method = 'full'): PlanView {
  return { numSteps, numBlocks, methodAt: (step, block) => (step < 0 || step >= numSteps || block < 0 || block >= numBlocks ? undefined : step === 0 ? 'full' : method) };
}
