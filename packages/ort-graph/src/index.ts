/**
 * @ditfa/ort-graph — writes ONNX models from TypeScript (a small protobuf writer and a graph builder
 * with transformer layer helpers) and turns them into onnxruntime-node CPU sessions.
 */
export * from './proto.js';
export * from './graph.js';
export * from './layers.js';
export * from './session.js';
