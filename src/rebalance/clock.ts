// Time for the rebalance state machines and the eviction scheduler: a monotonic clock and timers
// behind one small interface, so tests drive them with a fake clock instead of waiting.
import { performance } from 'node:perf_hooks';

export interface Clock {
  /** Monotonic ms. */
  now(): number;
  /** Calls fn once after ms; the handle cancels it. */
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
