/** Side-effect-free entry: the factory, nothing registered. */
export { ast } from './ast.js';
