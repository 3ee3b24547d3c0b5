// Cross-node session takeover on three real nodes (SPEC 4): a persistent session with queued
// messages moves to the node the client reconnects to; many clients move while messages flow,
// and none is lost or duplicated beyond DUP redeliveries; racing connects end with one connection.

import t from 'tap';
import { adminRequest } from '../helpers/admin.js';
import { connectClient } from '../helpers/clients.js';
import type { NodeProcess } from '../helpers/node-process.js';
import { connectListening, sleep, startCluster, waitFor } from './support.js';

const [n1, n2, n3] = await startCluster(t, 3);
if (n1 === undefined || n2 === undefined || n3 === undefined) throw new Error('cluster did not start');
const ROUTES_SETTLE_MS = 300;

/** GET /api/v5/clients/:id on a node: whether that node holds the session. */
async function holds(node: NodeProcess, clientId: string): Promise<boolean> {
  const { status } = await adminRequest(node, 'GET', `/api/v5/clients/${encodeURIComponent(clientId)}`);
  if (status !== 200 && status !== 404) throw new Error(`GET clients/${clientId} on ${node.name}: ${status}`);
  return status === 200;
}

const persistent = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } };

t.test('a persistent session with 200 queued QoS 1 messages moves from node 1 to node 2', async (t) => {
  const first = await connectClient(t, n1.mqttPort, { ...persistent, clientId: 'mover' });
  await first.subscribeAsync({ 'mv/a': { qos: 1 }, 'mv/b/#': { qos: 1 }, 'mv/+/c': { qos: 1 } });
  await first.endAsync();
  const pub = await connectClient(t, n1.mqttPort, { protocolVersion: 5, clientId: 'mover-pub' });
  for (let i = 0; i < 200; i++) await pub.publishAsync('mv/a', String(i), { qos: 1 });

  const arrived: Array<[string, string, number]> = [];
  const { connack } = await connectListening(t, n2.mqttPort, { ...persistent, clientId: 'mover' }, (topic, payload, packet) =>
    arrived.push([topic, payload.toString(), packet.qos]),
  );
  t.equal(connack.sessionPresent, true, 'session present');
  await waitFor('200 messages', () => arrived.length >= 200);
  const msgs = arrived.slice(0, 200);
  t.same(msgs.map((m) => m[1]), Array.from({ length: 200 }, (_, i) => String(i)), 'all 200 in order');
  t.ok(msgs.every((m) => m[2] === 1));
  t.notOk(await holds(n1, 'mover'), 'node 1 no longer holds the session');
  t.ok(await holds(n2, 'mover'), 'node 2 does');

  await sleep(ROUTES_SETTLE_MS);
  for (const [i, n] of [n1, n2, n3].entries()) {
    const p = await connectClient(t, n.mqttPort, { protocolVersion: 5, clientId: `mover-pub-${i}` });
    await p.publishAsync('mv/b/x', `from ${i}`, { qos: 1 });
    await p.publishAsync('mv/z/c', `c from ${i}`, { qos: 1 });
  }
  await waitFor('6 more', () => arrived.length >= 206).catch((err: unknown) => {
    t.comment(JSON.stringify(arrived.slice(200)));
    for (const n of [n1, n2, n3]) t.comment(n.output().split('\n').filter((l) => !l.includes('"level":20')).slice(-15).join('\n'));
    throw err;
  });
  await sleep(200);
  t.same(arrived.slice(200).map((m) => m[1]).sort(), ['c from 0', 'c from 1', 'c from 2', 'from 0', 'from 1', 'from 2'], 'every subscription moved');
});

t.test('session present after the move, and the old connection is told 0x8E', async (t) => {
  const a = await connectClient(t, n1.mqttPort, { ...persistent, clientId: 'kicked' });
  await a.subscribeAsync('kick/#', { qos: 1 });
  const reasons: number[] = [];
  a.on('disconnect', (p) => reasons.push(p.reasonCode ?? 0));
  const b = await connectClient(t, n3.mqttPort, { ...persistent, clientId: 'kicked' });
  t.equal((b as unknown as { connackPacket?: { sessionPresent?: boolean } }).connackPacket?.sessionPresent, true, 'session present');
  await waitFor('the old connection to get its DISCONNECT', () => reasons.length > 0, 5000);
  t.same(reasons, [0x8e], 'DISCONNECT with Session taken over');
  t.notOk(await holds(n1, 'kicked'));
});

t.test('100 clients move from node 1 to node 2 while QoS 1 flows at 1000/s: nothing lost, duplicates only as DUP', async (t) => {
  const N = 100;
  const received: Array<Map<number, boolean[]>> = Array.from({ length: N }, () => new Map());
  const record = (i: number) => (_topic: string, payload: Buffer, packet: { dup?: boolean }) => {
    const seq = Number(payload.toString());
    const seen = received[i] as Map<number, boolean[]>;
    seen.set(seq, [...(seen.get(seq) ?? []), packet.dup === true]);
  };
  const clients = [];
  for (let i = 0; i < N; i++) {
    const c = await connectClient(t, n1.mqttPort, { ...persistent, clientId: `flow-${i}` });
    c.on('message', record(i));
    await c.subscribeAsync(`flow/${i}`, { qos: 1 });
    clients.push(c);
  }
  await sleep(ROUTES_SETTLE_MS);
  const pub = await connectClient(t, n3.mqttPort, { protocolVersion: 5, clientId: 'flow-pub' });
  let sent = 0;
  const total = 4000;
  const publishing = (async () => {
    const started = Date.now();
    while (sent < total) {
      // 10 every 10 ms: 1000/s.
      for (let k = 0; k < 10; k++, sent++) void pub.publishAsync(`flow/${sent % N}`, String(sent), { qos: 1 });
      const due = started + (sent / 1000) * 1000;
      await sleep(Math.max(0, due - Date.now()));
    }
  })();
  await sleep(500);
  const moved = [];
  for (let i = 0; i < N; i++) {
    await (clients[i] as (typeof clients)[number]).endAsync();
    const { client } = await connectListening(t, n2.mqttPort, { ...persistent, clientId: `flow-${i}` }, record(i));
    moved.push(client);
    await sleep(15);
  }
  await publishing;
  await waitFor(
    'every message at its client',
    () => received.every((seen, i) => seen.size === Array.from({ length: total }, (_, s) => s).filter((s) => s % N === i).length),
    20_000,
  ).catch(() => {});
  const lostSeqs: number[] = [];
  let lost = 0;
  let freshDuplicates = 0;
  let dupRedeliveries = 0;
  for (let s = 0; s < total; s++) {
    const copies = received[s % N]?.get(s);
    if (copies === undefined) {
      lost++;
      if (lostSeqs.length < 20) lostSeqs.push(s);
    }
    else {
      freshDuplicates += copies.slice(1).filter((dup) => !dup).length;
      dupRedeliveries += copies.slice(1).filter((dup) => dup).length;
    }
  }
  t.equal(sent, total);
  t.equal(lost, 0, `no message lost ${JSON.stringify(lostSeqs)}`);
  t.equal(freshDuplicates, 0, `no duplicate except DUP redeliveries (${dupRedeliveries} of those)`);
  for (let i = 0; i < 5; i++) t.notOk(await holds(n1, `flow-${i}`), `flow-${i} left node 1`);
});

t.test('connects racing with one client id on two nodes end with one live connection and one session', async (t) => {
  for (let round = 0; round < 10; round++) {
    const id = `race-${round}`;
    const seed = await connectClient(t, n1.mqttPort, { ...persistent, clientId: id });
    await seed.endAsync();
    const closed: string[] = [];
    const [x, y] = await Promise.all(
      [n2, n3].map(async (n) => {
        const c = await connectClient(t, n.mqttPort, { ...persistent, clientId: id, reconnectPeriod: 0 }).catch(() => undefined);
        c?.on('close', () => closed.push(n.name));
        return c;
      }),
    );
    await sleep(1500);
    const live = [x, y].filter((c) => c !== undefined && c.connected).length;
    t.equal(live, 1, `round ${round}: exactly one live connection`);
    const holders = (await Promise.all([n1, n2, n3].map((n) => holds(n, id)))).filter(Boolean).length;
    t.equal(holders, 1, `round ${round}: exactly one node holds the session`);
  }
});
