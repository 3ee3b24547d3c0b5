// One contract, two stores: every behaviour the broker and the takeover rely on, run against the
// in-memory store and the LMDB store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { InflightRecord, QueuedRecord, SessionRecord, SessionStore, StoredMessage } from '../../src/store/store.js';

function message(topic: string, payload: string): StoredMessage {
  return { topic, payload: Buffer.from(payload), qos: 1, retain: false, properties: { userProperties: [['k', 'v']] }, expiresAt: 0, from: 'pub' };
}

function record(clientId: string, epoch = 0): SessionRecord {
  return {
    clientId,
    epoch,
    expiryInterval: 300,
    will: undefined,
    createdAt: 1000,
    disconnectedAt: 2000,
    nextPacketId: 7,
    subscriptions: [['a/+', { qos: 1, noLocal: false, retainAsPublished: true, retainHandling: 0, subscriptionId: 3 }]],
  };
}

function queued(seq: number, payload = `m${seq}`): QueuedRecord {
  return { message: message('a/b', payload), qos: 1, retain: false, subscriptionId: 0, seq };
}

function inflight(seq: number, released = false): InflightRecord {
  return { ...queued(seq), released };
}

const kinds: Array<[string, (t: Test) => SessionStore]> = [
  ['memory', () => new MemoryStore()],
  [
    'lmdb',
    (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'tidemq-store-'));
      const store = LmdbStore.open(join(dir, 'lmdb'));
      t.teardown(async () => {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      });
      return store;
    },
  ],
];

for (const [kind, make] of kinds) {
  t.test(`${kind}: a session round-trips with its entries in order`, async (t) => {
    const store = make(t);
    const sid = store.allocateSid();
    store.putSession(sid, record('c1'));
    const e = inflight(5);
    store.putInflight(sid, 0xffff, e);
    store.putInflight(sid, 1, inflight(9, true));
    e.released = true; // later mutation by the caller is not what was stored
    store.putIncoming(sid, 42);
    store.putIncoming(sid, 7);
    for (const seq of [12, 10, 11]) store.putQueued(sid, queued(seq));
    store.deleteQueued(sid, 11);
    await store.flushed();
    const all = [...store.loadSessions()];
    t.equal(all.length, 1);
    const s = all[0];
    if (s === undefined) return;
    t.equal(s.sid, sid);
    t.same(s.record, record('c1'));
    t.same(s.inflight.map(([id, x]) => [id, x.seq, x.released]), [[0xffff, 5, false], [1, 9, true]], 'inflight in seq (send) order');
    t.same(s.incoming, [7, 42]);
    t.same(s.queue.map((q) => q.seq), [10, 12]);
    const first = s.queue[0];
    t.ok(first !== undefined && Buffer.isBuffer(first.message.payload) && first.message.payload.toString() === 'm10', 'payload is a Buffer');
    t.same(first?.message.properties, { userProperties: [['k', 'v']] });
  });

  t.test(`${kind}: writes counts every write, flushed resolves`, async (t) => {
    const store = make(t);
    const before = store.writes;
    store.putIncoming(store.allocateSid(), 1);
    t.ok(store.writes > before);
    await store.flushed();
  });

  t.test(`${kind}: a deleted session is gone at once, its entries swept in bounded batches`, async (t) => {
    const store = make(t);
    const old = store.allocateSid();
    store.putSession(old, record('c1'));
    for (let i = 1; i <= 5; i++) store.putQueued(old, queued(i));
    store.putInflight(old, 1, inflight(6));
    store.deleteSession('c1', old);
    // A new session under the same client id keeps its own entries.
    const fresh = store.allocateSid();
    t.not(fresh, old);
    store.putSession(fresh, record('c1'));
    store.putQueued(fresh, queued(1));
    await store.flushed();
    t.same([...store.loadSessions()].map((s) => [s.sid, s.queue.length]), [[fresh, 1]]);
    t.equal(store.garbageSessions(), 1);
    let total = 0;
    for (let pass = 0; pass < 20 && store.garbageSessions() > 0; pass++) {
      const n = store.sweep(2);
      t.ok(n <= 2, 'bounded batch');
      total += n;
      await store.flushed();
    }
    t.equal(total, 6);
    t.equal(store.garbageSessions(), 0);
    t.same([...store.loadSessions()].map((s) => [s.sid, s.queue.length]), [[fresh, 1]]);
  });

  t.test(`${kind}: deleting with a stale sid leaves the newer session`, async (t) => {
    const store = make(t);
    const a = store.allocateSid();
    store.putSession(a, record('c1'));
    const b = store.allocateSid();
    store.putSession(b, record('c1'));
    store.deleteSession('c1', a);
    await store.flushed();
    t.same([...store.loadSessions()].map((s) => s.sid), [b]);
  });

  t.test(`${kind}: export and import move a session atomically, a stale import is refused`, async (t) => {
    const from = make(t);
    const to = make(t);
    const sid = from.allocateSid();
    from.putSession(sid, record('c1', 3));
    from.putInflight(sid, 2, inflight(1));
    from.putIncoming(sid, 9);
    from.putQueued(sid, queued(2));
    t.equal(await from.exportSession('nobody'), undefined);
    const parts = await from.exportSession('c1');
    if (parts === undefined) return t.fail('no export');
    t.same(parts.map((p) => p.kind), ['session', 'inflight', 'incoming', 'queued']);
    const header = parts[0];
    t.equal(header?.kind === 'session' ? header.record.epoch : -1, 4, 'epoch raised by one');

    const stale = to.allocateSid();
    to.putSession(stale, record('c1', 1));
    to.putQueued(stale, queued(50));
    const got = await to.importSession(parts);
    t.type(got, 'number');
    await to.flushed();
    const loaded = [...to.loadSessions()];
    t.equal(loaded.length, 1);
    t.equal(loaded[0]?.record.epoch, 4);
    t.same(loaded[0]?.queue.map((q) => q.seq), [2], 'the older local copy was replaced, not merged');
    t.same(loaded[0]?.incoming, [9]);
    t.same(loaded[0]?.inflight.map(([id]) => id), [2]);

    t.equal(await to.importSession(parts), undefined, 'same epoch again: stale');
    t.equal(await to.importSession([{ kind: 'session', record: record('c1', 2) }]), undefined, 'older epoch: stale');
    await to.flushed();
    t.equal([...to.loadSessions()][0]?.queue.length, 1, 'a refused import changes nothing');
    await t.rejects(to.importSession([{ kind: 'incoming', packetId: 1 }]), 'a stream without a header is an error');
  });

  t.test(`${kind}: retained messages, also with topics longer than a key`, async (t) => {
    const store = make(t);
    const long = `x/${'y'.repeat(3000)}`;
    store.putRetained(message('a/1', 'one'));
    store.putRetained(message(long, 'long'));
    store.putRetained(message('a/2', 'two'));
    store.putRetained(message('a/2', 'two again'));
    store.deleteRetained('a/1');
    await store.flushed();
    const got = [...store.loadRetained()].map((m) => [m.topic, m.payload.toString()]).sort();
    t.same(got, [['a/2', 'two again'], [long, 'long']]);
    store.deleteRetained(long);
    await store.flushed();
    t.equal([...store.loadRetained()].length, 1);
  });

  t.test(`${kind}: node state`, async (t) => {
    const store = make(t);
    t.equal(store.getNodeState('evacuation'), undefined);
    await store.putNodeState('evacuation', { state: 'evicting_conns', rate: 5 });
    t.same(store.getNodeState('evacuation'), { state: 'evicting_conns', rate: 5 });
  });
}
