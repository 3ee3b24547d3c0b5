// One coarse shared timer for keepalives, CONNECT deadlines, will delays and session expiries
// (DESIGN.md principle 4). A hashed wheel: each slot is an intrusive doubly linked list, so
// scheduling, rescheduling and cancelling are O(1) and allocate nothing.

/** Slots per revolution; a power of two so the slot is a mask. At a 250 ms tick one turn is ~17 min. */
const SLOTS = 4096;
const MASK = SLOTS - 1;
/** Index of the extra list holding timers that are due and about to fire. */
const DUE = SLOTS;

/** Method syntax makes the owner parameter bivariant, so a WheelTimer<Protocol> links into the
 *  wheel's lists beside timers of other owners. */
type FireFn<O> = { fire(owner: O, now: number): void }['fire'];

/**
 * A timer is its owner and a module-level callback: no closure per connection or session.
 */
export class WheelTimer<O = unknown> {
  /** @internal Absolute deadline in ms, -1 when not scheduled. */
  at = -1;
  /** @internal Tick at which the timer fires. */
  tick = 0;
  /** @internal List the timer is linked into (a slot or DUE), -1 when unlinked. */
  slot = -1;
  /** @internal */
  prev: WheelTimer | undefined = undefined;
  /** @internal */
  next: WheelTimer | undefined = undefined;

  constructor(
    readonly owner: O,
    private readonly onFire: FireFn<O>,
  ) {}

  /** @internal Called by the wheel when the timer is due. */
  fire(now: number): void {
    this.onFire(this.owner, now);
  }

  /** Absolute ms deadline while scheduled, else -1. */
  get deadline(): number {
    return this.at;
  }
}

export class TimerWheel {
  private readonly heads: Array<WheelTimer | undefined> = new Array<WheelTimer | undefined>(SLOTS + 1).fill(undefined);
  /** Last tick whose slot has been processed. */
  private tick: number;
  /** Timers scheduled now fire after this tick; ahead of `tick` while advance() is firing, so a
   *  timer rescheduled from its own fire() waits for a later advance. */
  private horizon: number;
  private count = 0;
  private interval: NodeJS.Timeout | undefined = undefined;

  /** tickMs e.g. 250. `now` injectable for tests (defaults to Date.now). */
  constructor(
    private readonly tickMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tick = this.horizon = Math.floor(now() / tickMs);
  }

  get size(): number {
    return this.count;
  }

  /** (Re)schedules `t` to fire at the first tick at or after `at` (ms). */
  schedule(t: WheelTimer, at: number): void {
    if (t.slot >= 0) this.unlink(t);
    else this.count++;
    t.at = at;
    t.tick = Math.max(Math.ceil(at / this.tickMs), this.horizon + 1);
    this.link(t, t.tick & MASK);
  }

  cancel(t: WheelTimer): void {
    if (t.slot < 0) return;
    this.unlink(t);
    t.at = -1;
    this.count--;
  }

  /** Starts one unref'd setInterval; stop() clears it. */
  start(): void {
    if (this.interval !== undefined) return;
    this.interval = setInterval(() => this.advance(this.now()), this.tickMs);
    this.interval.unref();
  }

  stop(): void {
    clearInterval(this.interval);
    this.interval = undefined;
  }

  /**
   * Fires every timer due at or before `now`, tick by tick; within a tick in scheduling order. After
   * a stall longer than a whole revolution every overdue timer still fires once, in slot order.
   */
  advance(now: number): void {
    const target = Math.floor(now / this.tickMs);
    if (target > this.horizon) this.horizon = target;
    this.fireDue(now); // left over if a fire() threw during the previous advance
    for (let k = Math.max(this.tick + 1, target - MASK); k <= target; k++) {
      this.collect(k);
      this.tick = k;
      this.fireDue(now);
    }
  }

  /** Moves the timers of tick k's slot that are due by tick k to the DUE list. */
  private collect(k: number): void {
    let t = this.heads[k & MASK];
    while (t !== undefined) {
      const next = t.next;
      // Later timers share the slot while they wait for a later revolution.
      if (t.tick <= k) {
        this.unlink(t);
        this.link(t, DUE);
      }
      t = next;
    }
  }

  /** Fires the DUE list one timer at a time, so fire() may cancel or reschedule any timer. */
  private fireDue(now: number): void {
    let t = this.heads[DUE];
    while (t !== undefined) {
      this.unlink(t);
      t.at = -1;
      this.count--;
      t.fire(now);
      t = this.heads[DUE];
    }
  }

  private link(t: WheelTimer, slot: number): void {
    const head = this.heads[slot];
    t.slot = slot;
    t.prev = undefined;
    t.next = head;
    if (head !== undefined) head.prev = t;
    this.heads[slot] = t;
  }

  private unlink(t: WheelTimer): void {
    if (t.prev !== undefined) t.prev.next = t.next;
    else this.heads[t.slot] = t.next;
    if (t.next !== undefined) t.next.prev = t.prev;
    t.prev = t.next = undefined;
    t.slot = -1;
  }
}
