import type { QoS, Will } from '../mqtt/packets.js';
import type { SessionJournal } from '../store/journal.js';
import { ownPayload, type Message } from './message.js';
import { WheelTimer } from './timer-wheel.js';

/** Options of one subscription, as granted (spec 3.8.3.1). */
export interface SubscriptionOptions {
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  /** Subscription Identifier, 0 for none. */
  subscriptionId: number;
}

/**
 * The Subscription Identifiers a delivery carries: 0 for none, one id, or the ids of every
 * matching subscription of the session [MQTT-3.3.4-3]. A number in the common case (no array per
 * delivery); stored records of older versions hold a number too.
 */
export type SubscriptionIds = number | number[];

/** `ids` with `id` added (0 adds nothing, an id already there is not repeated). */
export function addSubscriptionId(ids: SubscriptionIds, id: number): SubscriptionIds {
  if (id === 0 || ids === id) return ids;
  if (ids === 0) return id;
  if (typeof ids === 'number') return [ids, id];
  if (!ids.includes(id)) ids.push(id);
  return ids;
}

/** One message on its way to one session, with what its matching subscriptions decided. */
export interface Delivery {
  message: Message;
  qos: QoS;
  retain: boolean;
  subscriptionId: SubscriptionIds;
  /** Order in a persistent session's store (queue and inflight share it), 0 otherwise. */
  seq: number;
}

/** An outgoing QoS 1/2 delivery sent and not yet completed. */
export interface InflightEntry extends Delivery {
  /** QoS 2 after PUBREC: PUBREL sent, awaiting PUBCOMP. */
  released: boolean;
}

export interface WillState extends Will {
  /** Will Delay Interval in seconds (5.0), 0 otherwise. */
  delay: number;
}

/** What a session delivers through: its live connection. A session without one (offline, or
 *  migrated here by an evacuation) queues instead. */
export interface SessionOwner {
  /** Outgoing QoS 1/2 window: min(client Receive Maximum, server max inflight). */
  readonly sendWindow: number;
  /** Writes one PUBLISH. Returns false when it was not sent (expired, or over the client's
   *  Maximum Packet Size [MQTT-3.1.2-25]): the delivery is then discarded. */
  sendPublish(delivery: Delivery, packetId: number, dup: boolean): boolean;
  sendPubrel(packetId: number): void;
  /** True while the transport's write buffer is over its bound: QoS 0 is dropped, QoS 1/2 waits. */
  readonly congested: boolean;
}

export interface SessionLimits {
  maxQueued: number;
  maxQueuedBytes: number;
}

export interface SessionCounters {
  /** Messages dropped from a full offline queue, and QoS 0 dropped for a congested client. */
  dropped: number;
}

const NO_INFLIGHT: ReadonlyMap<number, InflightEntry> = new Map();
const NO_INCOMING: ReadonlySet<number> = new Set();

/**
 * One client's session (spec 4.1): plain data that can be stored or moved to another node, plus
 * the QoS 1/2 delivery rules that decide between sending now, queueing and dropping.
 */
export class Session {
  readonly clientId: string;
  readonly subscriptions = new Map<string, SubscriptionOptions>();
  /** Allocated on first use: most sessions never have QoS 1/2 in flight (memory per connection). */
  private inflightMap: Map<number, InflightEntry> | null = null;
  private incomingSet: Set<number> | null = null;
  /** The offline queue is items[head..]: sent deliveries are cut off the front in bulk, so an
   *  ack with a long backlog costs O(1), not a move of the whole rest. */
  private items: Delivery[] = [];
  private head = 0;
  queuedBytes = 0;
  nextPacketId = 1;
  /** Session Expiry Interval in seconds; 0 ends the session with the connection. */
  expiryInterval: number;
  will: WillState | undefined = undefined;
  /** The user name of its last connection: what the ACL judges its deliveries and will by. */
  username: string | undefined = undefined;
  readonly createdAt: number;
  /** ms when the last connection ended, 0 while connected. */
  disconnectedAt = 0;
  owner: SessionOwner | null = null;
  /** Session expiry and delayed will, on the shared wheel; created by the broker when needed. */
  expiryTimer: WheelTimer | null = null;
  willTimer: WheelTimer | null = null;
  /** Write-through to the store for a persistent session; null for a clean one, which never
   *  touches the store. */
  journal: SessionJournal | null = null;
  /** While a takeover from another node completes: keys of the messages delivered here, so the
   *  old node's buffered copies of them are not delivered twice. Null otherwise. */
  handover: Set<string> | null = null;
  /** @internal While the broker routes a message: this session's index in its match list, else -1. */
  routeSlot = -1;

  constructor(clientId: string, expiryInterval: number, now: number) {
    this.clientId = clientId;
    this.expiryInterval = expiryInterval;
    this.createdAt = now;
  }

  /** Outgoing QoS 1/2, by packet id, in send order. */
  get inflight(): ReadonlyMap<number, InflightEntry> {
    return this.inflightMap ?? NO_INFLIGHT;
  }

  /** Records an outgoing QoS 1/2 delivery under its packet id (sent now, or restored). */
  trackInflight(packetId: number, entry: InflightEntry): void {
    (this.inflightMap ??= new Map()).set(packetId, entry);
  }

  /** Incoming QoS 2 packet ids received and not yet released by PUBREL. */
  get incomingQos2(): ReadonlySet<number> {
    return this.incomingSet ?? NO_INCOMING;
  }

  addIncoming(packetId: number): void {
    (this.incomingSet ??= new Set()).add(packetId);
  }

  /** PUBREL: returns whether the id was awaiting it. */
  releaseIncoming(packetId: number): boolean {
    return this.incomingSet !== null && this.incomingSet.delete(packetId);
  }

  /** The offline queue in order (compacted on access: for readers outside the delivery path). */
  get queue(): Delivery[] {
    this.compact();
    return this.items;
  }

  set queue(q: Delivery[]) {
    this.items = q;
    this.head = 0;
  }

  /** Sends, queues or drops one message for this session. */
  deliver(message: Message, qos: QoS, retain: boolean, subscriptionId: SubscriptionIds, limits: SessionLimits, counters: SessionCounters): void {
    const owner = this.owner;
    if (owner !== null && this.items.length === this.head) {
      if (qos === 0) {
        if (owner.congested) counters.dropped++;
        else owner.sendPublish({ message, qos, retain, subscriptionId, seq: 0 }, 0, false);
        return;
      }
      if (this.inflight.size < owner.sendWindow && !owner.congested) {
        this.sendInflight({ message, qos, retain, subscriptionId, seq: 0 }, owner);
        return;
      }
    }
    this.enqueue({ message, qos, retain, subscriptionId, seq: 0 }, limits, counters);
  }

  /** PUBACK, or PUBCOMP, or a PUBREC with an error reason: the delivery is complete. */
  complete(packetId: number): boolean {
    const found = this.inflightMap !== null && this.inflightMap.delete(packetId);
    if (found && this.journal !== null) this.journal.completed(packetId);
    if (found && this.owner !== null) this.drain(this.owner);
    return found;
  }

  /** PUBREC: the message is the receiver's now; release the packet id with PUBREL. */
  received(packetId: number): boolean {
    const entry = this.inflight.get(packetId);
    if (entry === undefined || entry.qos !== 2) return false;
    entry.released = true;
    if (this.journal !== null) this.journal.inflight(packetId, entry);
    return true;
  }

  /**
   * A connection takes the session over: resend every unacknowledged PUBLISH with DUP and every
   * PUBREL in the original order [MQTT-4.4.0-1], then deliver the queue.
   */
  attach(owner: SessionOwner): void {
    this.owner = owner;
    this.disconnectedAt = 0;
    for (const [packetId, entry] of this.inflight) {
      if (entry.released) owner.sendPubrel(packetId);
      else if (!owner.sendPublish(entry, packetId, true)) {
        this.inflightMap?.delete(packetId);
        if (this.journal !== null) this.journal.completed(packetId);
      }
    }
    this.drain(owner);
  }

  detach(now: number): void {
    this.owner = null;
    this.disconnectedAt = now;
  }

  /** Sends queued deliveries while the window and the transport allow. */
  drain(owner: SessionOwner): void {
    const queue = this.items;
    let i = this.head;
    while (i < queue.length && !owner.congested) {
      const d = queue[i] as Delivery;
      if (d.qos > 0 && this.inflight.size >= owner.sendWindow) break;
      i++;
      this.queuedBytes -= d.message.payload.length;
      if (this.journal !== null) this.journal.unqueued(d);
      if (d.qos === 0) owner.sendPublish(d, 0, false);
      else this.sendInflight(d, owner);
    }
    if (i === queue.length) {
      queue.length = 0;
      this.head = 0;
    } else {
      this.head = i;
      // Compacted once the sent part is the larger half: amortized O(1) per delivery.
      if (i > 64 && i * 2 > queue.length) this.compact();
    }
  }

  private compact(): void {
    if (this.head > 0) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
  }

  private sendInflight(d: Delivery, owner: SessionOwner): void {
    const packetId = this.allocatePacketId();
    const entry: InflightEntry = { message: d.message, qos: d.qos, retain: d.retain, subscriptionId: d.subscriptionId, seq: d.seq, released: false };
    if (!owner.sendPublish(entry, packetId, false)) return;
    this.trackInflight(packetId, entry);
    if (this.journal !== null) this.journal.inflight(packetId, entry);
  }

  /** Bounded queue; when full, QoS 0 goes first, then the oldest (counted). */
  private enqueue(d: Delivery, limits: SessionLimits, counters: SessionCounters): void {
    ownPayload(d.message);
    const size = d.message.payload.length;
    const queue = this.items;
    while (queue.length > this.head && (queue.length - this.head >= limits.maxQueued || this.queuedBytes + size > limits.maxQueuedBytes)) {
      let k = this.head;
      while (k < queue.length && (queue[k] as Delivery).qos !== 0) k++;
      // The oldest is cut off the front for free; a QoS 0 further in is spliced out.
      const dropped = k < queue.length ? queue.splice(k, 1)[0] : queue[this.head++];
      if (dropped !== undefined) {
        this.queuedBytes -= dropped.message.payload.length;
        if (this.journal !== null) this.journal.unqueued(dropped);
      }
      counters.dropped++;
    }
    if (limits.maxQueued === 0 || size > limits.maxQueuedBytes) {
      counters.dropped++;
      return;
    }
    queue.push(d);
    this.queuedBytes += size;
    if (this.journal !== null) this.journal.queued(d);
  }

  /** The next packet id not in use by an outgoing QoS 1/2 message [MQTT-2.2.1-2]. */
  private allocatePacketId(): number {
    let id = this.nextPacketId;
    while (this.inflight.has(id)) id = id === 0xffff ? 1 : id + 1;
    this.nextPacketId = id === 0xffff ? 1 : id + 1;
    return id;
  }
}
