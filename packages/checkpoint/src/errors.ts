import { DitfaError, type DitfaErrorOptions } from '@ditfa/core';

/** Stable error codes of `@ditfa/checkpoint`. Match on these, never on messages. */
export const CheckpointErrorCode = {
  /** The bytes do not form a valid checkpoint: truncated, offsets out of range, sizes that disagree. */
  Corrupt: 'ERR_DITFA_CHECKPOINT_CORRUPT',
  /** A valid file that uses something this reader does not implement (a dtype, a format, a compression). */
  Unsupported: 'ERR_DITFA_CHECKPOINT_UNSUPPORTED',
  /** A pickle asked for an opcode or a global outside the allow-list. Nothing was executed. */
  UnsafePickle: 'ERR_DITFA_CHECKPOINT_UNSAFE_PICKLE',
  /** The file could not be opened or read; the `cause` holds the system error. */
  Io: 'ERR_DITFA_CHECKPOINT_IO',
} as const;
export type CheckpointErrorCode = (typeof CheckpointErrorCode)[keyof typeof CheckpointErrorCode];

/** Every error this package throws on purpose; `code` is one of {@link CheckpointErrorCode} or core's `ERR_DITFA_INVALID_ARGUMENT`. */
export class CheckpointError extends DitfaError {
  constructor(code: CheckpointErrorCode, message: string, options?: DitfaErrorOptions) {
    super(code, message, options);
  }
}

export function corrupt(message: string, options?: DitfaErrorOptions): CheckpointError {
  return new CheckpointError(CheckpointErrorCode.Corrupt, message, options);
}

export function unsupported(message: string, options?: DitfaErrorOptions): CheckpointError {
  return new CheckpointError(CheckpointErrorCode.Unsupported, message, options);
}
