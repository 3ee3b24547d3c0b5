// Releases work at a steady rate (SPEC 5: evictions spread evenly over each second, no burst of
// `rate` at once). A token bucket refills continuously; a timer wakes when the next token is due
// and hands out what has accrued. Node timers fire at ms granularity and late under load, so the
// bucket holds a few ms worth of tokens: without that, rates above ~1000/s would be capped by
// the timer (one token per wakeup), and a late wakeup would lose its tokens.
import { TokenBucket } from '../broker/token-bucket.js';
import type { Clock } from './clock.js';

/**
 * Tokens the bucket may hold beyond one: this many ms of the rate (the largest burst released).
 * A node busy with the takeovers its own evictions cause lags tens of ms; 100 ms of slack keeps
 * the rate through that (10 ms lost a quarter of it behind HAProxy), and is still a tenth of a
 * second's worth, never `rate` at once.
 */
export const SLACK_MS = 100;

/** Bucket capacity for a rate: one token, plus SLACK_MS worth of the rate. */
export function burstFor(rate: number): number {
  return 1 + Math.floor((rate * SLACK_MS) / 1000);
}

/**
 * Calls `release(n)` with the tokens accrued since the last call (n >= 1, at most burstFor(rate)),
 * as soon as one is due, until `release` returns false or stop() is called.
 */
export class EvenScheduler {
  private readonly bucket: TokenBucket;
  private readonly burst: number;
  private timer: unknown = null;
  private running = false;

  constructor(
    readonly rate: number,
    private readonly release: (n: number) => boolean,
    private readonly clock: Clock,
  ) {
    if (!(rate > 0)) throw new RangeError(`rate must be positive: ${rate}`);
    this.burst = burstFor(rate);
    this.bucket = new TokenBucket(rate, this.burst, () => clock.now());
    // Starts empty: the first release is one token after start, not a burst.
    this.bucket.tryTake(this.burst);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.arm();
  }

  stop(): void {
    this.running = false;
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timer = null;
  }

  get active(): boolean {
    return this.running;
  }

  private arm(): void {
    this.timer = this.clock.setTimer(() => this.tick(), Math.max(1, this.bucket.waitMs(1)));
  }

  private tick(): void {
    this.timer = null;
    if (!this.running) return;
    let n = 0;
    while (n < this.burst && this.bucket.tryTake(1)) n++;
    if (n > 0 && !this.release(n)) {
      this.running = false;
      return;
    }
    if (this.running && this.timer === null) this.arm();
  }
}
