import { DitfaError, ErrorCode } from '@ditfa/core';

/** Exit codes of the `ditfa` command. */
export const ExitCode = {
  Ok: 0,
  /** An unexpected failure (a bug, or the environment): the stack trace is printed. */
  Internal: 1,
  /** Bad command line: unknown option, bad value. */
  Usage: 2,
  /** An input file is missing, unreadable or invalid. */
  Input: 3,
  /** A plan made for another model/configuration. */
  PlanMismatch: 4,
  /** Interrupted (Ctrl-C). */
  Aborted: 130,
} as const;

/** A user error of the command line: printed without a stack trace. */
export class UsageError extends DitfaError {
  constructor(message: string) {
    super('ERR_DITFA_USAGE', message);
  }
}

/** A missing or unreadable input file. */
export class InputFileError extends DitfaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DITFA_INPUT_FILE', message, options);
  }
}

/** Maps an error to the exit code and whether it is the user's (no stack trace). */
export function classify(error: unknown): { code: number; user: boolean } {
  if (!(error instanceof DitfaError)) return { code: ExitCode.Internal, user: false };
  switch (error.code) {
    case 'ERR_DITFA_USAGE':
    case ErrorCode.InvalidArgument:
      return { code: ExitCode.Usage, user: true };
    case ErrorCode.PlanMismatch:
      return { code: ExitCode.PlanMismatch, user: true };
    case ErrorCode.Aborted:
      return { code: ExitCode.Aborted, user: true };
    default:
      // every other coded error is about the inputs: files, checkpoints, plans, shapes
      return { code: ExitCode.Input, user: true };
  }
}
