// Overlapping subscriptions of one 5.0 client, on a real node with MQTT.js clients: one copy per
// message at the highest QoS of the matching subscriptions, carrying all their Subscription
// Identifiers [MQTT-3.3.4-2] [MQTT-3.3.4-3]; no-local and shared subscriptions keep their rules;
// the merged identifiers survive the store (an offline queue across a restart).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import t, { type Test } from 'tap';
import { connectClient, messageCollector, type Received } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';

const node = await startNode(t);
const port = node.mqttPort;

/** The Subscription Identifiers of a received PUBLISH, sorted (their order is not significant [MQTT-3.3.4-4]). */
function ids(m: Received | IPublishPacket | undefined): number[] {
  const packet = m === undefined ? undefined : 'packet' in m ? m.packet : m;
  const v = packet?.properties?.subscriptionIdentifier;
  if (v === undefined) return [];
  return (Array.isArray(v) ? [...v] : [v]).sort((a, b) => a - b);
}

/** Publishes `end` on `topic` and returns every message received before it: nothing else may follow. */
async function upTo(t: Test, pub: MqttClient, got: ReturnType<typeof messageCollector>, topic: string): Promise<Received[]> {
  await pub.publishAsync(topic, 'end', { qos: 1 });
  const out: Received[] = [];
  for (;;) {
    const [m] = await got.next(1);
    if (m === undefined) break;
    if (m.payload.toString() === 'end') return out;
    out.push(m);
  }
  t.fail('no end marker');
  return out;
}

t.test('overlapping subscriptions: one copy, the highest QoS, every identifier', async (t) => {
  const sub = await connectClient(t, port, { protocolVersion: 5, clientId: 'overlap' });
  const got = messageCollector(sub);
  await sub.subscribeAsync('TopicA', { qos: 0, properties: { subscriptionIdentifier: 2 } });
  await sub.subscribeAsync('TopicA/#', { qos: 2, properties: { subscriptionIdentifier: 3 } });
  await sub.subscribeAsync('end/overlap', { qos: 1 });
  const pub = await connectClient(t, port, { protocolVersion: 5 });
  await pub.publishAsync('TopicA', 'q1', { qos: 1 });
  await pub.publishAsync('TopicA', 'q2', { qos: 2 });
  await pub.publishAsync('TopicA/b', 'only #', { qos: 1 });
  const msgs = await upTo(t, pub, got, 'end/overlap');
  t.same(msgs.map((m) => `${m.topic}:${m.payload.toString()}:${m.packet.qos}`), ['TopicA:q1:1', 'TopicA:q2:2', 'TopicA/b:only #:1'], 'one copy each, at the higher subscription QoS');
  t.same(msgs.map(ids), [[2, 3], [2, 3], [3]], 'the identifiers of every matching subscription');

  // The 3.1.1 way to ask: two filters, no identifiers; still one copy.
  const v4 = await connectClient(t, port, { protocolVersion: 4, clientId: 'overlap-v4' });
  const got4 = messageCollector(v4);
  await v4.subscribeAsync({ 'v4/+': { qos: 1 }, 'v4/#': { qos: 0 }, '#': { qos: 0 } });
  await pub.publishAsync('v4/x', 'once', { qos: 1 });
  const [first] = await got4.next(1);
  t.equal(first?.packet.qos, 1);
  const rest = await upTo(t, pub, got4, 'v4/end');
  t.same(rest.map((m) => m.payload.toString()), [], 'no second copy');
});

t.test('no-local and retain-as-published with overlapping subscriptions', async (t) => {
  const c = await connectClient(t, port, { protocolVersion: 5, clientId: 'overlap-nl' });
  const got = messageCollector(c);
  await c.subscribeAsync('nl/#', { qos: 1, nl: true, properties: { subscriptionIdentifier: 5 } });
  await c.subscribeAsync('nl/+', { qos: 1, properties: { subscriptionIdentifier: 6 } });
  await c.subscribeAsync('end/nl', { qos: 1 });
  // Its own message: the no-local subscription does not match it [MQTT-3.8.3-3], the other does.
  await c.publishAsync('nl/own', 'own', { qos: 1 });
  const other = await connectClient(t, port, { protocolVersion: 5 });
  await other.publishAsync('nl/other', 'other', { qos: 1 });
  const msgs = await upTo(t, other, got, 'end/nl');
  t.same(msgs.map((m) => m.payload.toString()), ['own', 'other']);
  t.same(msgs.map(ids), [[6], [5, 6]]);

  const r = await connectClient(t, port, { protocolVersion: 5, clientId: 'overlap-rap' });
  const gotR = messageCollector(r);
  await r.subscribeAsync('rap/t', { qos: 1, rap: true, rh: 2, properties: { subscriptionIdentifier: 7 } });
  await r.subscribeAsync('rap/#', { qos: 1, rap: false, rh: 2, properties: { subscriptionIdentifier: 8 } });
  await other.publishAsync('rap/t', 'kept', { qos: 1, retain: true });
  const [m] = await gotR.next(1);
  t.equal(m?.packet.retain, true, 'retain kept: one matching subscription asked for it');
  t.same(ids(m), [7, 8]);
  t.same((await upTo(t, other, gotR, 'rap/end')).length, 0, 'one copy');
  await other.publishAsync('rap/t', '', { qos: 1, retain: true });
});

t.test('a shared-subscription match is a delivery of its own', async (t) => {
  const c = await connectClient(t, port, { protocolVersion: 5, clientId: 'overlap-share' });
  const got = messageCollector(c);
  await c.subscribeAsync('$share/g/sh/t', { qos: 1, properties: { subscriptionIdentifier: 9 } });
  await c.subscribeAsync('sh/t', { qos: 1, properties: { subscriptionIdentifier: 10 } });
  await c.subscribeAsync('sh/+', { qos: 0, properties: { subscriptionIdentifier: 11 } });
  const pub = await connectClient(t, port, { protocolVersion: 5 });
  await pub.publishAsync('sh/t', 'x', { qos: 1 });
  const msgs = await upTo(t, pub, got, 'sh/end');
  t.same(msgs.map(ids).sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0)), [[9], [10, 11]], 'the group copy, and one for the plain subscriptions');
});

t.test('the identifiers of a queued message survive a restart (LMDB)', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tidemq-overlap-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const opts = { name: 'overlap@127.0.0.1', dataDir, keepDataDir: true };
  const first = await startNode(t, opts);
  const clientOpts = { protocolVersion: 5 as const, clientId: 'overlap-q', clean: false, properties: { sessionExpiryInterval: 300 } };
  const sub = await connectClient(t, first.mqttPort, clientOpts);
  await sub.subscribeAsync('q/a', { qos: 1, properties: { subscriptionIdentifier: 21 } });
  await sub.subscribeAsync('q/#', { qos: 1, properties: { subscriptionIdentifier: 22 } });
  await sub.endAsync();
  const pub = await connectClient(t, first.mqttPort, { protocolVersion: 5 });
  await pub.publishAsync('q/a', 'queued', { qos: 1 });
  await pub.endAsync();
  t.equal(await first.stop('SIGTERM'), 0);

  const second = await startNode(t, { ...opts, mqttPort: first.mqttPort, mgmtPort: first.mgmtPort, clusterPort: first.clusterPort });
  const received: IPublishPacket[] = [];
  const again = mqtt.connect(`mqtt://127.0.0.1:${second.mqttPort}`, { reconnectPeriod: 0, ...clientOpts });
  t.teardown(() => again.endAsync(true));
  again.on('packetreceive', (p) => {
    if (p.cmd === 'publish') received.push(p);
  });
  await new Promise((resolve, reject) => {
    again.once('connect', resolve);
    again.once('error', reject);
  });
  const deadline = Date.now() + 5000;
  while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(received.length, 1, 'one queued copy');
  t.equal(received[0]?.payload.toString(), 'queued');
  t.same(ids(received[0]), [21, 22]);
});
