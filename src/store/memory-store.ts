// The in-memory session store: the contract of store.ts without a disk, for tests and for a node
// run without persistence. Records are copied on the way in, as a real store encodes them.
import {
  putSessionParts,
  sessionHeader,
  sessionParts,
  type InflightRecord,
  type QueuedRecord,
  type SessionPart,
  type SessionRecord,
  type SessionStore,
  type StoredMessage,
  type StoredSession,
} from './store.js';

interface Entries {
  inflight: Map<number, InflightRecord>;
  incoming: Set<number>;
  queue: Map<number, QueuedRecord>;
}

/** A deep copy of plain data (objects, arrays, Buffers), so later mutation by the caller does not show. */
function copy<T>(value: T): T {
  if (Buffer.isBuffer(value)) return Buffer.from(value) as T;
  if (Array.isArray(value)) return value.map(copy) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = copy(v);
    return out as T;
  }
  return value;
}

export class MemoryStore implements SessionStore {
  readonly path = '';
  writes = 0;
  private nextSid = 1;
  private readonly sessions = new Map<string, { sid: number; record: SessionRecord }>();
  private readonly entries = new Map<number, Entries>();
  private readonly garbage = new Map<number, Entries>();
  private readonly retained = new Map<string, StoredMessage>();
  private readonly nodeState = new Map<string, unknown>();

  flushed(): Promise<void> {
    return Promise.resolve();
  }

  allocateSid(): number {
    return this.nextSid++;
  }

  putSession(sid: number, record: SessionRecord): void {
    this.writes++;
    this.sessions.set(record.clientId, { sid, record: copy(record) });
  }

  deleteSession(clientId: string, sid: number): void {
    this.writes++;
    const row = this.sessions.get(clientId);
    if (row !== undefined && row.sid === sid) this.sessions.delete(clientId);
    const e = this.entries.get(sid);
    if (e !== undefined) {
      this.entries.delete(sid);
      this.garbage.set(sid, e);
    }
  }

  private of(sid: number): Entries {
    let e = this.entries.get(sid);
    if (e === undefined) this.entries.set(sid, (e = { inflight: new Map(), incoming: new Set(), queue: new Map() }));
    return e;
  }

  putInflight(sid: number, packetId: number, entry: InflightRecord): void {
    this.writes++;
    this.of(sid).inflight.set(packetId, copy(entry));
  }

  deleteInflight(sid: number, packetId: number): void {
    this.writes++;
    this.entries.get(sid)?.inflight.delete(packetId);
  }

  putIncoming(sid: number, packetId: number): void {
    this.writes++;
    this.of(sid).incoming.add(packetId);
  }

  deleteIncoming(sid: number, packetId: number): void {
    this.writes++;
    this.entries.get(sid)?.incoming.delete(packetId);
  }

  putQueued(sid: number, entry: QueuedRecord): void {
    this.writes++;
    this.of(sid).queue.set(entry.seq, copy(entry));
  }

  deleteQueued(sid: number, seq: number): void {
    this.writes++;
    this.entries.get(sid)?.queue.delete(seq);
  }

  *loadSessions(): Iterable<StoredSession> {
    for (const { sid, record } of this.sessions.values()) yield this.load(sid, record);
  }

  private load(sid: number, record: SessionRecord): StoredSession {
    const e = this.entries.get(sid);
    const inflight = [...(e?.inflight ?? [])].map(([id, entry]): [number, InflightRecord] => [id, copy(entry)]);
    inflight.sort((a, b) => a[1].seq - b[1].seq);
    const queue = [...(e?.queue.values() ?? [])].map(copy).sort((a, b) => a.seq - b.seq);
    return { sid, record: copy(record), inflight, incoming: [...(e?.incoming ?? [])].sort((a, b) => a - b), queue };
  }

  async exportSession(clientId: string): Promise<SessionPart[] | undefined> {
    const row = this.sessions.get(clientId);
    if (row === undefined) return undefined;
    return sessionParts(this.load(row.sid, row.record), row.record.epoch + 1);
  }

  async importSession(parts: readonly SessionPart[]): Promise<number | undefined> {
    const header = sessionHeader(parts);
    const existing = this.sessions.get(header.clientId);
    if (existing !== undefined) {
      if (existing.record.epoch >= header.epoch) return undefined;
      this.deleteSession(header.clientId, existing.sid);
    }
    const sid = this.allocateSid();
    putSessionParts(this, sid, parts);
    return sid;
  }

  putRetained(message: StoredMessage): void {
    this.writes++;
    this.retained.set(message.topic, copy(message));
  }

  deleteRetained(topic: string): void {
    this.writes++;
    this.retained.delete(topic);
  }

  loadRetained(): Iterable<StoredMessage> {
    return [...this.retained.values()].map(copy);
  }

  getNodeState(key: string): unknown {
    return copy(this.nodeState.get(key));
  }

  putNodeState(key: string, value: unknown): Promise<void> {
    this.writes++;
    this.nodeState.set(key, copy(value));
    return Promise.resolve();
  }

  sweep(max: number): number {
    let deleted = 0;
    for (const [sid, e] of this.garbage) {
      for (const part of [e.inflight, e.incoming, e.queue]) {
        for (const key of part.keys()) {
          if (deleted >= max) return deleted;
          part.delete(key);
          deleted++;
        }
      }
      this.garbage.delete(sid);
    }
    return deleted;
  }

  garbageSessions(): number {
    return this.garbage.size;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
