import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { asFloat32, readSafetensors, toFloat32 } from '@ditfa/checkpoint';
import { InvalidArgumentError, ShapeMismatchError, expectShape, type Tensor } from '@ditfa/core';
import { createSession, floatTensor, loadOrt, type OrtSession } from '@ditfa/ort-graph';
import { featureStats, frechetDistance, type FeatureStats } from './frechet.js';

export interface JudgeOptions {
  /** How reports name this judge (`J1`, `J2`, …; default `judge`). */
  readonly name?: string;
  /** ONNX classifier: one input `[N, C, H, W]`, outputs `logits [N, classes]` and `features [N, d]`. */
  readonly classifier: string | Uint8Array;
  /** safetensors with `<set>_mu [d]` and `<set>_sigma [d, d]` reference statistics (e.g. `test_mu`). */
  readonly stats: string | Uint8Array;
  /** Which reference statistics {@link Judge.score} compares against by default (default `test`). */
  readonly reference?: string;
  readonly threads?: number;
}

export interface Scores {
  /** The judge's name (`J1`, `J2`, …). */
  readonly judge: string;
  readonly samples: number;
  /** Fraction of samples the classifier assigns to their intended class. */
  readonly accuracy: number;
  /** Fréchet distance of the samples' features to the reference statistics. */
  readonly frechet: number;
  readonly perClassAccuracy: readonly number[];
  /** Which reference statistics the Fréchet distance is measured against (`test`, `frames`, …). */
  readonly reference: string;
}

export interface ScoreOptions {
  /** Reference statistics to compare against (default: the judge's default, `test`). */
  readonly reference?: string;
}

/**
 * Judges generated samples with a classifier trained on the same data: class accuracy (does a sample
 * of class c look like class c) and a Fréchet distance in the classifier's penultimate features against
 * stored statistics of real data. Inputs are in the classifier's range (`[-1, 1]` for the bundled one).
 */
export class Judge {
  readonly #session: OrtSession;
  readonly #references: ReadonlyMap<string, FeatureStats>;
  readonly #reference: string;
  /** How reports name this judge. */
  readonly name: string;
  /** The statistics file's `info` metadata (test accuracy, reference distances, …), `{}` if absent. */
  readonly info: Readonly<Record<string, unknown>>;

  private constructor(name: string, session: OrtSession, references: ReadonlyMap<string, FeatureStats>, reference: string, info: Record<string, unknown>) {
    this.name = name;
    this.#session = session;
    this.#references = references;
    this.#reference = reference;
    this.info = info;
  }

  static async create(options: JudgeOptions): Promise<Judge> {
    const file = readSafetensors(options.stats);
    const set = options.reference ?? 'test';
    const references = new Map<string, FeatureStats>();
    const f64 = (t: NonNullable<ReturnType<typeof file.tensors.get>>): Float64Array =>
      t.dtype === 'F64' ? new Float64Array(t.bytes.slice().buffer) : Float64Array.from(t.dtype === 'F32' ? asFloat32(t) : toFloat32(t));
    for (const [key, mu] of file.tensors) {
      if (!key.endsWith('_mu')) continue;
      const name = key.slice(0, -3);
      const sigma = file.tensors.get(`${name}_sigma`);
      if (!sigma) continue;
      const dim = mu.shape[0] ?? 0;
      if (mu.shape.length !== 1 || sigma.shape.length !== 2 || sigma.shape[0] !== dim || sigma.shape[1] !== dim) {
        throw new ShapeMismatchError(`Expected ${name}_mu [d] and ${name}_sigma [d, d] but received [${mu.shape.join(', ')}] and [${sigma.shape.join(', ')}]`);
      }
      references.set(name, { dim, mu: f64(mu), sigma: f64(sigma) });
    }
    if (!references.has(set)) {
      throw new InvalidArgumentError(`Expected "${set}_mu" and "${set}_sigma" in the statistics file but it holds ${[...file.tensors.keys()].join(', ')}`);
    }
    let info: Record<string, unknown> = {};
    try {
      if (file.metadata.info) info = JSON.parse(file.metadata.info) as Record<string, unknown>;
    } catch {
      info = {};
    }
    const bytes = typeof options.classifier === 'string' ? new Uint8Array(readFileSync(options.classifier)) : options.classifier;
    const session = await createSession(bytes, options.threads === undefined ? {} : { threads: options.threads });
    for (const name of ['logits', 'features']) {
      if (!session.outputNames.includes(name)) {
        await session.release();
        throw new InvalidArgumentError(`Expected the classifier to output "logits" and "features" but it outputs ${session.outputNames.join(', ')}`);
      }
    }
    return new Judge(options.name ?? 'judge', session, references, set, info);
  }

  /** The reference statistics this judge holds (`test`, `train`, `frames`, …). */
  get references(): string[] {
    return [...this.#references.keys()];
  }

  /** Logits and penultimate features of images `[N, C, H, W]`. */
  async classify(images: Tensor): Promise<{ logits: Float32Array; features: Float32Array; classes: number; dim: number }> {
    expectShape('images', images, [-1, -1, -1, -1]);
    const ort = await loadOrt();
    const input = this.#session.inputNames[0]!;
    const out = await this.#session.run({ [input]: floatTensor(ort, images.data, images.shape) });
    const logits = out.logits!;
    const features = out.features!;
    return { logits: logits.data as Float32Array, features: features.data as Float32Array, classes: logits.dims[1]!, dim: features.dims[1]! };
  }

  /** Scores samples against the classes they were generated for. */
  async score(images: Tensor, labels: readonly number[], options: ScoreOptions = {}): Promise<Scores> {
    return (await this.scoreWithPredictions(images, labels, options)).scores;
  }

  /** {@link score}, and the class the judge assigns to each image. */
  async scoreWithPredictions(images: Tensor, labels: readonly number[], options: ScoreOptions = {}): Promise<{ scores: Scores; predicted: Int32Array }> {
    const n = images.shape[0] ?? 0;
    if (labels.length !== n) throw new ShapeMismatchError(`Expected one label per image (${n}) but received ${labels.length}`);
    const set = options.reference ?? this.#reference;
    const reference = this.#references.get(set);
    if (!reference) throw new InvalidArgumentError(`Expected a reference set this judge holds (${this.references.join(', ')}) but received ${JSON.stringify(set)}`);
    const { logits, features, classes, dim } = await this.classify(images);
    if (dim !== reference.dim) throw new ShapeMismatchError(`Expected ${reference.dim} features per image but the classifier gives ${dim}`);
    const predicted = argmaxRows(logits, n, classes);
    let correct = 0;
    const hits = new Array<number>(classes).fill(0);
    const totals = new Array<number>(classes).fill(0);
    for (let i = 0; i < n; i++) {
      const label = labels[i]!;
      totals[label] = (totals[label] ?? 0) + 1;
      if (predicted[i] === label) {
        correct++;
        hits[label] = (hits[label] ?? 0) + 1;
      }
    }
    const scores: Scores = {
      judge: this.name,
      samples: n,
      accuracy: correct / n,
      frechet: frechetDistance(featureStats(features, n, dim), reference),
      perClassAccuracy: totals.map((t, c) => (t === 0 ? Number.NaN : hits[c]! / t)),
      reference: set,
    };
    return { scores, predicted };
  }

  async dispose(): Promise<void> {
    await this.#session.release();
  }
}

/** Index of the largest value of each row of a row-major `n × classes` matrix (first one on ties). */
export function argmaxRows(values: ArrayLike<number>, n: number, classes: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (values[i * classes + c]! > values[i * classes + best]!) best = c;
    out[i] = best;
  }
  return out;
}

/** A judge's files: its ONNX classifier and its reference statistics. */
export interface JudgeFiles {
  readonly name: string;
  readonly classifier: string;
  readonly stats: string;
}

/**
 * The judges `tools/` trains for the bundled models, in report order: J1 (`train_classifier.py`, a small
 * CNN) and J2 (`train_judge2.py`, a ResNet trained with generation-like artefacts). File names are
 * relative to a models folder.
 */
export const BUNDLED_JUDGES: readonly JudgeFiles[] = [
  { name: 'J1', classifier: 'fashion-classifier.onnx', stats: 'fashion-classifier-stats.safetensors' },
  { name: 'J2', classifier: 'fashion-judge2.onnx', stats: 'fashion-judge2-stats.safetensors' },
];

/**
 * Finds the bundled judges in the given folders: for each of {@link BUNDLED_JUDGES}, the first folder that
 * holds both of its files. Judges found nowhere are left out (the list can be empty).
 */
export function findJudges(dirs: readonly string[], judges: readonly JudgeFiles[] = BUNDLED_JUDGES): JudgeFiles[] {
  const found: JudgeFiles[] = [];
  for (const j of judges) {
    for (const dir of dirs) {
      const classifier = path.join(dir, j.classifier);
      const stats = path.join(dir, j.stats);
      if (existsSync(classifier) && existsSync(stats)) {
        found.push({ name: j.name, classifier, stats });
        break;
      }
    }
  }
  return found;
}

/** Opens several judges (all or none: a failure releases the ones already opened). */
export async function createJudges(files: readonly JudgeFiles[], options: { readonly threads?: number } = {}): Promise<Judge[]> {
  const judges: Judge[] = [];
  try {
    for (const f of files) judges.push(await Judge.create({ ...f, ...(options.threads === undefined ? {} : { threads: options.threads }) }));
  } catch (error) {
    await Promise.all(judges.map((j) => j.dispose()));
    throw error;
  }
  return judges;
}

/** Scores the same samples with every judge, in the judges' order. */
export async function scoreAll(judges: readonly Judge[], images: Tensor, labels: readonly number[], options: ScoreOptions = {}): Promise<Scores[]> {
  const out: Scores[] = [];
  for (const j of judges) out.push(await j.score(images, labels, options));
  return out;
}
