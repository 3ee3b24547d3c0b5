// A Clock for tests: time moves only when advance() says, timers fire in due order.
import type { Clock } from '../../src/rebalance/clock.js';

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

export class FakeClock implements Clock {
  private t = 1000;
  private seq = 0;
  private timers = new Set<Timer>();

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): unknown {
    const timer = { at: this.t + ms, seq: ++this.seq, fn };
    this.timers.add(timer);
    return timer;
  }

  clearTimer(handle: unknown): void {
    this.timers.delete(handle as Timer);
  }

  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by ms, firing every timer due on the way at its own time. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (let guard = 0; guard < 10_000_000; guard++) {
      let next: Timer | undefined;
      for (const timer of this.timers) if (timer.at <= end && (next === undefined || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq))) next = timer;
      if (next === undefined) break;
      this.timers.delete(next);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = end;
  }
}
