// One coarse shared timer for keepalives, CONNECT deadlines, will delays and session expiries
// (DESIGN.md principle 4). A hashed wheel: each slot is an intrusive doubly linked list, so
// scheduling, rescheduling and cancelling are O(1) and allocate nothing.

/** Resolution of a node's shared timer wheel: keepalives and deadlines are checked this often. */
export const WHEEL_TICK_MS = 250;

/** Slots per revolution; a power of two so the slot is a mask. At a 250 ms tick one turn is ~17 min. */
const SLOTS = 4096;
const MASK = SLOTS - 1;
/** Index of the extra list holding timers that are due and about to fire. */
const DUE = SLOTS;

/**
 * What the wheel links: its list fields live in the timer itself (no entry object per timer), and
 * fire() says what happens when it is due. A connection is one (Protocol extends it), so its
 * deadline costs no object of its own; WheelTimer serves everyone else.
 */
export abstract class TimerNode {
  /** @internal Tick at which the timer fires, counted from the wheel's start: a small integer
   *  (an absolute tick or ms deadline would be a boxed double on every connection). */
  tick = 0;
  /** @internal List the timer is linked into (a slot or DUE), -1 when unlinked. */
  slot = -1;
  /** @internal */
  prev: TimerNode | undefined = undefined;
  /** @internal */
  next: TimerNode | undefined = undefined;

  /** Whether it waits to fire. */
  get scheduled(): boolean {
    return this.slot >= 0;
  }

  /** @internal Called by the wheel when the timer is due. */
  abstract fire(now: number): void;
}

/** Method syntax makes the owner parameter bivariant, so a WheelTimer<Protocol> links into the
 *  wheel's lists beside timers of other owners. */
type FireFn<O> = { fire(owner: O, now: number): void }['fire'];

/**
 * A timer for an owner and a module-level callback, no closure (the slow-consumer check, a PROXY
 * header's deadline): for owners that are not timers themselves.
 */
export class WheelTimer<O = unknown> extends TimerNode {
  constructor(
    readonly owner: O,
    private readonly onFire: FireFn<O>,
  ) {
    super();
  }

  /** @internal Called by the wheel when the timer is due. */
  fire(now: number): void {
    this.onFire(this.owner, now);
  }
}

export class TimerWheel {
  private readonly heads: Array<TimerNode | undefined> = new Array<TimerNode | undefined>(SLOTS + 1).fill(undefined);
  /** The absolute tick (ms / tickMs) the wheel counts its ticks from. */
  private readonly origin: number;
  /** Last tick whose slot has been processed. */
  private tick = 0;
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
    this.origin = Math.floor(now() / tickMs);
    this.horizon = 0;
  }

  get size(): number {
    return this.count;
  }

  /** (Re)schedules `t` to fire at the first tick at or after `at` (ms). */
  schedule(t: TimerNode, at: number): void {
    if (t.slot >= 0) this.unlink(t);
    else this.count++;
    t.tick = Math.max(Math.ceil(at / this.tickMs) - this.origin, this.horizon + 1);
    this.link(t, t.tick & MASK);
  }

  cancel(t: TimerNode): void {
    if (t.slot < 0) return;
    this.unlink(t);
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
    const target = Math.floor(now / this.tickMs) - this.origin;
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
      this.count--;
      t.fire(now);
      t = this.heads[DUE];
    }
  }

  private link(t: TimerNode, slot: number): void {
    const head = this.heads[slot];
    t.slot = slot;
    t.prev = undefined;
    t.next = head;
    if (head !== undefined) head.prev = t;
    this.heads[slot] = t;
  }

  private unlink(t: TimerNode): void {
    if (t.prev !== undefined) t.prev.next = t.next;
    else this.heads[t.slot] = t.next;
    if (t.next !== undefined) t.next.prev = t.prev;
    t.prev = t.next = undefined;
    t.slot = -1;
  }
}
