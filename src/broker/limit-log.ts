import type { Logger } from 'pino';

/** At most this many lines per window; the rest are counted and reported with the next line. */
const MAX_LINES = 20;
const WINDOW_MS = 10_000;

/**
 * The log of bounds biting clients: one warn line the first time a bound bites a client (the
 * caller keeps the per-client mask), and node-wide at most MAX_LINES per WINDOW_MS, so a flood
 * of misbehaving clients is a count, not a log storm.
 */
export class LimitLog {
  private windowStart = 0;
  private lines = 0;
  private suppressed = 0;

  constructor(private readonly log: Logger) {}

  first(limit: string, clientId: string): void {
    const now = Date.now();
    if (now - this.windowStart >= WINDOW_MS) {
      this.windowStart = now;
      this.lines = 0;
    }
    if (this.lines >= MAX_LINES) {
      this.suppressed++;
      return;
    }
    this.lines++;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.log.warn({ limit, clientId, ...(suppressed > 0 ? { suppressed } : {}) }, `client hit the ${limit} limit (see tidemq_limit_hits_total)`);
  }
}
