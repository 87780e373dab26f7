/** Side-effect-free entry: the factories, nothing registered. */
export { asc, fullAsc, warsAsc } from './asc.js';
