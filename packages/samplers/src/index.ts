export * from './sampler.js';
export * from './create.js';
export * from './schedule.js';
export * from './dpm-solver.js';
export * from './ddim.js';
export * from './iddpm.js';
export * from './guidance.js';
export * from './rng.js';
