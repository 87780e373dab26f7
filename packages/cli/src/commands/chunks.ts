import { UsageError } from '../errors.js';

/**
 * `items` cut into consecutive runs of at most `size` (the last one may be shorter): the demo generates a
 * large request a chunk at a time so that memory stays bounded. `what` names the items in the error
 * for a size that is not a positive whole number.
 */
export function chunk<T>(items: readonly T[], size: number, what: string): T[][] {
  if (!Number.isInteger(size) || size < 1) throw new UsageError(`Expected a positive whole number of ${what} per chunk but received ${size}`);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
