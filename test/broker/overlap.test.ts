// Overlapping subscriptions of one 5.0 client, on a real node with MQTT.js clients: one copy per
// message at the highest QoS of the matching subscriptions, carrying all their Subscription
// Identifiers [MQTT-3.3.4-2] [MQTT-3.3.4-3]; no-local and shared subscriptions keep their rules;
// the merged identifiers survive the store (an offline queue across a restart).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import t from 'tap';
import { connectClient } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';

const node = await startNode(t);
const port = node.mqttPort;

/** The Subscription Identifiers of a received PUBLISH, sorted (their order is not significant [MQTT-3.3.4-4]). */
function ids(packet: IPublishPacket | undefined): number[] {
  const v = packet?.properties?.subscriptionIdentifier;
  if (v === undefined) return [];
  return (Array.isArray(v) ? [...v] : [v]).sort((a, b) => a - b);
}

const show = (p: IPublishPacket): string => `${p.topic}:${p.payload.toString()}:${p.qos}`;

/** The PUBLISH packets a client receives, in wire order (MQTT.js emits 'message' for QoS 2 only after PUBREL). */
function arrivals(client: MqttClient): IPublishPacket[] {
  const out: IPublishPacket[] = [];
  client.on('packetreceive', (p) => {
    if (p.cmd === 'publish') out.push(p);
  });
  return out;
}

/**
 * Publishes an `end` marker on `topic` and takes from `arrived` everything received before it: the
 * node sends a session's messages in order, so nothing of what was published before can follow.
 */
async function upTo(pub: MqttClient, arrived: IPublishPacket[], topic: string): Promise<IPublishPacket[]> {
  await pub.publishAsync(topic, 'end', { qos: 1 });
  const deadline = Date.now() + 5000;
  for (;;) {
    const i = arrived.findIndex((p) => p.topic === topic && p.payload.toString() === 'end');
    if (i >= 0) return arrived.splice(0, i + 1).slice(0, i);
    if (Date.now() > deadline) throw new Error(`no end marker on ${topic}; got ${JSON.stringify(arrived.map(show))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('overlapping subscriptions: one copy, the highest QoS, every identifier', async (t) => {
  const sub = await connectClient(t, port, { protocolVersion: 5, clientId: 'overlap' });
  const got = arrivals(sub);
  await sub.subscribeAsync('TopicA', { qos: 0, properties: { subscriptionIdentifier: 2 } });
  await sub.subscribeAsync('TopicA/#', { qos: 2, properties: { subscriptionIdentifier: 3 } });
  await sub.subscribeAsync('end/overlap', { qos: 1 });
  const pub = await connectClient(t, port, { protocolVersion: 5 });
  await pub.publishAsync('TopicA', 'q1', { qos: 1 });
  await pub.publishAsync('TopicA', 'q2', { qos: 2 });
  await pub.publishAsync('TopicA/b', 'only #', { qos: 1 });
  const msgs = await upTo(pub, got, 'end/overlap');
  t.same(msgs.map(show), ['TopicA:q1:1', 'TopicA:q2:2', 'TopicA/b:only #:1'], 'one copy each, at the higher subscription QoS');
  t.same(msgs.map(ids), [[2, 3], [2, 3], [3]], 'the identifiers of every matching subscription');

  // The 3.1.1 way to ask: several filters, no identifiers; still one copy.
  const v4 = await connectClient(t, port, { protocolVersion: 4, clientId: 'overlap-v4' });
  const got4 = arrivals(v4);
  await v4.subscribeAsync({ 'v4/+': { qos: 1 }, 'v4/#': { qos: 0 }, '#': { qos: 0 } });
  await pub.publishAsync('v4/x', 'once', { qos: 1 });
  t.same((await upTo(pub, got4, 'v4/end')).map(show), ['v4/x:once:1'], 'one copy, at QoS 1');
});

t.test('no-local and retain-as-published with overlapping subscriptions', async (t) => {
  const c = await connectClient(t, port, { protocolVersion: 5, clientId: 'overlap-nl' });
  const got = arrivals(c);
  await c.subscribeAsync('nl/#', { qos: 1, nl: true, properties: { subscriptionIdentifier: 5 } });
  await c.subscribeAsync('nl/+', { qos: 1, properties: { subscriptionIdentifier: 6 } });
  await c.subscribeAsync('end/nl', { qos: 1 });
  // Its own message: the no-local subscription does not match it [MQTT-3.8.3-3], the other does.
  await c.publishAsync('nl/own', 'own', { qos: 1 });
  const other = await connectClient(t, port, { protocolVersion: 5 });
  await other.publishAsync('nl/other', 'other', { qos: 1 });
  const msgs = await upTo(other, got, 'end/nl');
  t.same(msgs.map((m) => m.payload.toString()), ['own', 'other']);
  t.same(msgs.map(ids), [[6], [5, 6]]);

  const r = await connectClient(t, port, { protocolVersion: 5, clientId: 'overlap-rap' });
  const gotR = arrivals(r);
  await r.subscribeAsync('rap/t', { qos: 1, rap: true, rh: 2, properties: { subscriptionIdentifier: 7 } });
  await r.subscribeAsync('rap/#', { qos: 1, rap: false, rh: 2, properties: { subscriptionIdentifier: 8 } });
  await other.publishAsync('rap/t', 'kept', { qos: 1, retain: true });
  const kept = await upTo(other, gotR, 'rap/end');
  t.equal(kept.length, 1, 'one copy');
  t.equal(kept[0]?.retain, true, 'retain kept: one matching subscription asked for it');
  t.same(ids(kept[0]), [7, 8]);
  await other.publishAsync('rap/t', '', { qos: 1, retain: true });
});

t.test('a shared-subscription match is a delivery of its own', async (t) => {
  const c = await connectClient(t, port, { protocolVersion: 5, clientId: 'overlap-share' });
  const got = arrivals(c);
  await c.subscribeAsync('$share/g/sh/t', { qos: 1, properties: { subscriptionIdentifier: 9 } });
  await c.subscribeAsync('sh/t', { qos: 1, properties: { subscriptionIdentifier: 10 } });
  await c.subscribeAsync('sh/+', { qos: 0, properties: { subscriptionIdentifier: 11 } });
  const pub = await connectClient(t, port, { protocolVersion: 5 });
  await pub.publishAsync('sh/t', 'x', { qos: 1 });
  const msgs = await upTo(pub, got, 'sh/end');
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
