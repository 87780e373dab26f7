/** Side-effect-free entry: the factory and the kernel, nothing registered. */
export { dilated, type DilatedOptions } from './dilated.js';
export { DILATED_KERNEL, dilatedKernelConfigs, dilatedPairs, dilatedWindowAttention, type DilatedWindowArgs } from './kernel.js';
