import { DitfaError, ErrorCode, describeValue } from './errors.js';
import type { WindowSpec } from './kernel-backend.js';
import type { PlanView, StrategyLookup } from './strategy.js';

/**
 * Compression plans: per (step, attention layer) the method, its measured loss and its FLOPs fraction,
 * plus a fingerprint of what the plan was made for — model, latent, steps, sampler, guidance, CFG order
 * and the attention layers (ids in model order, each with its window). A plan made for anything else is
 * refused with {@link PlanMismatchError} naming every field that differs.
 *
 * Format version 2. Version-1 plans (one `self` layer per block, one window for all) still load:
 * {@link validatePlan} and {@link parsePlan} upgrade them exactly ({@link upgradePlanV1}): block `b`
 * becomes layer `b.self` with the plan's window, every decision stays where it was.
 */

export const PLAN_FORMAT = 'ditfa-plan';
export const PLAN_VERSION = 2;

/** Method names: lowercase words joined by `+` (`wars+asc`). */
const METHOD_NAME = /^[a-z][a-z0-9._-]*(\+[a-z][a-z0-9._-]*)*$/;

/** True when `method` reads a cache an earlier step must have filled (known only with a strategy lookup). */
function needsEarlierStep(method: string, options: ValidatePlanOptions): boolean {
  const m = options.methods as StrategyLookup | undefined;
  const caches = m && typeof m.get === 'function' && typeof m.names === 'function' ? m.get(method)?.caches : undefined;
  return (caches?.reads.length ?? 0) > 0;
}

/** One attention layer as a plan records it. */
export interface PlanLayer {
  /** `<block>.<site>`, e.g. `3.self`. */
  readonly id: string;
  /** The layer's window of window methods; `null` where none applies. */
  readonly window: WindowSpec | null;
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
  /** The attention layers in model order; `steps[s][j]` decides layer `layers[j]`. */
  readonly layers: readonly PlanLayer[];
}

export interface PlanEntry {
  readonly method: string;
  /** Loss measured when the method was chosen; `null` where nothing was measured (step 0). */
  readonly loss: number | null;
  /** This layer's attention FLOPs at this step as a fraction of its raw attention FLOPs. */
  readonly flopsFraction: number;
}

export interface PlanTotals {
  /** Attention FLOPs of the whole generation as a fraction of the raw model's. */
  readonly attentionFlopsFraction: number;
  readonly searchSeconds?: number;
  /** Layer evaluations the search made (one layer run under one method at one step). */
  readonly layerEvaluations?: number;
}

/**
 * Where a plan search measures its loss: `output` (the paper) on the whole model output, both CFG halves
 * and any learned-variance channels; `prediction` on what the sampler consumes (guidance applied, an
 * ignored variance dropped), so that an error the guidance scale amplifies counts as much as the sampler
 * feels it.
 */
export type LossSpace = 'output' | 'prediction';

export interface PlanDocument {
  readonly format: typeof PLAN_FORMAT;
  readonly version: typeof PLAN_VERSION;
  readonly fingerprint: PlanFingerprint;
  readonly threshold: { readonly delta: number; readonly name?: string };
  /** Candidate methods in the order they were tried (decreasing compression). */
  readonly candidates: readonly string[];
  /** Where the search measured its loss (see {@link LossSpace}); absent: `output`. */
  readonly lossOn?: LossSpace;
  /** The attention sites the search could compress (others stayed full) when not all; absent: every site. */
  readonly sites?: readonly string[];
  /** `steps[step][layer]`, layers in the order of `fingerprint.layers`. */
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

/** A method check: membership in `options.methods` when given, else the name's form only. */
function methodChecker(options: ValidatePlanOptions): { ok: (m: unknown) => boolean; known: string } {
  const m = options.methods;
  if (!m) return { ok: (x) => typeof x === 'string' && METHOD_NAME.test(x), known: 'a method name like "wars+asc"' };
  const allowed = new Set<string>(['full']);
  if (typeof (m as StrategyLookup).names === 'function') for (const n of (m as StrategyLookup).names()) allowed.add(n);
  else for (const n of m as Iterable<string>) allowed.add(n);
  return { ok: (x) => typeof x === 'string' && allowed.has(x), known: `known: ${[...allowed].join(', ')}` };
}

/** The fingerprint fields common to both versions (everything but the layers / the v1 window). */
function validateFingerprintCommon(fp: Record<string, unknown>, push: (path: string, message: string) => void): void {
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
  if (typeof fp.sampler !== 'string' || fp.sampler === '') push('fingerprint.sampler', `expected a non-empty string but received ${describeValue(fp.sampler)}`);
  if (fp.guidance !== null && (typeof fp.guidance !== 'number' || !Number.isFinite(fp.guidance))) {
    push('fingerprint.guidance', `expected a finite number or null but received ${describeValue(fp.guidance)}`);
  }
  if (fp.cfgOrder !== 'cond-first' && fp.cfgOrder !== 'cond-second' && fp.cfgOrder !== 'none') {
    push('fingerprint.cfgOrder', `expected "cond-first", "cond-second" or "none" but received ${describeValue(fp.cfgOrder)}`);
  }
}

/** Checks `steps[s][j]` entries against a layer count; shared by both versions. */
function validateSteps(doc: Record<string, unknown>, numSteps: number, numLayers: number | null, unit: string, options: ValidatePlanOptions, push: (path: string, message: string) => void): void {
  const method = methodChecker(options);
  if (!Array.isArray(doc.candidates)) push('candidates', `expected an array of method names but received ${describeValue(doc.candidates)}`);
  else {
    doc.candidates.forEach((c, i) => {
      if (!method.ok(c)) push(`candidates[${i}]`, `unknown method ${describeValue(c)}; ${method.known}`);
    });
  }
  if (doc.lossOn !== undefined && doc.lossOn !== 'output' && doc.lossOn !== 'prediction') {
    push('lossOn', `expected "output" or "prediction" (or no field) but received ${describeValue(doc.lossOn)}`);
  }
  if (doc.sites !== undefined && (!Array.isArray(doc.sites) || doc.sites.some((x) => typeof x !== 'string' || x === ''))) {
    push('sites', `expected an array of site names (or no field) but received ${describeValue(doc.sites)}`);
  }
  if (!Array.isArray(doc.steps)) return push('steps', `expected an array of steps but received ${describeValue(doc.steps)}`);
  if (numSteps >= 1 && doc.steps.length !== numSteps) push('steps', `expected ${numSteps} steps (fingerprint.steps) but received ${doc.steps.length}`);
  doc.steps.forEach((row, s) => {
    if (!Array.isArray(row)) return push(`steps[${s}]`, `expected an array of ${unit} entries but received ${describeValue(row)}`);
    if (numLayers !== null && row.length !== numLayers) push(`steps[${s}]`, `expected ${numLayers} ${unit}s but received ${row.length}`);
    row.forEach((e, j) => {
      const path = `steps[${s}][${j}]`;
      if (!isObject(e)) return push(path, `expected { method, loss, flopsFraction } but received ${describeValue(e)}`);
      if (!method.ok(e.method)) push(`${path}.method`, `unknown method ${describeValue(e.method)}; ${method.known}`);
      else if (s === 0 && needsEarlierStep(e.method as string, options)) {
        push(`${path}.method`, `step 0 must compute attention but the plan says ${JSON.stringify(e.method)}, which reads a cache of an earlier step`);
      }
      if (e.loss !== null && (typeof e.loss !== 'number' || !(e.loss >= 0))) push(`${path}.loss`, `expected a non-negative number or null but received ${describeValue(e.loss)}`);
      if (typeof e.flopsFraction !== 'number' || !(e.flopsFraction >= 0)) {
        push(`${path}.flopsFraction`, `expected a non-negative number but received ${describeValue(e.flopsFraction)}`);
      }
    });
  });
}

function validateTotals(doc: Record<string, unknown>, push: (path: string, message: string) => void): void {
  const totals = doc.totals;
  if (!isObject(totals) || typeof totals.attentionFlopsFraction !== 'number' || !(totals.attentionFlopsFraction >= 0)) {
    push('totals.attentionFlopsFraction', `expected a non-negative number but received ${describeValue(isObject(totals) ? totals.attentionFlopsFraction : totals)}`);
  }
  if (!isObject(doc.threshold) || typeof doc.threshold.delta !== 'number' || !(doc.threshold.delta >= 0)) {
    push('threshold.delta', `expected a non-negative number but received ${describeValue(isObject(doc.threshold) ? doc.threshold.delta : doc.threshold)}`);
  }
}

/**
 * Validates an untrusted plan document (e.g. parsed JSON) and returns it typed, or throws
 * {@link PlanValidationError}. A valid version-1 document is returned upgraded to version 2
 * ({@link upgradePlanV1}); any other version is refused.
 */
export function validatePlan(doc: unknown, options: ValidatePlanOptions = {}): PlanDocument {
  const issues: PlanIssue[] = [];
  const push = (path: string, message: string): void => void issues.push({ path, message });
  if (!isObject(doc)) throw new PlanValidationError([{ path: '$', message: `expected a plan object but received ${describeValue(doc)}` }]);
  if (doc.format !== PLAN_FORMAT) push('format', `expected "${PLAN_FORMAT}" but received ${describeValue(doc.format)}`);
  const version = doc.version;
  if (version !== PLAN_VERSION && version !== 1) {
    push('version', `expected format version ${PLAN_VERSION} (or 1, upgraded on load) but received ${describeValue(version)}; re-create the plan with this version of ditfa`);
    throw new PlanValidationError(issues);
  }
  const fp = doc.fingerprint;
  let steps = -1;
  let numLayers: number | null = null;
  if (!isObject(fp)) push('fingerprint', `expected an object but received ${describeValue(fp)}`);
  else {
    validateFingerprintCommon(fp, push);
    if (isInt(fp.steps, 1)) steps = fp.steps;
    if (version === 1) {
      validateWindowSpec(fp.window, 'fingerprint.window', issues);
    } else if (!Array.isArray(fp.layers) || fp.layers.length === 0) {
      push('fingerprint.layers', `expected a non-empty array of { id, window } but received ${describeValue(fp.layers)}`);
    } else {
      numLayers = fp.layers.length;
      const seen = new Set<string>();
      fp.layers.forEach((l, j) => {
        const path = `fingerprint.layers[${j}]`;
        if (!isObject(l)) return push(path, `expected { id, window } but received ${describeValue(l)}`);
        if (typeof l.id !== 'string' || !/^\d+\.[a-z][a-z0-9_-]*$/.test(l.id)) push(`${path}.id`, `expected a layer id "<block>.<site>" like "3.self" but received ${describeValue(l.id)}`);
        else if (seen.has(l.id)) push(`${path}.id`, `layer id "${l.id}" appears twice`);
        else seen.add(l.id);
        if (l.window !== null) validateWindowSpec(l.window, `${path}.window`, issues);
      });
    }
  }
  if (version !== 1 && isObject(fp) && fp.window !== undefined) {
    push('fingerprint.window', 'a version-2 plan has a window per layer (fingerprint.layers[i].window), not fingerprint.window; is this a version-1 plan with version 2 written in it?');
  }
  if (version !== 1 && doc.numBlocks !== undefined) push('numBlocks', 'a version-2 plan names its layers (fingerprint.layers) instead of numBlocks');
  if (version === 1) {
    if (!isInt(doc.numBlocks, 1)) push('numBlocks', `expected a positive integer but received ${describeValue(doc.numBlocks)}`);
    else numLayers = doc.numBlocks;
  }
  validateSteps(doc, steps, numLayers, version === 1 ? 'block' : 'layer', options, push);
  validateTotals(doc, push);
  if (issues.length > 0) throw new PlanValidationError(issues);
  return version === 1 ? upgradePlanV1(doc as unknown as PlanDocumentV1) : (doc as unknown as PlanDocument);
}

/** A version-1 plan document (one self-attention per block, one window): what ditfa 0.1 wrote. */
export interface PlanDocumentV1 extends Omit<PlanDocument, 'version' | 'fingerprint' | 'totals'> {
  readonly version: 1;
  readonly fingerprint: Omit<PlanFingerprint, 'layers'> & { readonly window: WindowSpec };
  readonly numBlocks: number;
  readonly totals: Omit<PlanTotals, 'layerEvaluations'> & { readonly blockEvaluations?: number };
}

/**
 * Upgrades a (validated) version-1 plan exactly: block `b` becomes layer `b.self` with the plan's window;
 * steps, losses, fractions and totals are unchanged (`blockEvaluations` becomes `layerEvaluations`).
 * Models whose blocks have one self-attention layer named `self` (DiT, PixArt-Σ) accept the result.
 */
export function upgradePlanV1(doc: PlanDocumentV1): PlanDocument {
  const { window, ...fingerprint } = doc.fingerprint;
  const { numBlocks, totals, ...rest } = doc;
  const { blockEvaluations, ...totalsRest } = totals;
  const layers = Array.from({ length: numBlocks }, (_, b) => ({ id: `${b}.self`, window }));
  return {
    ...rest,
    version: PLAN_VERSION,
    fingerprint: { ...fingerprint, layers },
    totals: { ...totalsRest, ...(blockEvaluations === undefined ? {} : { layerEvaluations: blockEvaluations }) },
  };
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
  if (Array.isArray(plan) && Array.isArray(expected)) {
    if (plan.length !== expected.length) {
      out.push({ field: `${path} (count)`, plan: plan.length, expected: expected.length });
      return;
    }
    plan.forEach((p, i) => compareFields(`${path}[${i}]`, p, expected[i], out));
    return;
  }
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
    numLayers: plan.fingerprint.layers.length,
    methodAt: (step, layer) => plan.steps[step]?.[layer]?.method,
  };
}

/** A plan view that uses one method everywhere (`full` gives the raw model). Step 0 is always `full`. */
export function uniformPlanView(numSteps: number, numLayers: number, method = 'full'): PlanView {
  return {
    numSteps,
    numLayers,
    methodAt: (step, layer) => (step < 0 || step >= numSteps || layer < 0 || layer >= numLayers ? undefined : step === 0 ? 'full' : method),
  };
}
