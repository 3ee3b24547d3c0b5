import type { QoS, Will } from '../mqtt/packets.js';
import type { SessionJournal } from './session-journal.js';
import { DeliveryQueue, deliverySize } from './delivery-queue.js';
import { ownPayload, type Message } from './message.js';
import { bump, DropReason, LimitHit, type BrokerStats } from './stats.js';
import type { TimerNode } from './timer-wheel.js';

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
  /** Payload bytes of outgoing QoS 1/2 in flight; past it deliveries wait in the queue. */
  maxInflightBytes: number;
}

const NO_INFLIGHT: ReadonlyMap<number, InflightEntry> = new Map();
const NO_INCOMING: ReadonlySet<number> = new Set();
const NO_SUBSCRIPTIONS: ReadonlyMap<string, SubscriptionOptions> = new Map();
/** What an empty session reads as its queue; frozen, so a write through it would throw. */
const NO_QUEUE = new DeliveryQueue();
Object.freeze(NO_QUEUE);

/**
 * One client's session (spec 4.1): plain data that can be stored or moved to another node, plus
 * the QoS 1/2 delivery rules that decide between sending now, queueing and dropping.
 */
export class Session {
  readonly clientId: string;
  /** Allocated at the first SUBSCRIBE: many clients only publish (memory per connection). */
  private subs: Map<string, SubscriptionOptions> | null = null;
  /** Allocated on first use: most sessions never have QoS 1/2 in flight (memory per connection). */
  private inflightMap: Map<number, InflightEntry> | null = null;
  private incomingSet: Set<number> | null = null;
  /** Deliveries waiting: offline, over the send window, or while the connection is congested.
   *  Allocated at the first one (memory per connection): read through `pending`. */
  private queueSlots: DeliveryQueue | null = null;
  /** Payload bytes of the inflight entries (mqtt.max_inflight_bytes). */
  private inflightBytes = 0;
  /** Messages dropped for this client, by DropReason; allocated on the first drop. */
  drops: Float64Array | null = null;
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
  expiryTimer: TimerNode | null = null;
  willTimer: TimerNode | null = null;
  /** Write-through to the store for a persistent session; null for a clean one, which never
   *  touches the store. */
  journal: SessionJournal | null = null;
  /** While a takeover from another node completes: keys of the messages delivered here, so the
   *  old node's buffered copies of them are not delivered twice. Null otherwise. */
  handover: Set<string> | null = null;
  /** @internal While the broker routes a message: this session's index in its match list, else -1. */
  routeSlot = -1;
  /** Bounds that have bitten this client (bit per LimitHit): each is logged once. */
  private limitsLogged = 0;

  constructor(clientId: string, expiryInterval: number, now: number) {
    this.clientId = clientId;
    this.expiryInterval = expiryInterval;
    this.createdAt = now;
  }

  /** Topic filter -> granted options; changed through the router (it keeps the trie in step). */
  get subscriptions(): ReadonlyMap<string, SubscriptionOptions> {
    return this.subs ?? NO_SUBSCRIPTIONS;
  }

  /** Adds or replaces a subscription; returns whether the filter was there before. */
  setSubscription(filter: string, options: SubscriptionOptions): boolean {
    const subs = (this.subs ??= new Map());
    const existed = subs.has(filter);
    subs.set(filter, options);
    return existed;
  }

  deleteSubscription(filter: string): boolean {
    return this.subs !== null && this.subs.delete(filter);
  }

  clearSubscriptions(): void {
    this.subs = null;
  }

  /** Outgoing QoS 1/2, by packet id, in send order. */
  get inflight(): ReadonlyMap<number, InflightEntry> {
    return this.inflightMap ?? NO_INFLIGHT;
  }

  /** Records an outgoing QoS 1/2 delivery under its packet id (sent now, or restored). */
  trackInflight(packetId: number, entry: InflightEntry): void {
    (this.inflightMap ??= new Map()).set(packetId, entry);
    this.inflightBytes += entry.message.payload.length;
  }

  private untrackInflight(packetId: number): boolean {
    const entry = this.inflightMap?.get(packetId);
    if (entry === undefined) return false;
    (this.inflightMap as Map<number, InflightEntry>).delete(packetId);
    this.inflightBytes -= entry.message.payload.length;
    return true;
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

  private get pending(): DeliveryQueue {
    return this.queueSlots ?? NO_QUEUE;
  }

  /** The queue in order (a copy: for readers outside the delivery path). */
  get queue(): Delivery[] {
    return this.pending.toArray();
  }

  get queuedCount(): number {
    return this.pending.length;
  }

  /** Bytes of the queue as `mqtt.max_queued_bytes` counts them (payload and topic). */
  get queuedBytes(): number {
    return this.pending.bytes;
  }

  /**
   * Puts back a delivery that is already in the store (a restart, a takeover import): not written
   * again. With `bound`, today's limits apply: what no longer fits goes as a new one would.
   */
  restoreQueued(d: Delivery, bound: { limits: SessionLimits; stats: BrokerStats } | undefined): void {
    if (bound === undefined) (this.queueSlots ??= new DeliveryQueue()).push(d);
    else this.enqueue(d, bound.limits, bound.stats, true);
  }

  /** Counts one message dropped for this client, here and node-wide. */
  countDrop(reason: DropReason, stats: BrokerStats): void {
    bump((this.drops ??= new Float64Array(DropReason.Count)), reason, 1);
    stats.countDrop(reason);
  }

  /** Sends, queues or drops one message for this session. */
  deliver(message: Message, qos: QoS, retain: boolean, subscriptionId: SubscriptionIds, limits: SessionLimits, stats: BrokerStats): void {
    const owner = this.owner;
    // Asked on every delivery to a connected client, queue or not: it also starts the
    // slow-consumer clock of a client that went over its output mark.
    if (owner !== null && owner.congested && qos === 0) {
      this.countDrop(DropReason.Congested, stats);
      this.limitHit(LimitHit.OutputBuffer, stats);
      return;
    }
    if (owner !== null && this.pending.length === 0) {
      if (qos === 0) {
        owner.sendPublish({ message, qos, retain, subscriptionId, seq: 0 }, 0, false);
        return;
      }
      if (this.canSend(owner, limits, stats)) {
        this.sendInflight({ message, qos, retain, subscriptionId, seq: 0 }, owner);
        return;
      }
    }
    this.enqueue({ message, qos, retain, subscriptionId, seq: 0 }, limits, stats);
  }

  /** Whether one more QoS 1/2 may go out now: window, inflight bytes and the transport allow. */
  private canSend(owner: SessionOwner, limits: SessionLimits, stats: BrokerStats): boolean {
    if (this.inflight.size >= owner.sendWindow || owner.congested) return false;
    if (this.inflightBytes < limits.maxInflightBytes) return true;
    this.limitHit(LimitHit.InflightBytes, stats);
    return false;
  }

  /** PUBACK, or PUBCOMP, or a PUBREC with an error reason: the delivery is complete. */
  complete(packetId: number, limits: SessionLimits, stats: BrokerStats): boolean {
    const found = this.untrackInflight(packetId);
    if (found && this.journal !== null) this.journal.completed(packetId);
    if (found && this.owner !== null) this.drain(this.owner, limits, stats);
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
  attach(owner: SessionOwner, limits: SessionLimits, stats: BrokerStats): void {
    this.owner = owner;
    this.disconnectedAt = 0;
    // No iterator over an empty map on every connect: most sessions have nothing in flight.
    if (this.inflightMap !== null) this.resend(this.inflightMap, owner);
    this.drain(owner, limits, stats);
  }

  /** Sends again what was in flight when the last connection ended [MQTT-4.4.0-1]. */
  private resend(inflight: Map<number, InflightEntry>, owner: SessionOwner): void {
    for (const [packetId, entry] of inflight) {
      if (entry.released) owner.sendPubrel(packetId);
      else if (!owner.sendPublish(entry, packetId, true)) {
        this.untrackInflight(packetId);
        if (this.journal !== null) this.journal.completed(packetId);
      }
    }
  }

  detach(now: number): void {
    this.owner = null;
    this.disconnectedAt = now;
  }

  /** Sends queued deliveries while the window and the transport allow. */
  drain(owner: SessionOwner, limits: SessionLimits, stats: BrokerStats): void {
    const queue = this.pending;
    for (let d = queue.peek(); d !== undefined && !owner.congested; d = queue.peek()) {
      if (d.qos > 0 && !this.canSend(owner, limits, stats)) break;
      queue.shift();
      if (this.journal !== null) this.journal.unqueued(d);
      if (d.qos === 0) owner.sendPublish(d, 0, false);
      else this.sendInflight(d, owner);
    }
  }

  private sendInflight(d: Delivery, owner: SessionOwner): void {
    const packetId = this.allocatePacketId();
    const entry: InflightEntry = { message: d.message, qos: d.qos, retain: d.retain, subscriptionId: d.subscriptionId, seq: d.seq, released: false };
    if (!owner.sendPublish(entry, packetId, false)) return;
    this.trackInflight(packetId, entry);
    if (this.journal !== null) this.journal.inflight(packetId, entry);
  }

  /**
   * Bounded queue (mqtt.max_queued messages, mqtt.max_queued_bytes): when full, QoS 0 goes first
   * (the oldest queued, else the new one), then the oldest; each drop is counted and released.
   */
  private enqueue(d: Delivery, limits: SessionLimits, stats: BrokerStats, stored = false): void {
    const size = deliverySize(d);
    if (limits.maxQueued === 0 || size > limits.maxQueuedBytes) {
      if (stored && this.journal !== null) this.journal.unqueued(d);
      this.countDrop(limits.maxQueued === 0 ? DropReason.QueueFull : DropReason.TooLarge, stats);
      this.limitHit(LimitHit.Queue, stats);
      return;
    }
    const queue = (this.queueSlots ??= new DeliveryQueue());
    while (queue.length >= limits.maxQueued || queue.bytes + size > limits.maxQueuedBytes) {
      let dropped = queue.shiftQos0();
      if (dropped === undefined && d.qos === 0) {
        if (stored && this.journal !== null) this.journal.unqueued(d);
        this.countDrop(DropReason.QueueFull, stats);
        this.limitHit(LimitHit.Queue, stats);
        return;
      }
      dropped ??= queue.shift() as Delivery;
      if (this.journal !== null) this.journal.unqueued(dropped);
      this.countDrop(DropReason.QueueFull, stats);
      this.limitHit(LimitHit.Queue, stats);
    }
    ownPayload(d.message);
    queue.push(d);
    if (this.journal !== null && !stored) this.journal.queued(d);
  }

  /** A bound bit this client: counted; logged the first time (rate-limited node-wide). */
  limitHit(limit: LimitHit, stats: BrokerStats): void {
    this.limitsLogged = stats.hitLimit(limit, this.clientId, this.limitsLogged);
  }

  /** The next packet id not in use by an outgoing QoS 1/2 message [MQTT-2.2.1-2]. */
  private allocatePacketId(): number {
    let id = this.nextPacketId;
    while (this.inflight.has(id)) id = id === 0xffff ? 1 : id + 1;
    this.nextPacketId = id === 0xffff ? 1 : id + 1;
    return id;
  }
}
