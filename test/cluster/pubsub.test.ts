// Three real nodes: publishes cross nodes with their QoS, wildcards and shared subscriptions work
// cluster-wide, retained messages are visible from every node.

import t from 'tap';
import { connectClient, messageCollector } from '../helpers/clients.js';
import { sleep, startCluster } from './support.js';

const [n1, n2, n3] = await startCluster(t, 3);
if (n1 === undefined || n2 === undefined || n3 === undefined) throw new Error('cluster did not start');
/** Route changes travel asynchronously; on loopback they land within milliseconds. */
const ROUTES_SETTLE_MS = 300;

t.test('subscribers on nodes 2 and 3, publisher on node 1: QoS 0, 1 and 2 as promised', async (t) => {
  const s2 = await connectClient(t, n2.mqttPort, { protocolVersion: 5, clientId: 'q-s2' });
  const s3 = await connectClient(t, n3.mqttPort, { protocolVersion: 4, clientId: 'q-s3' });
  const got2 = messageCollector(s2);
  const got3 = messageCollector(s3);
  await s2.subscribeAsync('q/#', { qos: 2 });
  await s3.subscribeAsync('q/+', { qos: 1 });
  await sleep(ROUTES_SETTLE_MS);
  const pub = await connectClient(t, n1.mqttPort, { protocolVersion: 5, clientId: 'q-pub' });
  await pub.publishAsync('q/0', 'zero', { qos: 0 });
  await pub.publishAsync('q/1', 'one', { qos: 1 });
  await pub.publishAsync('q/2', 'two', { qos: 2 });
  const m2 = await got2.next(3);
  t.same(m2.map((m) => [m.topic, m.payload.toString(), m.packet.qos]), [['q/0', 'zero', 0], ['q/1', 'one', 1], ['q/2', 'two', 2]]);
  const m3 = await got3.next(3);
  // QoS is the minimum of the publish and the subscription [MQTT-3.8.4-8].
  t.same(m3.map((m) => [m.topic, m.payload.toString(), m.packet.qos]), [['q/0', 'zero', 0], ['q/1', 'one', 1], ['q/2', 'two', 1]]);
  await sleep(200);
  t.equal(got2.all().length, 3, 'each message once on node 2');
  t.equal(got3.all().length, 3, 'each message once on node 3');
});

t.test('a publish to a node with two matching filters is forwarded once', async (t) => {
  const s = await connectClient(t, n2.mqttPort, { protocolVersion: 5, clientId: 'once-s' });
  const got = messageCollector(s);
  await s.subscribeAsync(['once/a', 'once/+', 'once/#'], { qos: 1 });
  await sleep(ROUTES_SETTLE_MS);
  const pub = await connectClient(t, n1.mqttPort, { protocolVersion: 5, clientId: 'once-pub' });
  await pub.publishAsync('once/a', 'x', { qos: 1 });
  await got.next(1); // one copy for the session's overlapping subscriptions [MQTT-3.3.4-2]
  await sleep(200);
  t.equal(got.all().length, 1, 'not multiplied by the number of matching routes or subscriptions');
});

t.test('no routes to a node after its last subscriber leaves', async (t) => {
  const s = await connectClient(t, n3.mqttPort, { protocolVersion: 5, clientId: 'gone-s' });
  await s.subscribeAsync('gone/x', { qos: 0 });
  await sleep(ROUTES_SETTLE_MS);
  const pub = await connectClient(t, n1.mqttPort, { protocolVersion: 5, clientId: 'gone-pub' });
  const acks: number[] = [];
  pub.on('packetreceive', (p) => {
    if (p.cmd === 'puback') acks.push(p.reasonCode ?? 0);
  });
  await pub.publishAsync('gone/x', 'a', { qos: 1 });
  await s.unsubscribeAsync('gone/x');
  await sleep(ROUTES_SETTLE_MS);
  await pub.publishAsync('gone/x', 'b', { qos: 1 });
  // 5.0 PUBACK 0x10 "no matching subscribers": a remote route counts as a match while it exists.
  t.same(acks, [0, 0x10], 'the route is deleted with the last subscriber');
});

t.test('shared subscription: one delivery per group across the cluster', async (t) => {
  const members = await Promise.all(
    [n1, n2, n3].map((n, i) => connectClient(t, n.mqttPort, { protocolVersion: 5, clientId: `share-${i}` })),
  );
  const got = members.map(messageCollector);
  for (const m of members) await m.subscribeAsync('$share/g/jobs/#', { qos: 1 });
  const plain = await connectClient(t, n3.mqttPort, { protocolVersion: 5, clientId: 'share-plain' });
  const plainGot = messageCollector(plain);
  await plain.subscribeAsync('jobs/#', { qos: 1 });
  await sleep(ROUTES_SETTLE_MS);
  const pubs = await Promise.all([n1, n2].map((n, i) => connectClient(t, n.mqttPort, { protocolVersion: 5, clientId: `share-pub-${i}` })));
  const total = 60;
  for (let i = 0; i < total; i++) await (pubs[i % 2] as (typeof pubs)[number]).publishAsync(`jobs/${i}`, String(i), { qos: 1 });
  await plainGot.next(total);
  await sleep(500);
  const counts = got.map((g) => g.all().length);
  t.equal(counts.reduce((a, b) => a + b, 0), total, `each message to exactly one group member (${counts.join(', ')})`);
  t.ok(counts.every((c) => c > 0), 'members on every node get a share');
  const seen = got.flatMap((g) => g.all().map((m) => m.payload.toString())).sort((a, b) => Number(a) - Number(b));
  t.same(seen, Array.from({ length: total }, (_, i) => String(i)));
});

t.test('retained messages are visible from every node', async (t) => {
  const pub = await connectClient(t, n2.mqttPort, { protocolVersion: 5, clientId: 'ret-pub' });
  await pub.publishAsync('ret/a', 'kept', { qos: 1, retain: true });
  await sleep(ROUTES_SETTLE_MS);
  for (const n of [n1, n2, n3]) {
    const c = await connectClient(t, n.mqttPort, { protocolVersion: 5, clientId: `ret-sub-${n.name}` });
    const got = messageCollector(c);
    await c.subscribeAsync('ret/#', { qos: 1 });
    const [m] = await got.next(1);
    t.equal(m?.payload.toString(), 'kept', `retained on ${n.name}`);
    t.equal(m?.packet.retain, true);
  }
  await pub.publishAsync('ret/a', '', { qos: 1, retain: true });
  await sleep(ROUTES_SETTLE_MS);
  const late = await connectClient(t, n3.mqttPort, { protocolVersion: 5, clientId: 'ret-late' });
  const lateGot = messageCollector(late);
  await late.subscribeAsync('ret/#', { qos: 1 });
  await sleep(300);
  t.equal(lateGot.all().length, 0, 'clearing is replicated too');
});
