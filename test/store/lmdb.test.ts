// What only the LMDB store has: data and sid allocation across reopen, the startup refusal of a
// corrupt or incompatible store (naming the path, never wiping it), and a map that grows.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { open } from 'lmdb';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { StoreError } from '../../src/store/store.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'tidemq-lmdb-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const record = { clientId: 'c1', epoch: 0, expiryInterval: 60, will: undefined, createdAt: 1, disconnectedAt: 2, nextPacketId: 1, subscriptions: [] };

t.test('sessions and sid allocation survive a reopen', async (t) => {
  const path = join(tempDir(t), 'lmdb');
  const a = LmdbStore.open(path);
  const sid = a.allocateSid();
  a.putSession(sid, record);
  await a.close();
  const b = LmdbStore.open(path);
  t.same([...b.loadSessions()].map((s) => [s.sid, s.record.clientId]), [[sid, 'c1']]);
  t.ok(b.allocateSid() > sid, 'a reopened store never hands out a sid again');
  await b.close();
});

t.test('a truncated data file is a startup error naming the path, and the file is left alone', async (t) => {
  const path = join(tempDir(t), 'lmdb');
  const a = LmdbStore.open(path);
  a.putSession(a.allocateSid(), record);
  await a.close();
  const data = join(path, 'data.mdb');
  writeFileSync(data, readFileSync(data).subarray(0, 5000));
  const before = readFileSync(data);
  const err = (() => {
    try {
      LmdbStore.open(path);
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  t.ok(err instanceof StoreError, 'a StoreError');
  t.match((err as Error).message, `session store ${path}: corrupt or incompatible`);
  t.same(readFileSync(data), before, 'not wiped');
});

t.test('a data file of garbage is a startup error', async (t) => {
  const path = join(tempDir(t), 'lmdb');
  LmdbStore.open(path).close();
  writeFileSync(join(path, 'data.mdb'), Buffer.alloc(64 * 1024, 0x5a));
  t.throws(() => LmdbStore.open(path), /session store .*lmdb: corrupt or incompatible/);
});

t.test('a store of another format is refused', async (t) => {
  const path = join(tempDir(t), 'lmdb');
  await LmdbStore.open(path).close();
  const env = open({ path, maxDbs: 12 });
  await env.openDB({ name: 'node' }).put('format', 99);
  await env.close();
  t.throws(() => LmdbStore.open(path), /incompatible: format 99, this version reads format 1/);
});

t.test('an LMDB environment that is not a tidemq store is refused', async (t) => {
  const path = join(tempDir(t), 'lmdb');
  const env = open({ path, maxDbs: 12 });
  await env.openDB({ name: 'sessions' }).put('x', { sid: 1, record });
  await env.close();
  t.throws(() => LmdbStore.open(path), /incompatible: it has data but no format marker/);
});

t.test('the map grows past its initial size as writes need it', async (t) => {
  const path = join(tempDir(t), 'lmdb');
  const store = LmdbStore.open(path, { mapSize: 1 << 20 });
  const sid = store.allocateSid();
  const payload = Buffer.alloc(4096, 1);
  for (let seq = 1; seq <= 2000; seq++) {
    store.putQueued(sid, { message: { topic: 't', payload, qos: 1, retain: false, properties: undefined, expiresAt: 0, from: 'p' }, qos: 1, retain: false, subscriptionId: 0, seq });
  }
  store.putSession(sid, record);
  await store.flushed();
  t.equal([...store.loadSessions()][0]?.queue.length, 2000, '8 MB stored in a 1 MB initial map');
  await store.close();
});
