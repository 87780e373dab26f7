/** @ditfa/quality — class accuracy and Fréchet distance of generated samples (images and clips), judged by ONNX classifiers, and the temporal consistency of clips. */
export * from './frechet.js';
export * from './judge.js';
export * from './video.js';
export { sqrtPsd, symmetricEigen } from './linalg.js';
