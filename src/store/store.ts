// The session store contract (DESIGN.md principle 5): what the broker, the cluster takeover and the
// rebalance state need from a node's persistent store. Two implementations: LMDB (the real one) and
// memory (tests, and a node run without persistence); one contract suite runs against both.

/**
 * The records of store format 1, spelled out field by field: the file format changes only when
 * these do, never with the broker's in-memory objects (src/broker/session-journal.ts converts).
 * The store imports nothing of the broker; MQTT properties are opaque to it.
 */
export type StoredQoS = 0 | 1 | 2;
/** MQTT 5 PUBLISH or will properties, as the broker wrote them. */
export type StoredProperties = Readonly<Record<string, unknown>>;

/**
 * A message as stored and as a takeover streams it (its payload is always its own copy). Its
 * `origin` lets a takeover recipient drop duplicate copies.
 */
export interface StoredMessage {
  topic: string;
  payload: Buffer;
  qos: StoredQoS;
  retain: boolean;
  properties: StoredProperties | undefined;
  /** Absolute ms when the message expires, 0 for never. */
  expiresAt: number;
  from: string;
  origin?: string | undefined;
  originSeq?: number | undefined;
}

/** One offline-queued delivery as stored. `seq` orders a session's queue and inflight together. */
export interface QueuedRecord {
  message: StoredMessage;
  qos: StoredQoS;
  retain: boolean;
  /** 0, one Subscription Identifier, or several (records of older versions hold a number). */
  subscriptionId: number | number[];
  seq: number;
}

/** One outgoing QoS 1/2 delivery sent and unacknowledged (`released`: PUBREL sent). */
export interface InflightRecord extends QueuedRecord {
  released: boolean;
}

export interface SubscriptionRecord {
  qos: StoredQoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId: number;
}

export interface WillRecord {
  topic: string;
  payload: Buffer;
  qos: StoredQoS;
  retain: boolean;
  properties?: StoredProperties | undefined;
  /** Will Delay Interval in seconds. */
  delay: number;
}

/** The session header: everything but inflight, incoming QoS 2 ids and the queue. */
export interface SessionRecord {
  clientId: string;
  /** Takeover epoch: an import with an epoch not above the stored one is stale. */
  epoch: number;
  expiryInterval: number;
  will: WillRecord | undefined;
  /** The ACL identity with the client id (absent in records written before it was kept). */
  username?: string | undefined;
  createdAt: number;
  /** ms of the last disconnect; 0 while connected (a crash then counts from the restart). */
  disconnectedAt: number;
  nextPacketId: number;
  subscriptions: Array<[string, SubscriptionRecord]>;
}

/** A whole stored session, as loaded at start. Inflight and queue are in seq order. */
export interface StoredSession {
  /** Store-local id keying the session's inflight, incoming and queue entries. */
  sid: number;
  record: SessionRecord;
  inflight: Array<[packetId: number, entry: InflightRecord]>;
  incoming: number[];
  queue: QueuedRecord[];
}

/**
 * One session as a record stream for moving it between nodes (takeover, evacuation): the header
 * first, then its entries. Plain data, so it frames over a cluster link as is.
 */
export type SessionPart =
  | { kind: 'session'; record: SessionRecord }
  | { kind: 'inflight'; packetId: number; entry: InflightRecord }
  | { kind: 'incoming'; packetId: number }
  | { kind: 'queued'; entry: QueuedRecord };

/** A store that cannot be opened: corrupt, incompatible, or unreadable. Names the path. */
export class StoreError extends Error {
  constructor(
    readonly path: string,
    why: string,
  ) {
    super(`session store ${path}: ${why}`);
    this.name = 'StoreError';
  }
}

export interface SessionStore {
  /** Where the store lives (for messages), '' for memory. */
  readonly path: string;
  /** Writes issued so far. A change across a call means the call wrote and an ack that depends
   *  on it must wait for flushed(). */
  readonly writes: number;
  /** Resolves once every write issued so far is durable. */
  flushed(): Promise<void>;

  /** A fresh sid for a new persistent session, never reused by this store. */
  allocateSid(): number;
  putSession(sid: number, record: SessionRecord): void;
  /** Removes the session now; its entries are deleted in the background by sweep(). */
  deleteSession(clientId: string, sid: number): void;
  putInflight(sid: number, packetId: number, entry: InflightRecord): void;
  deleteInflight(sid: number, packetId: number): void;
  putIncoming(sid: number, packetId: number): void;
  deleteIncoming(sid: number, packetId: number): void;
  putQueued(sid: number, entry: QueuedRecord): void;
  deleteQueued(sid: number, seq: number): void;
  /** Every stored session with its entries (at start). */
  loadSessions(): Iterable<StoredSession>;

  /**
   * The session as a record stream, after every write issued so far has committed, with its
   * epoch raised by one: the importer stores it at that epoch. Undefined when there is none.
   */
  exportSession(clientId: string): Promise<SessionPart[] | undefined>;
  /**
   * Stores an exported session atomically, replacing a local copy, unless the local copy's epoch
   * is not below the import's (a stale import): then it returns undefined and changes nothing.
   * Returns the sid it stored the session under.
   */
  importSession(parts: readonly SessionPart[]): Promise<number | undefined>;

  putRetained(message: StoredMessage): void;
  deleteRetained(topic: string): void;
  loadRetained(): Iterable<StoredMessage>;

  /** Node state (e.g. evacuation), by key. */
  getNodeState(key: string): unknown;
  putNodeState(key: string, value: unknown): Promise<void>;

  /** Deletes up to `max` entries of deleted sessions; returns how many it deleted. */
  sweep(max: number): number;
  /** Entries of deleted sessions still waiting for sweep() (for tests and metrics). */
  garbageSessions(): number;
  /** Flushes and closes. */
  close(): Promise<void>;
}

/** The parts of an exported session, in stream order. */
export function sessionParts(s: StoredSession, epoch: number): SessionPart[] {
  const parts: SessionPart[] = [{ kind: 'session', record: { ...s.record, epoch } }];
  for (const [packetId, entry] of s.inflight) parts.push({ kind: 'inflight', packetId, entry });
  for (const packetId of s.incoming) parts.push({ kind: 'incoming', packetId });
  for (const entry of s.queue) parts.push({ kind: 'queued', entry });
  return parts;
}

/** Writes a record stream's parts under `sid` through the store's own put methods (an import). */
export function putSessionParts(store: SessionStore, sid: number, parts: readonly SessionPart[]): void {
  for (const part of parts) {
    if (part.kind === 'session') store.putSession(sid, part.record);
    else if (part.kind === 'inflight') store.putInflight(sid, part.packetId, part.entry);
    else if (part.kind === 'incoming') store.putIncoming(sid, part.packetId);
    else store.putQueued(sid, part.entry);
  }
}

/** The session header of a record stream; throws on a stream that does not start with one. */
export function sessionHeader(parts: readonly SessionPart[]): SessionRecord {
  const first = parts[0];
  if (first === undefined || first.kind !== 'session') throw new Error('session record stream must start with the session header');
  return first.record;
}
