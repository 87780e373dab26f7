/**
 * @ditfa/pipeline — the model-agnostic denoising pipeline: a model adapter ({@link DenoiserModel})
 * supplies the dense work and its attention layers; the pipeline runs the sampler loop with
 * classifier-free guidance, checks plans, dispatches every (step, attention layer) to the strategy the
 * plan names, counts attention FLOPs and fallbacks, finds NaN/Inf faults, and gives the planner its
 * calibration target.
 */
export * from './model.js';
export * from './dispatcher.js';
export * from './numerics.js';
export * from './errors.js';
export * from './pipeline.js';
