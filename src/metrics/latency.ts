// A fixed-bucket latency histogram kept as plain numbers: observing is a short scan and three
// increments, no allocation. The code that times something owns one; the metrics module turns
// it into a Prometheus histogram at scrape time.
import { bump } from '../broker/stats.js';

/** Upper bounds in seconds: loopback round trips (sub-ms) up to the 15 s default RPC timeout. */
export const LATENCY_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15];

export class LatencyHistogram {
  /** Observations per bucket, not cumulative; the last slot is above the largest bound (+Inf). */
  readonly counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[i] as number)) i++;
    bump(this.counts, i, 1);
    this.sum += seconds;
    this.count++;
  }
}
