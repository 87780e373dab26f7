/** Side-effect-free entry: the factories and the cache kind, nothing registered. */
export { REUSE_CACHE, attentionKeep, attentionReuse } from './reuse.js';
