// Acks that wait for durability: a QoS 1/2 PUBLISH that reached a persistent session is acked
// only once the store writes it caused are on disk. Acks are collected for the rest of the event
// loop turn and released together after one flushed(), never one wait per message.
import type { Logger } from 'pino';
import type { SessionStore } from './store.js';

/** A connection holding acks back (it keeps them in order; this only counts them). */
export interface AckHolder {
  /** How many acks were held since the last claim; they now belong to the closing batch. */
  claimHeldAcks(): number;
  /** The first `count` held acks are durable: send them. */
  releaseAcks(count: number): void;
}

export class DurableAcks {
  private open: AckHolder[] = [];
  private scheduled = false;

  constructor(
    private readonly store: SessionStore,
    private readonly log: Logger,
  ) {}

  /** A holder with acks not yet in a batch; it calls this once per batch. */
  hold(holder: AckHolder): void {
    this.open.push(holder);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.closeBatch);
    }
  }

  /** After the turn's I/O callbacks: every write behind these acks has been issued. */
  private readonly closeBatch = (): void => {
    this.scheduled = false;
    const holders = this.open;
    this.open = [];
    const counts = holders.map((h) => h.claimHeldAcks());
    this.store.flushed().then(
      () => {
        for (let i = 0; i < holders.length; i++) (holders[i] as AckHolder).releaseAcks(counts[i] as number);
      },
      // The acks stay held: the clients resend after reconnecting, as for a lost ack.
      (err: unknown) => this.log.error({ err, path: this.store.path }, 'session store flush failed; acks withheld'),
    );
  };
}
