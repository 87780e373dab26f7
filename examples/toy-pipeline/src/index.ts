/**
 * @ditfa-examples/toy-pipeline — a test driver for attention strategies (private, never published).
 * It plays the model adapter's side of the strategy contract on a toy model and counts the dense work.
 */
export * from './toy-model.js';
export * from './driver.js';
