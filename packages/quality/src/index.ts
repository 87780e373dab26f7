/** @ditfa/quality — class accuracy and Fréchet distance of generated samples, judged by an ONNX classifier. */
export * from './frechet.js';
export * from './judge.js';
export { sqrtPsd, symmetricEigen } from './linalg.js';
