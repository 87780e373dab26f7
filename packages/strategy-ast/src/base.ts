/** Side-effect-free entry: the factory, nothing registered. */
export { PROJECTED_CACHE, ast } from './ast.js';
