/**
 * @ditfa/models-dit — DiT and PixArt-Σ on onnxruntime-node. Dense layers run as ONNX graphs built from
 * the weights; each block's self-attention is an attention layer (`b.self`) that `@ditfa/pipeline`'s
 * dispatcher sends to the strategy the plan names. The adapters (`DitAdapter`, `PixartAdapter`) run on
 * `@ditfa/pipeline`; `createPipeline` makes one.
 */
export * from './errors.js';
export * from './config.js';
export * from './embeddings.js';
export * from './weights.js';
export * from './graphs.js';
export * from './model.js';
export * from './load.js';
export * from './random.js';
export * from './adapter.js';
export * from './dit.js';
export * from './pixart.js';
export * from './pipeline.js';
