// Token bucket for the accept-rate limit and the eviction agent. Tokens refill continuously, so
// rate r with burst 1 releases one token every 1000/r ms instead of r at the start of each second.
// State is kept in token-milliseconds (tokens * 1000): with integer rates and clock readings the
// arithmetic is exact, and the long-run rate does not drift.

import { performance } from 'node:perf_hooks';

export class TokenBucket {
  private rate = 0;
  /** Capacity in token-ms. */
  private capacity = 0;
  /** Available token-ms. */
  private credit = 0;
  private last: number;

  /**
   * `rate` tokens per second, capacity `burst` (>= 1) tokens, starts full. `now()` in ms;
   * defaults to a monotonic clock so wall-clock adjustments do not release or withhold tokens.
   */
  constructor(
    rate: number,
    burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.last = now();
    this.setRate(rate, burst);
    this.credit = this.capacity;
  }

  /** Takes n tokens if they are all available now. More than `burst` at once never succeeds. */
  tryTake(n = 1): boolean {
    this.refill();
    const cost = n * 1000;
    if (this.credit < cost) return false;
    this.credit -= cost;
    return true;
  }

  /**
   * Whole ms until n tokens are available (0 if now), rounded up so a timer set for it finds them.
   * Infinity when n exceeds the burst or the rate is 0.
   */
  waitMs(n = 1): number {
    this.refill();
    const missing = n * 1000 - this.credit;
    if (missing <= 0) return 0;
    if (n * 1000 > this.capacity || this.rate <= 0) return Infinity;
    return Math.ceil(missing / this.rate);
  }

  /** Changes the rate and capacity; tokens accrued so far are kept, up to the new capacity. */
  setRate(rate: number, burst: number): void {
    this.refill();
    this.rate = rate;
    this.capacity = Math.max(1, burst) * 1000;
    if (this.credit > this.capacity) this.credit = this.capacity;
  }

  private refill(): void {
    const t = this.now();
    // A clock that steps back adds nothing and restarts the count from its new reading.
    if (t > this.last) this.credit = Math.min(this.capacity, this.credit + (t - this.last) * this.rate);
    this.last = t;
  }
}
