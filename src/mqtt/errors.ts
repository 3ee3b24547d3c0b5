import { reasonName } from './reason-codes.js';

/**
 * A violation by the peer. The one exit for bad input: the connection maps it to a CONNACK or
 * DISCONNECT with `reason` (5.0) or a close (3.x), a log line and a metric label.
 */
export class ProtocolError extends Error {
  readonly reason: number;
  constructor(reason: number, message: string) {
    super(message);
    this.name = 'ProtocolError';
    this.reason = reason;
  }
  /** Metric/log label of the reason, e.g. "malformed_packet". */
  get label(): string {
    return reasonName(this.reason);
  }
}
