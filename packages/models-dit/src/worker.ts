/**
 * `@ditfa/models-dit/worker` — DiT and PixArt-Σ in a worker thread. {@link loadAdapter} is the adapter
 * factory the worker imports (`@ditfa/pipeline/worker` builds the pipeline around it there);
 * {@link openWorkerPipeline} starts such a worker from the main thread in one call.
 */
import { type ModuleRef, type WorkerPipeline, type WorkerPipelineSettings, createWorkerPipeline } from '@ditfa/pipeline/worker';
import type { PipelineEvent } from '@ditfa/pipeline';
import type { DecodeOptions } from './adapter.js';
import { type LoadModelOptions, loadModel } from './load.js';
import { type DitFamilyAdapter, type GenerateOptions, adapterFor } from './pipeline.js';

/** Options of {@link loadAdapter}: plain data, so they can be sent to a worker. */
export interface AdapterOptions extends Omit<LoadModelOptions, 'threads'> {
  /** onnxruntime intra-op threads of the transformer and VAE sessions (default: one per core). */
  readonly threads?: number;
  /** ONNX VAE decoder file (latent_sample → sample) for latent-space models. */
  readonly vae?: string;
  readonly vaeScale?: number;
}

/**
 * Loads a model (a folder with weights and `config.json`, or a checkpoint file, as `loadModel` takes)
 * and wraps it in its family's pipeline adapter. This is the factory a worker pipeline calls inside the
 * worker: `createWorkerPipeline({ module: '@ditfa/models-dit/worker', export: 'loadAdapter', args: [dir, options] })`.
 */
export async function loadAdapter(source: string, options: AdapterOptions = {}): Promise<DitFamilyAdapter> {
  const { vae, vaeScale, ...load } = options;
  const model = await loadModel(source, load);
  const decode: DecodeOptions = { ...(vae === undefined ? {} : { vae }), ...(vaeScale === undefined ? {} : { vaeScale }), ...(options.threads === undefined ? {} : { threads: options.threads }) };
  return adapterFor(model, decode);
}

export default loadAdapter;

export interface WorkerPipelineFromFolderOptions extends AdapterOptions {
  /**
   * Strategies of the pipeline, made in the worker: exports returning strategies, e.g.
   * `{ module: '@ditfa/strategy-wars', export: 'strategies' }`. Default: the worker's registry.
   */
  readonly strategies?: readonly ModuleRef[];
  /** Modules the worker imports first for their side effects, e.g. `'@ditfa/kernels-cpu'` (registers the native kernels). */
  readonly imports?: readonly (string | URL)[];
  /** Where `strategies` and `imports` resolve from (your module's `import.meta.url`); default the working directory. */
  readonly parentURL?: string | URL;
  readonly cacheBudgetBytes?: number;
  readonly checkFinite?: boolean;
  /** One window, or windows by layer id (a plan's: `Object.fromEntries(plan.fingerprint.layers.map((l) => [l.id, l.window]))`). */
  readonly window?: WorkerPipelineSettings['window'];
  readonly onEvent?: (event: PipelineEvent) => void;
  /** The worker's nice value relative to the process (Linux; see `@ditfa/pipeline/worker`'s `niceness`). */
  readonly niceness?: number;
}

/** Tests run the sources; the worker always imports the build. */
const SELF = import.meta.url.endsWith('.ts') ? new URL('../dist/worker.js', import.meta.url) : new URL(import.meta.url);

/**
 * A DiT or PixArt-Σ pipeline in a worker thread (see `@ditfa/pipeline/worker`): `generate`, `fingerprint`,
 * `layers`, `backend`, `calibrate` and `dispose`, with `model.config` the model's configuration.
 */
export function openWorkerPipeline(source: string, options: WorkerPipelineFromFolderOptions = {}): Promise<WorkerPipeline<GenerateOptions>> {
  const { strategies, imports, parentURL, cacheBudgetBytes, checkFinite, window, onEvent, niceness, ...adapter } = options;
  const settings: { -readonly [K in keyof WorkerPipelineSettings]: WorkerPipelineSettings[K] } = {};
  if (cacheBudgetBytes !== undefined) settings.cacheBudgetBytes = cacheBudgetBytes;
  if (checkFinite !== undefined) settings.checkFinite = checkFinite;
  if (window !== undefined) settings.window = window;
  return createWorkerPipeline<GenerateOptions>({
    module: SELF,
    export: 'loadAdapter',
    args: [source, adapter],
    pipelineOptions: settings,
    ...(strategies ? { strategies } : {}),
    ...(imports ? { imports } : {}),
    ...(parentURL ? { parentURL } : {}),
    ...(onEvent ? { onEvent } : {}),
    ...(niceness === undefined ? {} : { niceness }),
  });
}
