import { readFile } from 'node:fs/promises';
import { parsePlan, type PlanDocument, type ValidatePlanOptions } from '@ditfa/core';
import { InputFileError } from './errors.js';

/** Reads a file, turning "not found" and friends into an {@link InputFileError} that names the path. */
export async function readInput(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'it does not exist' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (cause as Error).message;
    throw new InputFileError(`Cannot read the ${what} ${JSON.stringify(path)}: ${why}`, { cause });
  }
}

export async function readPlan(path: string, options?: ValidatePlanOptions): Promise<PlanDocument> {
  const text = (await readInput(path, 'plan')).toString('utf8');
  return parsePlan(text, options);
}
