export * from './grid-model.js';
