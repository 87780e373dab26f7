/** Side-effect-free entry: the factories and the residual convention, nothing registered. */
export { fullWithResidual, fullWithResidualFlops, residualFull } from './full.js';
export {
  RESIDUAL_CACHE,
  computeFullAttention,
  computeWindowWithResidual,
  requireContextWindow,
  residualNeededAhead,
  supportsResidual,
} from './residual.js';
export { wars, windowAttentionNoResidual, type WindowAttentionNoResidualOptions } from './wars.js';
export { defaultWindow, neighbourhoodWindow } from './window.js';
