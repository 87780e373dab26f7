/**
 * @ditfa/models-dit — DiT and PixArt-Σ on onnxruntime-node. Dense layers run as ONNX graphs built from
 * the weights; self-attention goes to the attention strategy the plan names for each (step, block).
 */
export * from './errors.js';
export * from './config.js';
export * from './embeddings.js';
export * from './weights.js';
export * from './graphs.js';
export * from './model.js';
export * from './load.js';
export * from './random.js';
export * from './pipeline.js';
