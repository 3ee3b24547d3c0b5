// The LMDB session store: one environment per node in its data dir, named databases for sessions,
// inflight, incoming QoS 2 ids, offline queues, retained messages and node state, values in
// lmdb's msgpack. Writes are async and batched per event turn by lmdb-js; flushed() is the
// durability barrier an ack waits on (DESIGN.md principle 5).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { open, type Database, type RootDatabase } from 'lmdb';
import {
  putSessionParts,
  sessionHeader,
  sessionParts,
  StoreError,
  type InflightRecord,
  type QueuedRecord,
  type SessionPart,
  type SessionRecord,
  type SessionStore,
  type StoredMessage,
  type StoredSession,
} from './store.js';

/** On-disk layout version; a store written with another one is refused, never rewritten. */
const STORE_FORMAT = 1;
/** sids are reserved in blocks, so allocating one rarely writes. */
const SID_BLOCK = 1024;
/** LMDB keys are bounded (lmdb-js: 1978 bytes); longer topics and client ids are keyed by hash. */
const MAX_PLAIN_KEY = 1000;
/** How long the startup integrity check of an existing store may take. */
const CHECK_TIMEOUT_MS = 120_000;

type EntryKey = [number, number];

interface SessionRow {
  sid: number;
  record: SessionRecord;
}

export interface LmdbStoreOptions {
  /** Initial map size in bytes; lmdb-js grows it when a write needs more. */
  mapSize?: number;
  /** Skip the out-of-process integrity check (it guards against LMDB crashing on a corrupt file). */
  skipCheck?: boolean;
}

function textKey(text: string): string {
  return Buffer.byteLength(text) <= MAX_PLAIN_KEY ? text : `#sha256:${createHash('sha256').update(text).digest('hex')}`;
}

/** The integrity check script, next to this module (.ts when run from source by the tests). */
function checkScript(): string {
  const self = fileURLToPath(import.meta.url);
  return join(dirname(self), self.endsWith('.ts') ? 'check.ts' : 'check.js');
}

/**
 * Opening a damaged LMDB file can kill the process (SIGBUS/SIGSEGV in the native code), so an
 * existing store is first opened and read end to end by a child process; its failure becomes a
 * StoreError naming the path.
 */
function checkStore(path: string): void {
  if (!existsSync(join(path, 'data.mdb'))) return;
  const r = spawnSync(process.execPath, [...process.execArgv, checkScript(), path], { encoding: 'utf8', timeout: CHECK_TIMEOUT_MS });
  if (r.status === 0) return;
  const detail = (r.stderr || r.stdout || '').trim().split('\n').pop() ?? '';
  const how = r.signal !== null ? `the integrity check crashed (${r.signal})` : `the integrity check failed (exit ${r.status})`;
  throw new StoreError(path, `corrupt or incompatible: ${how}${detail === '' ? '' : `: ${detail}`}; move it aside to start with an empty store`);
}

export class LmdbStore implements SessionStore {
  writes = 0;
  private nextSid: number;
  private reservedSid: number;

  private constructor(
    readonly path: string,
    private readonly env: RootDatabase,
    private readonly sessions: Database<SessionRow, string>,
    private readonly inflight: Database<InflightRecord, EntryKey>,
    private readonly incoming: Database<true, EntryKey>,
    private readonly queue: Database<QueuedRecord, EntryKey>,
    private readonly retained: Database<StoredMessage, string>,
    private readonly node: Database<unknown, string>,
    private readonly garbage: Database<true, number>,
  ) {
    this.nextSid = this.reservedSid = (node.get('sid') as number | undefined) ?? 1;
  }

  /** Opens (creating if needed) the store at `path`; throws StoreError for a corrupt or incompatible one. */
  static open(path: string, options: LmdbStoreOptions = {}): LmdbStore {
    if (options.skipCheck !== true) checkStore(path);
    let env: RootDatabase;
    try {
      env = open({ path, maxDbs: 12, ...(options.mapSize === undefined ? {} : { mapSize: options.mapSize }) });
    } catch (err) {
      throw new StoreError(path, `cannot open: ${(err as Error).message}`);
    }
    const db = <V, K extends string | number | EntryKey>(name: string): Database<V, K> => env.openDB<V, K>({ name });
    const store = new LmdbStore(
      path,
      env,
      db('sessions'),
      db('inflight'),
      db('incoming'),
      db('queue'),
      db('retained'),
      db('node'),
      db('garbage'),
    );
    const format = store.node.get('format');
    if (format === undefined) {
      if (store.sessions.getKeysCount() > 0 || store.retained.getKeysCount() > 0) {
        void env.close();
        throw new StoreError(path, 'incompatible: it has data but no format marker');
      }
      store.node.putSync('format', STORE_FORMAT);
    } else if (format !== STORE_FORMAT) {
      void env.close();
      throw new StoreError(path, `incompatible: format ${JSON.stringify(format)}, this version reads format ${STORE_FORMAT}`);
    }
    return store;
  }

  async flushed(): Promise<void> {
    await this.env.flushed;
  }

  allocateSid(): number {
    if (this.nextSid >= this.reservedSid) {
      this.reservedSid = this.nextSid + SID_BLOCK;
      this.writes++;
      void this.node.put('sid', this.reservedSid);
    }
    return this.nextSid++;
  }

  putSession(sid: number, record: SessionRecord): void {
    this.writes++;
    void this.sessions.put(textKey(record.clientId), { sid, record });
  }

  deleteSession(clientId: string, sid: number): void {
    this.writes++;
    // In a transaction, so the check sees a put of the same turn that is not committed yet.
    void this.env.transaction(() => this.dropSession(textKey(clientId), sid));
  }

  /** Inside a write transaction: removes the row if it is still this sid's (a newer session under
   *  the same id may have replaced it) and leaves the sid's entries to sweep(). */
  private dropSession(key: string, sid: number): void {
    if (this.sessions.get(key)?.sid === sid) void this.sessions.remove(key);
    void this.garbage.put(sid, true);
  }

  putInflight(sid: number, packetId: number, entry: InflightRecord): void {
    this.writes++;
    void this.inflight.put([sid, packetId], entry);
  }

  deleteInflight(sid: number, packetId: number): void {
    this.writes++;
    void this.inflight.remove([sid, packetId]);
  }

  putIncoming(sid: number, packetId: number): void {
    this.writes++;
    void this.incoming.put([sid, packetId], true);
  }

  deleteIncoming(sid: number, packetId: number): void {
    this.writes++;
    void this.incoming.remove([sid, packetId]);
  }

  putQueued(sid: number, entry: QueuedRecord): void {
    this.writes++;
    void this.queue.put([sid, entry.seq], entry);
  }

  deleteQueued(sid: number, seq: number): void {
    this.writes++;
    void this.queue.remove([sid, seq]);
  }

  *loadSessions(): Iterable<StoredSession> {
    for (const { value } of this.sessions.getRange()) yield this.load(value);
  }

  private load(row: SessionRow): StoredSession {
    // A fresh range object each time: lmdb-js writes into the options it is given.
    const range = (): { start: number[]; end: number[] } => ({ start: [row.sid], end: [row.sid + 1] });
    const inflight: Array<[number, InflightRecord]> = [];
    for (const { key, value } of this.inflight.getRange(range())) inflight.push([key[1], value]);
    inflight.sort((a, b) => a[1].seq - b[1].seq);
    const incoming: number[] = [];
    for (const key of this.incoming.getKeys(range())) incoming.push(key[1]);
    const queue: QueuedRecord[] = [];
    for (const { value } of this.queue.getRange(range())) queue.push(value);
    return { sid: row.sid, record: row.record, inflight, incoming, queue };
  }

  async exportSession(clientId: string): Promise<SessionPart[] | undefined> {
    await this.env.committed;
    const row = this.sessions.get(textKey(clientId));
    if (row === undefined) return undefined;
    return sessionParts(this.load(row), row.record.epoch + 1);
  }

  async importSession(parts: readonly SessionPart[]): Promise<number | undefined> {
    const header = sessionHeader(parts);
    const key = textKey(header.clientId);
    // One transaction: the epoch check and the whole session land together or not at all.
    return this.env.transaction(() => {
      const existing = this.sessions.get(key);
      if (existing !== undefined) {
        if (existing.record.epoch >= header.epoch) return undefined;
        this.dropSession(key, existing.sid);
      }
      const sid = this.allocateSid();
      putSessionParts(this, sid, parts);
      return sid;
    });
  }

  putRetained(message: StoredMessage): void {
    this.writes++;
    void this.retained.put(textKey(message.topic), message);
  }

  deleteRetained(topic: string): void {
    this.writes++;
    void this.retained.remove(textKey(topic));
  }

  *loadRetained(): Iterable<StoredMessage> {
    for (const { value } of this.retained.getRange()) yield value;
  }

  getNodeState(key: string): unknown {
    return this.node.get(`state:${key}`);
  }

  async putNodeState(key: string, value: unknown): Promise<void> {
    this.writes++;
    await this.node.put(`state:${key}`, value);
  }

  sweep(max: number): number {
    let deleted = 0;
    for (const sid of this.garbage.getKeys()) {
      let found = 0;
      for (const db of [this.inflight, this.incoming, this.queue] as Array<Database<unknown, EntryKey>>) {
        for (const key of db.getKeys({ start: [sid], end: [sid + 1], limit: max - deleted })) {
          void db.remove(key);
          found++;
          deleted++;
        }
        if (deleted >= max) break;
      }
      // Removes are committed later; only a pass that finds nothing left retires the sid.
      if (found === 0) void this.garbage.remove(sid);
      this.writes += found;
      if (deleted >= max) break;
    }
    return deleted;
  }

  garbageSessions(): number {
    return this.garbage.getKeysCount();
  }

  async close(): Promise<void> {
    await this.env.flushed;
    await this.env.close();
  }
}
