export * from './errors.js';
export * from './dtype.js';
export * from './source.js';
export * from './safetensors.js';
export * from './hash.js';
