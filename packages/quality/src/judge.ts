import { readFileSync } from 'node:fs';
import { asFloat32, readSafetensors, toFloat32 } from '@ditfa/checkpoint';
import { InvalidArgumentError, ShapeMismatchError, expectShape, type Tensor } from '@ditfa/core';
import { createSession, floatTensor, loadOrt, type OrtSession } from '@ditfa/ort-graph';
import { featureStats, frechetDistance, type FeatureStats } from './frechet.js';

export interface JudgeOptions {
  /** ONNX classifier: one input `[N, C, H, W]`, outputs `logits [N, classes]` and `features [N, d]`. */
  readonly classifier: string | Uint8Array;
  /** safetensors with `<set>_mu [d]` and `<set>_sigma [d, d]` reference statistics (e.g. `test_mu`). */
  readonly stats: string | Uint8Array;
  /** Which reference statistics to compare against (default `test`). */
  readonly reference?: string;
  readonly threads?: number;
}

export interface Scores {
  readonly samples: number;
  /** Fraction of samples the classifier assigns to their intended class. */
  readonly accuracy: number;
  /** Fréchet distance of the samples' features to the reference statistics. */
  readonly frechet: number;
  readonly perClassAccuracy: readonly number[];
}

/**
 * Judges generated samples with a classifier trained on the same data: class accuracy (does a sample
 * of class c look like class c) and a Fréchet distance in the classifier's penultimate features against
 * stored statistics of real data. Inputs are in the classifier's range (`[-1, 1]` for the bundled one).
 */
export class Judge {
  readonly #session: OrtSession;
  readonly #reference: FeatureStats;

  private constructor(session: OrtSession, reference: FeatureStats) {
    this.#session = session;
    this.#reference = reference;
  }

  static async create(options: JudgeOptions): Promise<Judge> {
    const bytes = typeof options.classifier === 'string' ? new Uint8Array(readFileSync(options.classifier)) : options.classifier;
    const session = await createSession(bytes, options.threads === undefined ? {} : { threads: options.threads });
    for (const name of ['logits', 'features']) {
      if (!session.outputNames.includes(name)) {
        throw new InvalidArgumentError(`Expected the classifier to output "logits" and "features" but it outputs ${session.outputNames.join(', ')}`);
      }
    }
    const file = readSafetensors(options.stats);
    const set = options.reference ?? 'test';
    const mu = file.tensors.get(`${set}_mu`);
    const sigma = file.tensors.get(`${set}_sigma`);
    if (!mu || !sigma) {
      throw new InvalidArgumentError(`Expected "${set}_mu" and "${set}_sigma" in the statistics file but it holds ${[...file.tensors.keys()].join(', ')}`);
    }
    const dim = mu.shape[0] ?? 0;
    if (mu.shape.length !== 1 || sigma.shape.length !== 2 || sigma.shape[0] !== dim || sigma.shape[1] !== dim) {
      throw new ShapeMismatchError(`Expected ${set}_mu [d] and ${set}_sigma [d, d] but received [${mu.shape.join(', ')}] and [${sigma.shape.join(', ')}]`);
    }
    const f64 = (t: typeof mu): Float64Array =>
      t.dtype === 'F64' ? new Float64Array(t.bytes.slice().buffer) : Float64Array.from(t.dtype === 'F32' ? asFloat32(t) : toFloat32(t));
    return new Judge(session, { dim, mu: f64(mu), sigma: f64(sigma) });
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
  async score(images: Tensor, labels: readonly number[]): Promise<Scores> {
    const n = images.shape[0] ?? 0;
    if (labels.length !== n) throw new ShapeMismatchError(`Expected one label per image (${n}) but received ${labels.length}`);
    const { logits, features, classes, dim } = await this.classify(images);
    if (dim !== this.#reference.dim) throw new ShapeMismatchError(`Expected ${this.#reference.dim} features per image but the classifier gives ${dim}`);
    let correct = 0;
    const hits = new Array<number>(classes).fill(0);
    const totals = new Array<number>(classes).fill(0);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let c = 1; c < classes; c++) if (logits[i * classes + c]! > logits[i * classes + best]!) best = c;
      const label = labels[i]!;
      totals[label] = (totals[label] ?? 0) + 1;
      if (best === label) {
        correct++;
        hits[label] = (hits[label] ?? 0) + 1;
      }
    }
    return {
      samples: n,
      accuracy: correct / n,
      frechet: frechetDistance(featureStats(features, n, dim), this.#reference),
      perClassAccuracy: totals.map((t, c) => (t === 0 ? Number.NaN : hits[c]! / t)),
    };
  }

  async dispose(): Promise<void> {
    await this.#session.release();
  }
}
