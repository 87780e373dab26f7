import { DitfaError } from '@ditfa/core';

/** A disposed pipeline was used. */
export class PipelineDisposedError extends DitfaError {
  constructor() {
    super('ERR_DITFA_DISPOSED', 'Expected a live pipeline but this one was disposed; create a new one');
  }
}
