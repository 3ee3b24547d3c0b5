// One real node, real MQTT.js clients: versions, topic matching, shared subscriptions, retained
// messages, QoS, and the 5.0 per-message features that must pass through the broker.

import t from 'tap';
import { connectClient, messageCollector, rawConnect } from '../helpers/clients.js';
import { rawHandshake, readPacket, sleep } from './support.js';
import { startNode } from '../helpers/node-process.js';

// Clients publish to $SYS only when allowed (off by default); the $-topic matching test needs it.
const node = await startNode(t, { env: { TIDEMQ_AUTH__ALLOW_SYS_PUBLISH: 'true' } });
const port = node.mqttPort;

t.test('MQTT 3.1, 3.1.1 and 5.0 clients talk to each other', async (t) => {
  const v3 = await connectClient(t, port, { protocolId: 'MQIsdp', protocolVersion: 3, clientId: 'v3' });
  const v4 = await connectClient(t, port, { protocolVersion: 4, clientId: 'v4' });
  const v5 = await connectClient(t, port, { protocolVersion: 5, clientId: 'v5' });
  const got = [v3, v4, v5].map(messageCollector);
  for (const c of [v3, v4, v5]) await c.subscribeAsync('ver/#', { qos: 1 });
  await v3.publishAsync('ver/3', 'from 3.1', { qos: 1 });
  await v4.publishAsync('ver/4', 'from 3.1.1', { qos: 1 });
  await v5.publishAsync('ver/5', 'from 5.0', { qos: 1 });
  for (const c of got) {
    const msgs = await c.next(3);
    t.same(msgs.map((m) => m.payload.toString()).sort(), ['from 3.1', 'from 3.1.1', 'from 5.0']);
  }
});

t.test('wildcards, and $-topics not matched by leading wildcards', async (t) => {
  const c = await connectClient(t, port, { protocolVersion: 5 });
  const plus = await connectClient(t, port, { protocolVersion: 5 });
  const sys = await connectClient(t, port, { protocolVersion: 5 });
  const all = messageCollector(c);
  const plusGot = messageCollector(plus);
  const sysGot = messageCollector(sys);
  await c.subscribeAsync('#');
  await plus.subscribeAsync('+/status/+');
  await sys.subscribeAsync('$SYS/#');
  const pub = await connectClient(t, port, { protocolVersion: 5 });
  await pub.publishAsync('$SYS/broker/load', 'sys');
  await pub.publishAsync('$SYS/status/x', 'sys2');
  await pub.publishAsync('dev/status/1', 'one');
  await pub.publishAsync('dev/status', 'short');
  await pub.publishAsync('dev/status/1/deep', 'deep');
  t.same((await all.next(3)).map((m) => m.topic), ['dev/status/1', 'dev/status', 'dev/status/1/deep'], '# matches all but $-topics');
  t.same((await plusGot.next(1)).map((m) => m.topic), ['dev/status/1'], '+ is exactly one level, never a $ first level');
  t.same((await sysGot.next(2)).map((m) => m.topic), ['$SYS/broker/load', '$SYS/status/x']);
  await sleep(200);
  t.equal(all.all().length, 3);
  t.equal(plusGot.all().length, 1);
});

t.test('shared subscriptions: round robin within a group, one copy per group', async (t) => {
  const a = await connectClient(t, port, { protocolVersion: 5, clientId: 'share-a' });
  const b = await connectClient(t, port, { protocolVersion: 5, clientId: 'share-b' });
  const c = await connectClient(t, port, { protocolVersion: 5, clientId: 'share-c' });
  const [ga, gb, gc] = [a, b, c].map(messageCollector) as [ReturnType<typeof messageCollector>, ReturnType<typeof messageCollector>, ReturnType<typeof messageCollector>];
  await a.subscribeAsync('$share/g1/jobs/+', { qos: 1 });
  await b.subscribeAsync('$share/g1/jobs/+', { qos: 1 });
  await c.subscribeAsync('$share/g2/jobs/#', { qos: 1 });
  const pub = await connectClient(t, port, { protocolVersion: 5 });
  for (let i = 0; i < 6; i++) await pub.publishAsync(`jobs/${i}`, String(i), { qos: 1 });
  await ga.next(3);
  await gb.next(3);
  await gc.next(6);
  await sleep(200);
  const seen = [...ga.all(), ...gb.all()].map((m) => m.payload.toString()).sort();
  t.same(seen, ['0', '1', '2', '3', '4', '5'], 'each message to exactly one member of g1');
  t.same(ga.all().map((m) => m.payload.toString()), ['0', '2', '4'], 'alternating');
  t.equal(gc.all().length, 6, 'g2 gets its own copy of every message');
});

t.test('retained messages: set, replace, delete, flag on new subscriptions', async (t) => {
  const pub = await connectClient(t, port, { protocolVersion: 5 });
  await pub.publishAsync('ret/a', 'first', { qos: 1, retain: true });
  await pub.publishAsync('ret/a', 'second', { qos: 1, retain: true });
  await pub.publishAsync('ret/b', 'bee', { qos: 1, retain: true });
  await pub.publishAsync('ret/b', '', { qos: 1, retain: true }); // deletes
  const s = await connectClient(t, port, { protocolVersion: 5 });
  const got = messageCollector(s);
  await s.subscribeAsync('ret/+', { qos: 1 });
  const [m] = await got.next(1);
  t.equal(m?.payload.toString(), 'second', 'replaced');
  t.equal(m?.packet.retain, true, 'retained flag on delivery to a new subscription');
  await pub.publishAsync('ret/a', 'live', { qos: 1, retain: true });
  const [live] = await got.next(1);
  t.equal(live?.packet.retain, false, 'a live retained publish arrives without the flag (no RAP)');
  await sleep(200);
  t.equal(got.all().length, 2, 'the deleted one is not sent');
});

t.test('retain handling 0/1/2 and retain-as-published', async (t) => {
  const pub = await connectClient(t, port, { protocolVersion: 5 });
  await pub.publishAsync('rh/x', 'kept', { qos: 1, retain: true });
  const s = await connectClient(t, port, { protocolVersion: 5 });
  const got = messageCollector(s);
  await s.subscribeAsync('rh/#', { qos: 1, rh: 2 });
  await s.subscribeAsync('rh/+', { qos: 1, rh: 1 });
  t.equal((await got.next(1))[0]?.payload.toString(), 'kept', 'rh 1 on a new subscription sends');
  await s.subscribeAsync('rh/+', { qos: 1, rh: 1 });
  await s.subscribeAsync('rh/x', { qos: 1, rh: 0 });
  t.equal((await got.next(1))[0]?.packet.retain, true, 'rh 0 sends');
  await s.subscribeAsync('rh/x', { qos: 1, rh: 0 });
  t.equal((await got.next(1))[0]?.packet.retain, true, 'rh 0 sends again on a repeated subscribe');
  await sleep(200);
  t.equal(got.all().length, 3, 'rh 2 never, rh 1 not on an existing subscription');

  const rap = await connectClient(t, port, { protocolVersion: 5 });
  const rapGot = messageCollector(rap);
  await rap.subscribeAsync('rap/t', { qos: 1, rap: true });
  await pub.publishAsync('rap/t', 'p', { qos: 1, retain: true });
  t.equal((await rapGot.next(1))[0]?.packet.retain, true, 'retain-as-published keeps the flag');
  await pub.publishAsync('rap/t', '', { qos: 1, retain: true });
});

t.test('QoS 0/1/2 both ways, downgraded to the subscription QoS', async (t) => {
  const s = await connectClient(t, port, { protocolVersion: 4 });
  const got = messageCollector(s);
  await s.subscribeAsync('qos/2', { qos: 2 });
  await s.subscribeAsync('qos/1', { qos: 1 });
  const pub = await connectClient(t, port, { protocolVersion: 4 });
  for (const q of [0, 1, 2] as const) {
    await pub.publishAsync('qos/2', `q${q}`, { qos: q });
    await pub.publishAsync('qos/1', `q${q}`, { qos: q });
  }
  const msgs = await got.next(6);
  t.same(
    msgs.map((m) => `${m.topic}:${m.payload.toString()}:${m.packet.qos}`).sort(),
    ['qos/1:q0:0', 'qos/1:q1:1', 'qos/1:q2:1', 'qos/2:q0:0', 'qos/2:q1:1', 'qos/2:q2:2'],
  );
});

t.test('no-local, subscription identifiers, and properties passed through (5.0)', async (t) => {
  const c = await connectClient(t, port, { protocolVersion: 5, clientId: 'props' });
  const got = messageCollector(c);
  await c.subscribeAsync('nl/t', { qos: 1, nl: true });
  await c.subscribeAsync('sid/#', { qos: 1, properties: { subscriptionIdentifier: 42 } });
  await c.publishAsync('nl/t', 'own', { qos: 1 });
  const other = await connectClient(t, port, { protocolVersion: 5 });
  await other.publishAsync('nl/t', 'other', { qos: 1 });
  t.equal((await got.next(1))[0]?.payload.toString(), 'other', 'own message not delivered with no-local');

  await other.publishAsync('sid/x', Buffer.from('{"a":1}'), {
    qos: 1,
    properties: {
      responseTopic: 'reply/here',
      correlationData: Buffer.from('corr-1'),
      userProperties: { k: 'v', two: ['1', '2'] },
      payloadFormatIndicator: true,
      contentType: 'application/json',
    },
  });
  const [m] = await got.next(1);
  const p = m?.packet.properties;
  t.same(p?.subscriptionIdentifier, 42);
  t.equal(p?.responseTopic, 'reply/here');
  t.equal(p?.correlationData?.toString(), 'corr-1');
  t.same(p?.userProperties, { k: 'v', two: ['1', '2'] });
  t.equal(p?.payloadFormatIndicator, true);
  t.equal(p?.contentType, 'application/json');
});

t.test('assigned client ids and the 3.1.1 empty id rule', async (t) => {
  const v5 = await rawConnect(t, port);
  const connack = await rawHandshake(v5, '', 5);
  t.equal(connack.reasonCode, 0);
  t.match(connack.properties?.assignedClientIdentifier, /^auto-/, '5.0 empty id gets one in CONNACK');

  const v4 = await rawConnect(t, port);
  // By hand: mqtt-packet will not encode an empty id without Clean Session.
  v4.send([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 0, 0, 0]);
  const refused = await readPacket(v4, 4);
  t.match(refused, { cmd: 'connack', returnCode: 2 }, '3.1.1 empty id with clean session 0 -> CONNACK rc 2');
  await v4.closed();
  const ok = await rawHandshake(await rawConnect(t, port), '', 4, { clean: true });
  t.equal(ok.returnCode, 0, '3.1.1 empty id with clean session 1 is accepted');
  t.equal(ok.properties, undefined, 'and is not told an id');
});
