/**
 * @ditfa/models-opensora — Open-Sora STDiT2 (v1.1) and STDiT3 (v1.2) on onnxruntime-node. Dense layers
 * run as ONNX graphs built from the weights; every spatial, temporal and cross-attention is an attention
 * layer that `@ditfa/pipeline`'s dispatcher sends to the strategy the plan names.
 */
export * from './config.js';
export * from './embeddings.js';
export * from './weights.js';
export * from './graphs.js';
export * from './model.js';
export * from './load.js';
export * from './random.js';
export * from './adapter.js';
export * from './sampling.js';
export * from './pipeline.js';
export * from './video.js';
export * from './bundle.js';
