/**
 * `@ditfa/pipeline/worker` — the pipeline in a worker thread, so that a generation never blocks the
 * caller's event loop (onnxruntime-node runs a session synchronously, stalling the thread it runs on for
 * the whole dense layer). The worker imports an adapter factory by module specifier, makes the adapter
 * and the pipeline there, and answers `generate`, `fingerprint`, `layers`, `backend` and `calibrate`
 * calls; progress and events come back as they happen, an AbortSignal reaches the worker within one
 * attention layer, result tensors are moved (their buffers transferred, not copied), and errors are
 * re-created here with their `code`, `name` and message.
 */
import { createRequire } from 'node:module';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type AttentionLayer, DitfaError, InvalidArgumentError, type LossSpace, type PlanDocument, type PlanFingerprint, type WindowSpec, describeValue, expectInteger } from '@ditfa/core';
import { PipelineDisposedError } from '../errors.js';
import type { FingerprintOptions, GenerateOptionsBase, GenerateResult, PipelineEvent, PipelineOptions } from '../pipeline.js';
import { type ModuleRef, type Reply, type Request, type ResolvedRef, type WorkerModelInfo, reviveError } from './protocol.js';
import type { ThreadInit } from './thread.js';

export type { ModuleRef, WorkerModelInfo, SerializedError } from './protocol.js';
export { serializeError, reviveError } from './protocol.js';

/** Pipeline options that can cross to a worker (no functions). */
export interface WorkerPipelineSettings {
  readonly cacheBudgetBytes?: number;
  readonly compute?: PipelineOptions['compute'];
  readonly checkFinite?: boolean;
  /** One window for every layer that has one, or windows by layer id (unlisted layers keep the model's; `null`: no window methods). */
  readonly window?: WindowSpec | Readonly<Record<string, WindowSpec | null>>;
}

export interface WorkerPipelineOptions extends ModuleRef {
  /** Options of the pipeline made in the worker. */
  readonly pipelineOptions?: WorkerPipelineSettings;
  /**
   * Strategies of the pipeline: exports called in the worker, each returning a strategy or a list
   * (`{ module: '@ditfa/strategy-wars', export: 'strategies' }`). Default: the worker's registry, which
   * starts empty (registries are per thread): register there from an `imports` module, or list them here.
   */
  readonly strategies?: readonly ModuleRef[];
  /** Modules the worker imports first, for their side effects (a backend package that registers itself: `'@ditfa/kernels-cpu'`). */
  readonly imports?: readonly (string | URL)[];
  /** Where package specifiers resolve from (e.g. your module's `import.meta.url`); default: the working directory. */
  readonly parentURL?: string | URL;
  /** The plan search `calibrate` runs (default `@ditfa/planner`'s `searchPlan`, resolved from `parentURL` when first needed). */
  readonly planner?: ModuleRef;
  /** Pipeline events (backend, step, fallback, cache) as they happen in the worker. */
  readonly onEvent?: (event: PipelineEvent) => void;
  /** Environment of the worker (default: a copy of `process.env`). */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * How much lower the worker's scheduling priority is than the process's (Linux nice value, 0–19;
   * default 0). The worker and the threads it starts (onnxruntime's, the kernels') then yield the CPU
   * to the main thread when the cores are busy, which keeps its event loop prompt; generation is slower
   * only while the main thread has work of its own. Ignored where threads have no priority of their own.
   */
  readonly niceness?: number;
}

/** The part of the planner's search options that can cross (its `threshold`, `candidates`, `mode`, …), plus callbacks and signal here. */
export interface WorkerSearchOptions {
  readonly threshold: number | string;
  readonly candidates?: readonly string[];
  readonly mode?: 'prefix' | 'naive';
  readonly lossOn?: LossSpace;
  readonly sites?: readonly string[];
  readonly generator?: string;
  readonly resume?: unknown;
  readonly signal?: AbortSignal;
  readonly onProgress?: (event: unknown) => void;
  readonly onCheckpoint?: (state: unknown) => void;
}

/** The worker stopped (it crashed, or its thread was terminated) with calls in flight. */
export class WorkerExitedError extends DitfaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DITFA_WORKER_EXITED', message, options);
  }
}

/** Tests run the sources; the thread always runs the build. */
const THREAD = import.meta.url.endsWith('.ts') ? new URL('../../dist/worker/thread.js', import.meta.url) : new URL('./thread.js', import.meta.url);

/** A specifier as a URL the worker can import: file URLs and paths as they are, package specifiers resolved from `parentURL`. */
export function resolveModule(specifier: string | URL, parentURL: string | URL = pathToFileURL(`${process.cwd()}/`)): string {
  if (specifier instanceof URL) return specifier.href;
  if (typeof specifier !== 'string' || specifier === '') throw new InvalidArgumentError(`Expected a module specifier (a package name, a path or a file URL) but received ${describeValue(specifier)}`);
  if (/^(file|data|node):/.test(specifier)) return specifier;
  if (isAbsolute(specifier)) return pathToFileURL(specifier).href;
  if (specifier.startsWith('./') || specifier.startsWith('../')) return new URL(specifier, parentURL).href;
  try {
    return pathToFileURL(createRequire(parentURL).resolve(specifier)).href;
  } catch (cause) {
    throw new InvalidArgumentError(`Expected the module ${JSON.stringify(specifier)} to be installed where ${String(parentURL)} can import it, but it cannot be resolved from there: ${(cause as Error).message.split('\n')[0]}`, { cause });
  }
}

function resolveRef(ref: ModuleRef, parentURL: string | URL | undefined, what: string): ResolvedRef {
  if (!ref || typeof ref !== 'object') throw new InvalidArgumentError(`Expected ${what} as { module, export?, args? } but received ${describeValue(ref)}`);
  if (ref.args !== undefined && !Array.isArray(ref.args)) throw new InvalidArgumentError(`Expected ${what}.args to be an array but received ${describeValue(ref.args)}`);
  return { url: resolveModule(ref.module, parentURL), export: ref.export ?? 'default', args: ref.args ?? [] };
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: unknown): void;
  onProgress?: (event: unknown) => void;
  onCheckpoint?: (event: unknown) => void;
  signal?: AbortSignal;
}

/** The options of a call as they cross: callbacks and the signal stay here. */
function plain<T extends object>(options: T): T {
  const { onProgress: _p, signal: _s, ...rest } = options as T & { onProgress?: unknown; signal?: unknown };
  return rest as T;
}

/**
 * A pipeline running in a worker thread (see the module comment). Calls may run concurrently, as on an
 * in-thread pipeline. The worker keeps the process alive only while calls are in flight; `dispose()`
 * releases the model and ends the thread.
 */
export class WorkerPipeline<Options = Record<string, unknown>> {
  /** What the adapter in the worker says about itself. */
  readonly model: WorkerModelInfo;
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  readonly #options: WorkerPipelineOptions;
  #next = 1;
  #disposed: Promise<void> | undefined;
  #exited: Error | undefined;

  private constructor(worker: Worker, model: WorkerModelInfo, options: WorkerPipelineOptions) {
    this.#worker = worker;
    this.model = model;
    this.#options = options;
    worker.on('message', (reply: Reply) => this.#receive(reply));
    worker.on('error', (error) => this.#fail(new WorkerExitedError(`The pipeline's worker thread crashed: ${error.message}`, { cause: error })));
    worker.on('exit', (code) => this.#fail(new WorkerExitedError(`The pipeline's worker thread exited (code ${code})`)));
    worker.unref();
  }

  /** Starts the worker, makes the adapter and the pipeline there; rejects with the worker's error when that fails. */
  static async create<Options = Record<string, unknown>>(options: WorkerPipelineOptions): Promise<WorkerPipeline<Options>> {
    if (!options || typeof options !== 'object') throw new InvalidArgumentError(`Expected worker pipeline options { module, export?, args?, … } but received ${describeValue(options)}`);
    const parent = options.parentURL;
    const init: ThreadInit = {
      imports: (options.imports ?? []).map((m) => resolveModule(m, parent)),
      factory: resolveRef(options, parent, 'the adapter factory'),
      strategies: options.strategies ? options.strategies.map((r, i) => resolveRef(r, parent, `strategies[${i}]`)) : null,
      settings: { ...(options.pipelineOptions ?? {}) },
      planner: options.planner ? resolveRef(options.planner, parent, 'planner') : lazyPlanner(parent),
      niceness: options.niceness === undefined ? 0 : expectInteger('niceness', options.niceness, 0, 19),
    };
    let worker: Worker;
    try {
      worker = new Worker(THREAD, { workerData: init, ...(options.env ? { env: { ...options.env } } : {}) });
    } catch (cause) {
      throw new InvalidArgumentError(`Expected the worker's inputs to be plain data (structured-cloneable) but they are not: ${(cause as Error).message}`, { cause });
    }
    const model = await new Promise<WorkerModelInfo>((resolve, reject) => {
      const early = (reply: Reply): void => {
        if (reply.type === 'event') options.onEvent?.(reply.event as PipelineEvent);
        else if (reply.type === 'ready') done(() => resolve(reply.model));
        else if (reply.type === 'init-error') done(() => reject(reviveError(reply.error)));
      };
      const crashed = (error: Error): void => done(() => reject(new WorkerExitedError(`The pipeline's worker thread crashed while starting: ${error.message}`, { cause: error })));
      const exited = (code: number): void => done(() => reject(new WorkerExitedError(`The pipeline's worker thread exited (code ${code}) while starting`)));
      const done = (settle: () => void): void => {
        worker.off('message', early);
        worker.off('error', crashed);
        worker.off('exit', exited);
        settle();
      };
      worker.on('message', early);
      worker.on('error', crashed);
      worker.on('exit', exited);
    }).catch(async (error: unknown) => {
      await worker.terminate();
      throw error;
    });
    return new WorkerPipeline<Options>(worker, model, options);
  }

  #receive(reply: Reply): void {
    switch (reply.type) {
      case 'event':
        this.#options.onEvent?.(reply.event as PipelineEvent);
        return;
      case 'progress': {
        const p = this.#pending.get(reply.id);
        (reply.kind === 'checkpoint' ? p?.onCheckpoint : p?.onProgress)?.(reply.event);
        return;
      }
      case 'result':
      case 'error': {
        const p = this.#pending.get(reply.id);
        if (!p) return;
        this.#settled(reply.id);
        if (reply.type === 'result') p.resolve(reply.value);
        else p.reject(reviveError(reply.error, reply.error.code === 'ERR_DITFA_ABORTED' && p.signal?.aborted ? p.signal.reason : undefined));
        return;
      }
      default:
        return;
    }
  }

  #settled(id: number): void {
    this.#pending.delete(id);
    if (this.#pending.size === 0) this.#worker.unref();
  }

  #fail(error: Error): void {
    this.#exited ??= error;
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      p.reject(error);
    }
  }

  #call<T>(method: Extract<Request, { type: 'call' }>['method'], args: readonly unknown[], extra: Omit<Pending, 'resolve' | 'reject'> = {}): Promise<T> {
    if (this.#disposed) return Promise.reject(new PipelineDisposedError());
    if (this.#exited) return Promise.reject(this.#exited);
    const signal = extra.signal;
    if (signal?.aborted) return Promise.reject(reviveError({ name: 'AbortError', message: `The ${method === 'calibrate' ? 'plan search' : 'generation'} was aborted`, code: 'ERR_DITFA_ABORTED', ditfa: true, fields: {} }, signal.reason));
    const id = this.#next++;
    const flag = signal ? new Int32Array(new SharedArrayBuffer(4)) : undefined;
    return new Promise<T>((resolve, reject) => {
      try {
        this.#worker.postMessage({ type: 'call', id, method, args, ...(flag ? { flag } : {}) } satisfies Request);
      } catch (cause) {
        reject(new InvalidArgumentError(`Expected options that can cross to the worker thread (plain data: a sampler kind rather than a SamplerFactory, no functions) but received something that cannot: ${(cause as Error).message}`, { cause }));
        return;
      }
      const onAbort = (): void => {
        if (flag) Atomics.store(flag, 0, 1);
        this.#worker.postMessage({ type: 'abort', id } satisfies Request);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, {
        ...extra,
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v as T);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      });
      this.#worker.ref();
    });
  }

  /** Runs one generation in the worker. The result's tensors arrive moved (their buffers transferred). */
  generate(options: Options & GenerateOptionsBase): Promise<GenerateResult> {
    const { onProgress, signal } = options;
    return this.#call<GenerateResult>('generate', [plain(options)], {
      ...(onProgress ? { onProgress: onProgress as (e: unknown) => void } : {}),
      ...(signal ? { signal } : {}),
    });
  }

  /** What a plan for a generation with these options must have been made for. */
  fingerprint(options: FingerprintOptions & Partial<Options>): Promise<PlanFingerprint> {
    return this.#call('fingerprint', [plain(options)]);
  }

  /** The attention layers of a generation with these options (see the in-thread pipeline's `layers`). */
  layers(options: FingerprintOptions & Partial<Options>, batch?: number): Promise<readonly AttentionLayer[]> {
    return this.#call('layers', batch === undefined ? [plain(options)] : [plain(options), batch]);
  }

  /** The kernel backend the worker's pipeline runs on (resolved there on first use; the `backend` event says why when it fell back). */
  backend(): Promise<{ readonly name: string }> {
    return this.#call('backend', [{}]);
  }

  /**
   * Searches a plan in the worker (`@ditfa/planner`'s `searchPlan` on the pipeline's calibration
   * target with these generate options); progress, checkpoints and abort cross as for `generate`.
   */
  calibrate(options: Options & GenerateOptionsBase, search: WorkerSearchOptions): Promise<PlanDocument> {
    const { onProgress, onCheckpoint, signal, ...rest } = search;
    return this.#call<PlanDocument>('calibrate', [plain(options), { ...rest, progress: onProgress !== undefined, checkpoint: onCheckpoint !== undefined }], {
      ...(onProgress ? { onProgress } : {}),
      ...(onCheckpoint ? { onCheckpoint } : {}),
      ...(signal ? { signal } : {}),
    });
  }

  /** Releases the model in the worker and ends the thread; calls in flight are aborted. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      if (this.#exited) return;
      const done = new Promise<void>((resolve, reject) => {
        const onMessage = (reply: Reply): void => {
          if (reply.type !== 'disposed') return;
          this.#worker.off('message', onMessage);
          if (reply.error) reject(reviveError(reply.error));
          else resolve();
        };
        this.#worker.on('message', onMessage);
        this.#worker.once('exit', () => resolve());
      });
      this.#worker.ref();
      this.#worker.postMessage({ type: 'dispose' } satisfies Request);
      try {
        await done;
      } finally {
        this.#fail(new PipelineDisposedError());
        await this.#worker.terminate();
      }
    })();
    return this.#disposed;
  }
}

/** `@ditfa/planner`'s `searchPlan`, resolved from `parentURL` if it can be (else the reason, given at the first `calibrate`). */
function lazyPlanner(parentURL: string | URL | undefined): ThreadInit['planner'] {
  try {
    return { url: resolveModule('@ditfa/planner', parentURL), export: 'searchPlan', args: [] };
  } catch (error) {
    return { error: `Expected @ditfa/planner for calibrate() (or the planner option) but ${(error as Error).message}` };
  }
}

/** A pipeline in a worker thread: `createWorkerPipeline({ module, export, args, pipelineOptions, strategies, imports })`. */
export function createWorkerPipeline<Options = Record<string, unknown>>(options: WorkerPipelineOptions): Promise<WorkerPipeline<Options>> {
  return WorkerPipeline.create<Options>(options);
}
