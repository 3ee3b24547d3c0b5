import type { Delivery } from './session.js';

/** Slots kept allocated by an emptied queue; a larger ring is released (most queues stay tiny). */
const KEEP_EMPTY_SLOTS = 16;

/** What a queued delivery counts against `mqtt.max_queued_bytes`: its payload and topic. */
export function deliverySize(d: Delivery): number {
  return d.message.payload.length + d.message.topic.length;
}

/**
 * A session's deliveries waiting to be sent, in order: a ring buffer, so taking the oldest (sent
 * or dropped) clears its slot at once and nothing dropped stays referenced. A QoS 0 entry dropped
 * from the middle leaves a hole; holes are compacted away before they outnumber the entries, so
 * the ring stays within a small multiple of the entries it holds.
 */
export class DeliveryQueue {
  private slots: Array<Delivery | undefined> = [];
  /** Absolute positions: slot = position & (capacity - 1); capacity is a power of two. */
  private head = 0;
  private tail = 0;
  private holes = 0;
  private qos0 = 0;
  /** No QoS 0 entry sits before this position: where the next search for one starts. */
  private qos0From = 0;
  /** Bytes of the entries (deliverySize). */
  bytes = 0;

  get length(): number {
    return this.tail - this.head - this.holes;
  }

  /** Whether any QoS 0 entry is queued (the first to go when the queue is full). */
  get hasQos0(): boolean {
    return this.qos0 > 0;
  }

  push(d: Delivery): void {
    const capacity = this.slots.length;
    if (this.tail - this.head === capacity) {
      // Full ring: squeeze the holes out when they are half of it, else double it.
      this.rebuild(this.holes * 2 >= capacity && capacity > 0 ? capacity : Math.max(8, capacity * 2));
    }
    this.slots[this.tail & (this.slots.length - 1)] = d;
    this.tail++;
    this.bytes += deliverySize(d);
    if (d.qos === 0) this.qos0++;
  }

  /** The oldest entry, left in place. */
  peek(): Delivery | undefined {
    this.skipHoles();
    return this.head < this.tail ? this.slots[this.head & (this.slots.length - 1)] : undefined;
  }

  /** Takes the oldest entry out. */
  shift(): Delivery | undefined {
    this.skipHoles();
    if (this.head === this.tail) return undefined;
    const i = this.head & (this.slots.length - 1);
    const d = this.slots[i] as Delivery;
    this.slots[i] = undefined;
    this.head++;
    this.taken(d);
    return d;
  }

  /** Takes the oldest QoS 0 entry out, wherever it is; undefined when there is none. */
  shiftQos0(): Delivery | undefined {
    if (this.qos0 === 0) return undefined;
    const mask = this.slots.length - 1;
    for (let p = Math.max(this.qos0From, this.head); p < this.tail; p++) {
      const d = this.slots[p & mask];
      if (d === undefined || d.qos !== 0) continue;
      this.slots[p & mask] = undefined;
      this.holes++;
      this.qos0From = p + 1;
      this.taken(d);
      return d;
    }
    return undefined; // unreachable while qos0 counts right
  }

  /** The entries in order (a copy: for readers outside the delivery path). */
  toArray(): Delivery[] {
    const out: Delivery[] = [];
    const mask = this.slots.length - 1;
    for (let p = this.head; p < this.tail; p++) {
      const d = this.slots[p & mask];
      if (d !== undefined) out.push(d);
    }
    return out;
  }

  clear(): void {
    this.slots = [];
    this.head = this.tail = this.holes = this.qos0 = this.qos0From = 0;
    this.bytes = 0;
  }

  private taken(d: Delivery): void {
    this.bytes -= deliverySize(d);
    if (d.qos === 0) this.qos0--;
    if (this.length === 0) {
      if (this.slots.length > KEEP_EMPTY_SLOTS) this.slots = [];
      else this.slots.fill(undefined);
      this.head = this.tail = this.holes = this.qos0From = 0;
    }
  }

  private skipHoles(): void {
    if (this.holes === 0) return;
    const mask = this.slots.length - 1;
    while (this.head < this.tail && this.slots[this.head & mask] === undefined) {
      this.head++;
      this.holes--;
    }
  }

  private rebuild(capacity: number): void {
    const live = this.toArray();
    const slots = new Array<Delivery | undefined>(capacity).fill(undefined);
    for (let i = 0; i < live.length; i++) slots[i] = live[i];
    this.slots = slots;
    this.head = 0;
    this.tail = live.length;
    this.holes = 0;
    this.qos0From = 0;
  }
}
