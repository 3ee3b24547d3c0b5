// Write-through of one persistent session: the Session calls these as its state changes, and each
// becomes one async store write (batched per event turn by the store). Clean sessions have no
// journal and never get here. Also the one place that converts between the broker's objects and
// the store's records (the store, a takeover's record stream).
import type { Properties } from '../mqtt/packets.js';
import type { InflightRecord, QueuedRecord, SessionRecord, SessionStore, StoredMessage, StoredSession, SubscriptionRecord, WillRecord } from '../store/store.js';
import { Message } from './message.js';
import { Session, type Delivery, type InflightEntry, type SessionLimits, type SubscriptionOptions, type WillState } from './session.js';
import type { BrokerStats } from './stats.js';

export class SessionJournal {
  constructor(
    readonly store: SessionStore,
    /** The store's key for this session's entries. */
    readonly sid: number,
    /** Takeover epoch the session is stored at. */
    readonly epoch: number,
    /** Last seq handed out: one counter orders the queue and inflight together. */
    private seq = 0,
  ) {}

  queued(d: Delivery): void {
    d.seq = ++this.seq;
    this.store.putQueued(this.sid, queuedRecord(d, d.seq));
  }

  unqueued(d: Delivery): void {
    this.store.deleteQueued(this.sid, d.seq);
  }

  /** Sent or released (PUBREL): the entry as it stands now. A delivery keeps its queue seq. */
  inflight(packetId: number, entry: InflightEntry): void {
    if (entry.seq === 0) entry.seq = ++this.seq;
    this.store.putInflight(this.sid, packetId, inflightRecord(entry, entry.seq));
  }

  completed(packetId: number): void {
    this.store.deleteInflight(this.sid, packetId);
  }

  incoming(packetId: number, held: boolean): void {
    if (held) this.store.putIncoming(this.sid, packetId);
    else this.store.deleteIncoming(this.sid, packetId);
  }

  /** The session header (subscriptions, will, expiry, times). */
  save(session: Session): void {
    this.store.putSession(this.sid, sessionRecord(session, this.epoch));
  }

  /** The whole session, for one that becomes persistent while it has state. */
  saveAll(session: Session): void {
    this.save(session);
    for (const [packetId, entry] of session.inflight) this.inflight(packetId, entry);
    for (const packetId of session.incomingQos2) this.incoming(packetId, true);
    for (const d of session.queue) this.queued(d);
  }

  delete(session: Session): void {
    this.store.deleteSession(session.clientId, this.sid);
  }
}

export function sessionRecord(session: Session, epoch: number): SessionRecord {
  const subscriptions: Array<[string, SubscriptionRecord]> = [];
  for (const [filter, o] of session.subscriptions) subscriptions.push([filter, subscriptionRecord(o)]);
  return {
    clientId: session.clientId,
    epoch,
    expiryInterval: session.expiryInterval,
    will: session.will === undefined ? undefined : willRecord(session.will),
    username: session.username,
    createdAt: session.createdAt,
    disconnectedAt: session.disconnectedAt,
    nextPacketId: session.nextPacketId,
    subscriptions,
  };
}

function subscriptionRecord(o: SubscriptionOptions): SubscriptionRecord {
  return { qos: o.qos, noLocal: o.noLocal, retainAsPublished: o.retainAsPublished, retainHandling: o.retainHandling, subscriptionId: o.subscriptionId };
}

function willRecord(w: WillState): WillRecord {
  return { topic: w.topic, payload: w.payload, qos: w.qos, retain: w.retain, properties: w.properties as WillRecord['properties'], delay: w.delay };
}

function toWill(w: WillRecord): WillState {
  // The store keeps the properties the broker wrote; they are MQTT properties again here.
  return { topic: w.topic, payload: w.payload, qos: w.qos, retain: w.retain, properties: w.properties as Properties | undefined, delay: w.delay };
}

/** A message as the store (and a takeover's record stream) keeps it. */
export function messageRecord(m: Message): StoredMessage {
  const r: StoredMessage = { topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties as StoredMessage['properties'], expiresAt: m.expiresAt, from: m.from };
  if (m.origin !== undefined) {
    r.origin = m.origin;
    r.originSeq = m.originSeq;
  }
  return r;
}

/** A queued delivery as a record, at `seq`. */
export function queuedRecord(d: Delivery, seq: number): QueuedRecord {
  return { message: messageRecord(d.message), qos: d.qos, retain: d.retain, subscriptionId: d.subscriptionId, seq };
}

/** An inflight delivery as a record, at `seq`. */
export function inflightRecord(e: InflightEntry, seq: number): InflightRecord {
  return { message: messageRecord(e.message), qos: e.qos, retain: e.retain, subscriptionId: e.subscriptionId, seq, released: e.released };
}

/** A stored message as the broker's Message (its payload is its own copy). */
export function toMessage(m: StoredMessage): Message {
  return new Message(m.topic, m.payload, m.qos, m.retain, m.properties as Properties | undefined, m.expiresAt, m.from, true);
}

/**
 * A stored session as a disconnected Session with its journal (subscriptions are the caller's to
 * put in the trie). A session stored while connected (the node crashed) counts as disconnected
 * at `now`, so its expiry clock restarts from there. With `bound`, a queue longer than today's
 * limits is cut as delivering it would be (drops leave the store).
 */
export function restoreSession(stored: StoredSession, store: SessionStore, now: number, bound?: { limits: SessionLimits; stats: BrokerStats }): Session {
  const r = stored.record;
  const session = new Session(r.clientId, r.expiryInterval, r.createdAt);
  session.will = r.will === undefined ? undefined : toWill(r.will);
  session.username = r.username;
  session.disconnectedAt = r.disconnectedAt === 0 ? now : r.disconnectedAt;
  let seq = 0;
  let lastPacketId = 0;
  for (const [packetId, e] of stored.inflight) {
    session.trackInflight(packetId, { message: toMessage(e.message), qos: e.qos, retain: e.retain, subscriptionId: e.subscriptionId, seq: e.seq, released: e.released });
    seq = Math.max(seq, e.seq);
    lastPacketId = packetId;
  }
  for (const packetId of stored.incoming) session.addIncoming(packetId);
  for (const q of stored.queue) seq = Math.max(seq, q.seq);
  session.journal = new SessionJournal(store, stored.sid, r.epoch, seq);
  for (const q of stored.queue) {
    session.restoreQueued({ message: toMessage(q.message), qos: q.qos, retain: q.retain, subscriptionId: q.subscriptionId, seq: q.seq }, bound);
  }
  // The header is not rewritten per message: the id after the newest inflight one is next.
  session.nextPacketId = lastPacketId === 0 ? r.nextPacketId : lastPacketId === 0xffff ? 1 : lastPacketId + 1;
  return session;
}
