/** Side-effect-free entry: the factories, nothing registered. */
export { wars, windowAttentionNoResidual, type WindowAttentionNoResidualOptions } from './wars.js';
export { defaultWindow, neighbourhoodWindow } from './window.js';
