/**
 * The worker thread of a {@link WorkerPipeline}: imports the adapter factory, makes the adapter and the
 * pipeline here, and answers the main thread's calls. Started by `createWorkerPipeline`; not imported.
 */
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { type AttentionStrategy, InvalidArgumentError, type WindowSpec, describeValue } from '@ditfa/core';
import type { DenoiserModel } from '../model.js';
import { type GenerateOptionsBase, type PipelineOptions, createPipeline } from '../pipeline.js';
import { type Reply, type Request, type ResolvedRef, serializeError, transferables } from './protocol.js';

/** What `createWorkerPipeline` hands the thread. */
export interface ThreadInit {
  readonly imports: readonly string[];
  readonly factory: ResolvedRef;
  readonly strategies: readonly ResolvedRef[] | null;
  readonly settings: {
    readonly cacheBudgetBytes?: number;
    readonly compute?: PipelineOptions['compute'];
    readonly checkFinite?: boolean;
    readonly window?: WindowSpec | Readonly<Record<string, WindowSpec | null>>;
  };
  /** The plan search module, or why it could not be resolved. */
  readonly planner: ResolvedRef | { readonly error: string };
  /** Added to this thread's nice value before anything else runs (Linux), so the threads it starts inherit it. */
  readonly niceness: number;
}

const port = parentPort!;
const init = workerData as ThreadInit;

function post(reply: Reply, transfer: ArrayBuffer[] = []): void {
  try {
    port.postMessage(reply, transfer);
  } catch {
    // a buffer that cannot be moved (an external one): copy it instead
    port.postMessage(reply);
  }
}

async function call(ref: ResolvedRef): Promise<unknown> {
  const mod = (await import(ref.url)) as Record<string, unknown>;
  const fn = mod[ref.export];
  if (typeof fn !== 'function') {
    throw new InvalidArgumentError(`Expected ${ref.url} to export a function named "${ref.export}" but it exports ${describeValue(fn)} there (exports: ${Object.keys(mod).join(', ') || 'none'})`);
  }
  return (fn as (...a: unknown[]) => unknown)(...ref.args);
}

const REQUIRED = ['latent', 'condition', 'attentionLayers', 'embed', 'runLayers', 'output', 'dispose'] as const;

function checkModel(value: unknown, ref: ResolvedRef): DenoiserModel {
  const m = value as Partial<DenoiserModel> | null;
  const missing = REQUIRED.filter((k) => typeof m?.[k] !== 'function');
  if (!m || typeof m !== 'object' || missing.length > 0) {
    throw new InvalidArgumentError(
      `Expected ${ref.export}(...) of ${ref.url} to make a model adapter (a DenoiserModel) but it made ${describeValue(value)}` + (m && typeof m === 'object' ? ` without ${missing.join(', ')}()` : ''),
    );
  }
  return m as DenoiserModel;
}

/**
 * The adapter as the pipeline here sees it: the same, except that before each attention layer the
 * abort flags of the calls in flight are read, so an abort lands within one layer even while the
 * thread never yields to its event loop.
 */
function guarded(m: DenoiserModel, poll: () => void): DenoiserModel {
  return {
    get architecture() {
      return m.architecture;
    },
    get weightsHash() {
      return m.weightsHash;
    },
    get cfgOrder() {
      return m.cfgOrder;
    },
    get prediction() {
      return m.prediction;
    },
    get learnSigma() {
      return m.learnSigma;
    },
    latent: (o) => m.latent(o),
    condition: (o, cfg) => m.condition(o, cfg),
    attentionLayers: (latent, batch, cfg) => m.attentionLayers(latent, batch, cfg),
    embed: (x, t, cond) => m.embed(x, t, cond),
    runLayers: (state, from, to, attend) =>
      m.runLayers(state, from, to, (i, hooks) => {
        poll();
        return attend(i, hooks);
      }),
    output: (state) => m.output(state),
    ...(m.inspect ? { inspect: (state: unknown) => m.inspect!(state) } : {}),
    ...(m.decode ? { decode: (latents: Parameters<NonNullable<DenoiserModel['decode']>>[0]) => m.decode!(latents) } : {}),
    dispose: () => m.dispose(),
  };
}

function windowOption(w: ThreadInit['settings']['window']): PipelineOptions['window'] {
  if (w === undefined) return undefined;
  if (typeof (w as WindowSpec).kind === 'string') return w as WindowSpec;
  const byId = w as Readonly<Record<string, WindowSpec | null>>;
  return (layer) => (Object.hasOwn(byId, layer.id) ? byId[layer.id]! : layer.window);
}

/** Calls in flight: their abort controllers and shared flags. */
const active = new Map<number, { controller: AbortController; flag: Int32Array | undefined }>();

function poll(): void {
  for (const { controller, flag } of active.values()) {
    if (!controller.signal.aborted && flag && Atomics.load(flag, 0) === 1) controller.abort();
  }
}

/**
 * Lowers this thread's scheduling priority by `n` (Linux: a thread's nice value is its own, and the
 * threads it creates — onnxruntime's intra-op pool, a kernel pool started here — inherit it). Elsewhere,
 * or when not permitted, the thread keeps the process's priority.
 */
function lowerPriority(n: number): void {
  if (n <= 0) return;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, Math.min(19, getPriority(tid) + n));
  } catch {
    // not Linux (no /proc/thread-self), or not permitted
  }
}

async function main(): Promise<void> {
  lowerPriority(init.niceness);
  let pipe: ReturnType<typeof createPipeline>;
  let model: DenoiserModel;
  try {
    for (const url of init.imports) await import(url);
    model = checkModel(await call(init.factory), init.factory);
    let strategies: AttentionStrategy[] | undefined;
    if (init.strategies) {
      strategies = [];
      for (const ref of init.strategies) {
        const made = await call(ref);
        strategies.push(...(Array.isArray(made) ? (made as AttentionStrategy[]) : [made as AttentionStrategy]));
      }
    }
    const window = windowOption(init.settings.window);
    pipe = createPipeline(guarded(model, poll), {
      ...init.settings,
      window,
      ...(strategies ? { strategies } : {}),
      onEvent: (event) => post({ type: 'event', event }),
    });
  } catch (error) {
    post({ type: 'init-error', error: serializeError(error) });
    return;
  }
  const config = (model as { config?: unknown }).config;
  post({
    type: 'ready',
    model: {
      architecture: model.architecture,
      weightsHash: model.weightsHash,
      cfgOrder: model.cfgOrder,
      prediction: model.prediction,
      learnSigma: model.learnSigma,
      decodes: typeof model.decode === 'function',
      config: config !== undefined && isCloneable(config) ? config : null,
    },
  });

  port.on('message', (req: Request) => {
    if (req.type === 'abort') {
      active.get(req.id)?.controller.abort();
      return;
    }
    if (req.type === 'dispose') {
      for (const { controller } of active.values()) controller.abort();
      pipe.dispose().then(
        () => post({ type: 'disposed' }),
        (error: unknown) => post({ type: 'disposed', error: serializeError(error) }),
      );
      return;
    }
    const { id, method, args } = req;
    const controller = new AbortController();
    active.set(id, { controller, flag: req.flag });
    const progress = (kind: 'progress' | 'checkpoint') => (event: unknown) => post({ type: 'progress', id, kind, event });
    (async (): Promise<unknown> => {
      const options = args[0] as GenerateOptionsBase & Record<string, unknown>;
      switch (method) {
        case 'generate':
          return pipe.generate({ ...options, signal: controller.signal, onProgress: progress('progress') });
        case 'fingerprint':
          return pipe.fingerprint(options);
        case 'layers':
          return pipe.layers(options, args[1] as number | undefined);
        case 'backend':
          return { name: (await pipe.backend()).name };
        case 'calibrate': {
          const { progress: wantsProgress, checkpoint: wantsCheckpoint, ...search } = (args[1] ?? {}) as Record<string, unknown>;
          const target = pipe.calibrationTarget(options);
          const ref = init.planner;
          if ('error' in ref) throw new InvalidArgumentError(ref.error);
          const planner = (await import(ref.url)) as Record<string, unknown>;
          const searchPlan = planner[ref.export];
          if (typeof searchPlan !== 'function') throw new InvalidArgumentError(`Expected ${ref.url} to export ${ref.export}() (the plan search of @ditfa/planner) but it does not`);
          return (searchPlan as (t: unknown, o: unknown) => Promise<unknown>)(target, {
            ...search,
            signal: controller.signal,
            ...(wantsProgress ? { onProgress: progress('progress') } : {}),
            ...(wantsCheckpoint ? { onCheckpoint: progress('checkpoint') } : {}),
          });
        }
      }
    })().then(
      (value) => {
        active.delete(id);
        post({ type: 'result', id, value }, transferables(value));
      },
      (error: unknown) => {
        active.delete(id);
        post({ type: 'error', id, error: serializeError(error) });
      },
    );
  });
}

function isCloneable(value: unknown): boolean {
  try {
    structuredClone(value);
    return true;
  } catch {
    return false;
  }
}

await main();
