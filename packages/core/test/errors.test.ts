import { describe, expect, it } from 'vitest';
import { AbortedError, DitfaError, ErrorCode, InvalidArgumentError, isDitfaError, throwIfAborted } from '../src/index.js';

describe('aborts', () => {
  it('reject with name AbortError (what fetch and timers use) and our code, the reason as cause', () => {
    const controller = new AbortController();
    const reason = new Error('user pressed stop');
    controller.abort(reason);
    let caught: unknown;
    try {
      throwIfAborted(controller.signal, 'The generation');
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(AbortedError);
    expect(caught).toBeInstanceOf(DitfaError);
    const e = caught as AbortedError;
    expect(e.name).toBe('AbortError');
    expect(e.code).toBe(ErrorCode.Aborted);
    expect(e.message).toBe('The generation was aborted');
    expect(e.cause).toBe(reason);
    expect(String(e)).toBe('AbortError: The generation was aborted');
  });

  it('does nothing for a signal that has not fired, or none', () => {
    expect(() => throwIfAborted(new AbortController().signal, 'x')).not.toThrow();
    expect(() => throwIfAborted(undefined, 'x')).not.toThrow();
  });
});

describe('DitfaError across copies of core', () => {
  it('recognises an error of another copy by its process-wide mark, subclasses by prototype only', () => {
    // What another copy's error looks like from here: its own classes, the same Symbol.for mark.
    class OtherCopyError extends Error {
      readonly code = 'ERR_DITFA_PLAN_INVALID';
    }
    Object.defineProperty(OtherCopyError.prototype, Symbol.for('@ditfa/core:error'), { value: true });
    const foreign = new OtherCopyError('from the other copy');
    expect(foreign).toBeInstanceOf(DitfaError);
    expect(isDitfaError(foreign)).toBe(true);
    expect(foreign instanceof InvalidArgumentError).toBe(false);
    expect(new Error('plain') instanceof DitfaError).toBe(false);
    expect(isDitfaError({ code: 'ERR_DITFA_X' })).toBe(false);
    const own = new InvalidArgumentError('x');
    expect(own).toBeInstanceOf(InvalidArgumentError);
    expect(own instanceof AbortedError).toBe(false);
    expect(own.name).toBe('InvalidArgumentError');
  });
});
