import { DitfaError } from '@ditfa/core';

/** Stable error codes of the model adapters (beyond core's). */
export const ModelErrorCode = {
  /** Checkpoint keys do not match any supported layout, or some are missing or unexpected. */
  Keys: 'ERR_DITFA_MODEL_KEYS',
  /** A checkpoint tensor has a dtype the model cannot use (not a float type). */
  Dtype: 'ERR_DITFA_MODEL_DTYPE',
  /** The model configuration is invalid or contradicts the weights. */
  Config: 'ERR_DITFA_MODEL_CONFIG',
  /** The model was used after dispose(). */
  Disposed: 'ERR_DITFA_MODEL_DISPOSED',
  /** The requested dense precision or engine cannot run here (e.g. bf16 without a native bf16 path). */
  DenseUnavailable: 'ERR_DITFA_DENSE_UNAVAILABLE',
} as const;

/** The checkpoint's keys do not match what the model expects; the message lists the expected keys. */
export class ModelKeysError extends DitfaError {
  readonly missing: readonly string[];
  readonly unexpected: readonly string[];

  constructor(message: string, missing: readonly string[] = [], unexpected: readonly string[] = []) {
    super(ModelErrorCode.Keys, message);
    this.missing = missing;
    this.unexpected = unexpected;
  }
}

export class ModelDtypeError extends DitfaError {
  constructor(message: string) {
    super(ModelErrorCode.Dtype, message);
  }
}

export class ModelConfigError extends DitfaError {
  constructor(message: string) {
    super(ModelErrorCode.Config, message);
  }
}

export class ModelDisposedError extends DitfaError {
  constructor(what: string) {
    super(ModelErrorCode.Disposed, `Expected a live ${what} but it was disposed; create a new one`);
  }
}

/** The dense precision or engine asked for cannot run here; `reasons` says why, the message what to do. */
export class ModelDenseUnavailableError extends DitfaError {
  readonly reasons: readonly string[];

  constructor(what: string, reasons: readonly string[]) {
    super(
      ModelErrorCode.DenseUnavailable,
      `Expected to run the blocks' dense layers as asked but ${what}` +
        (reasons.length ? `:\n${reasons.map((r) => `  - ${r}`).join('\n')}` : '') +
        "\nRemedy: import '@ditfa/kernels-cpu' (native dense kernels; bf16 needs AMX-BF16 or AVX512-BF16) or pass a backend with dense kernels, or load with dense 'fp32'.",
    );
    this.reasons = reasons;
  }
}
