// Failed logins per source address in a fixed window: past the limit, that address is refused
// without a password check until its window ends, so guessing costs the guesser time, not the
// node CPU. Used by MQTT CONNECT (auth.*) and the management API (management.*).

/** Addresses tracked at most; the oldest window goes first (a few MB at worst). */
const MAX_ADDRESSES = 65_536;

interface Window {
  start: number;
  failures: number;
}

export class LoginThrottle {
  private readonly windows = new Map<string, Window>();
  /** Attempts refused because their address was over the limit. */
  throttled = 0;

  constructor(
    /** Failures allowed per address and window; 0 turns the throttle off. */
    private readonly maxFailures: number,
    private readonly windowMs: number,
  ) {}

  /** Whether `address` is over its limit now (counted as a throttled attempt when it is). */
  blocked(address: string, now: number): boolean {
    if (this.maxFailures === 0) return false;
    const w = this.windows.get(address);
    if (w === undefined) return false;
    if (now - w.start >= this.windowMs) {
      this.windows.delete(address);
      return false;
    }
    if (w.failures < this.maxFailures) return false;
    this.throttled++;
    return true;
  }

  /** Records a failed login from `address`. Returns true when this failure reached the limit. */
  fail(address: string, now: number): boolean {
    if (this.maxFailures === 0) return false;
    let w = this.windows.get(address);
    if (w === undefined || now - w.start >= this.windowMs) {
      this.windows.delete(address);
      if (this.windows.size >= MAX_ADDRESSES) this.windows.delete(this.windows.keys().next().value as string);
      w = { start: now, failures: 0 };
      this.windows.set(address, w);
    }
    return ++w.failures === this.maxFailures;
  }

  /** Milliseconds until `address` may try again (0 when it may now). */
  retryAfter(address: string, now: number): number {
    const w = this.windows.get(address);
    return w === undefined ? 0 : Math.max(0, w.start + this.windowMs - now);
  }
}
