import { ProtocolError } from '../../src/mqtt/errors.js';

/** The reason code `fn` throws a ProtocolError with, or 'no error'; any other error propagates. */
export function reasonOf(fn: () => unknown): number | string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ProtocolError) return err.reason;
    throw err;
  }
  return 'no error';
}
