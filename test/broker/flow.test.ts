// Flow control and per-connection limits on one real node: keepalive, the CONNECT deadline,
// server keepalive, receive maximum and the inflight window, topic aliases both ways, maximum
// packet size both ways.

import t, { type Test } from 'tap';
import { connectClient, messageCollector, rawConnect, type RawClient } from '../helpers/clients.js';
import { bytes, rawHandshake, readPacket, sleep } from './support.js';
import { startNode } from '../helpers/node-process.js';

const node = await startNode(t, {
  env: {
    TIDEMQ_MQTT__IDLE_TIMEOUT: '1',
    TIDEMQ_MQTT__MAX_KEEPALIVE: '10',
    TIDEMQ_MQTT__MAX_TOPIC_ALIAS: '5',
    TIDEMQ_MQTT__MAX_PACKET_SIZE: '2048',
    TIDEMQ_MQTT__MAX_INFLIGHT: '3',
  },
});
const port = node.mqttPort;

/** Publishes, from a fresh MQTT.js client, `n` QoS 1 messages to `topic`. */
async function publishMany(t: Test, topic: string, payloads: Array<string | Buffer>): Promise<void> {
  const pub = await connectClient(t, port, { protocolVersion: 5 });
  for (const p of payloads) await pub.publishAsync(topic, p, { qos: 1 });
}

/** Packets that arrive within `ms`. */
async function drain(raw: RawClient, version: 4 | 5, ms: number): Promise<unknown[]> {
  const out: unknown[] = [];
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return out;
    const p = await readPacket(raw, version, left).catch(() => undefined);
    if (p === undefined) return out;
    out.push(p);
    if (p === null) return out;
  }
}

t.test('keepalive: a silent client is dropped after 1.5x its keepalive; 5.0 gets 0x8D', async (t) => {
  const v5 = await rawConnect(t, port);
  await rawHandshake(v5, 'ka5', 5, { keepalive: 1 });
  const v4 = await rawConnect(t, port);
  await rawHandshake(v4, 'ka4', 4, { keepalive: 1 });
  const start = Date.now();
  t.match(await readPacket(v5, 5, 4000), { cmd: 'disconnect', reasonCode: 0x8d });
  const elapsed = Date.now() - start;
  t.ok(elapsed >= 1300 && elapsed < 3000, `dropped after ${elapsed} ms`);
  t.equal(await readPacket(v4, 4, 2000), null, '3.1.1 is closed without a packet');
  const pinger = await rawConnect(t, port);
  await rawHandshake(pinger, 'ka-ping', 4, { keepalive: 1 });
  for (let i = 0; i < 5; i++) {
    pinger.send(bytes({ cmd: 'pingreq' }));
    t.match(await readPacket(pinger, 4), { cmd: 'pingresp' });
    await sleep(500);
  }
  t.notOk(pinger.isClosed, 'a client that keeps talking stays');
});

t.test('CONNECT deadline: a socket that sends nothing is closed after idle_timeout', async (t) => {
  const silent = await rawConnect(t, port);
  const start = Date.now();
  await silent.closed(4000);
  const elapsed = Date.now() - start;
  t.ok(elapsed >= 900 && elapsed < 2500, `closed after ${elapsed} ms`);
});

t.test('server keepalive: a 5.0 keepalive over max_keepalive is answered with Server Keep Alive', async (t) => {
  const long = await rawHandshake(await rawConnect(t, port), 'ska-long', 5, { keepalive: 60 });
  t.equal(long.properties?.serverKeepAlive, 10);
  const zero = await rawHandshake(await rawConnect(t, port), 'ska-zero', 5, { keepalive: 0 });
  t.equal(zero.properties?.serverKeepAlive, 10, 'keepalive 0 (none) is over any maximum');
  const short = await rawHandshake(await rawConnect(t, port), 'ska-short', 5, { keepalive: 5 });
  t.equal(short.properties?.serverKeepAlive, undefined, 'within the maximum: not sent');
});

t.test('receive maximum: a 5.0 subscriber with receiveMaximum 2 never has more than 2 unacked', async (t) => {
  const sub = await rawConnect(t, port);
  const connack = await rawHandshake(sub, 'rm-sub', 5, { properties: { receiveMaximum: 2 } });
  t.equal(connack.properties?.receiveMaximum, 3, 'the server announces its own Receive Maximum');
  sub.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rm/t', qos: 1 }] }, 5));
  await readPacket(sub, 5);
  await publishMany(t, 'rm/t', ['1', '2', '3', '4', '5']);
  const first = await drain(sub, 5, 400);
  t.equal(first.length, 2, 'two in flight');
  const id = (first[0] as { messageId: number }).messageId;
  sub.send(bytes({ cmd: 'puback', messageId: id }, 5));
  const next = await drain(sub, 5, 400);
  t.equal(next.length, 1, 'one PUBACK opens one slot');
});

t.test('inflight window: a 3.1.1 subscriber gets at most max_inflight unacked', async (t) => {
  const sub = await rawConnect(t, port);
  await rawHandshake(sub, 'win-sub', 4);
  sub.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'win/t', qos: 1 }] }));
  await readPacket(sub, 4);
  await publishMany(t, 'win/t', ['1', '2', '3', '4', '5']);
  const got = await drain(sub, 4, 400);
  t.equal(got.length, 3);
});

t.test('topic aliases, client to server: set and use; over the maximum is DISCONNECT 0x94', async (t) => {
  const s = await connectClient(t, port, { protocolVersion: 5 });
  const got = messageCollector(s);
  await s.subscribeAsync('al/#', { qos: 1 });
  const pub = await rawConnect(t, port);
  const connack = await rawHandshake(pub, 'alias-pub', 5);
  t.equal(connack.properties?.topicAliasMaximum, 5);
  const publish = { cmd: 'publish' as const, qos: 0 as const, retain: false, dup: false };
  pub.send(bytes({ ...publish, topic: 'al/x', payload: Buffer.from('set'), properties: { topicAlias: 5 } }, 5));
  pub.send(bytes({ ...publish, topic: '', payload: Buffer.from('use'), properties: { topicAlias: 5 } }, 5));
  const msgs = await got.next(2);
  t.same(msgs.map((m) => `${m.topic}:${m.payload.toString()}`), ['al/x:set', 'al/x:use']);
  pub.send(bytes({ ...publish, topic: 'al/y', payload: Buffer.from('over'), properties: { topicAlias: 6 } }, 5));
  t.match(await readPacket(pub, 5), { cmd: 'disconnect', reasonCode: 0x94 });
  await pub.closed();
});

t.test('topic aliases, server to client, when the client announces a Topic Alias Maximum', async (t) => {
  const sub = await rawConnect(t, port);
  await rawHandshake(sub, 'alias-sub', 5, { properties: { topicAliasMaximum: 1 } });
  sub.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'sa/+', qos: 0 }] }, 5));
  await readPacket(sub, 5);
  const pub = await connectClient(t, port, { protocolVersion: 5 });
  await pub.publishAsync('sa/x', '1');
  await pub.publishAsync('sa/x', '2');
  await pub.publishAsync('sa/y', '3');
  const got = (await drain(sub, 5, 400)) as Array<{ topic: string; properties?: { topicAlias?: number } }>;
  t.same(
    got.map((p) => [p.topic, p.properties?.topicAlias]),
    [
      ['sa/x', 1],
      ['', 1],
      ['sa/y', undefined],
    ],
    'alias set, then used alone; none beyond the maximum',
  );
});

t.test('maximum packet size both ways', async (t) => {
  const big = await rawConnect(t, port);
  const connack = await rawHandshake(big, 'mps-big', 5);
  t.equal(connack.properties?.maximumPacketSize, 2048);
  big.send(bytes({ cmd: 'publish', topic: 'mps/x', payload: Buffer.alloc(3000), qos: 0, retain: false, dup: false }, 5));
  t.match(await readPacket(big, 5), { cmd: 'disconnect', reasonCode: 0x95 }, 'client over the server maximum');
  await big.closed();

  const small = await rawConnect(t, port);
  await rawHandshake(small, 'mps-small', 5, { properties: { maximumPacketSize: 200 } });
  small.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'mps/y', qos: 1 }] }, 5));
  await readPacket(small, 5);
  await publishMany(t, 'mps/y', [Buffer.alloc(500, 1), 'fits']);
  const got = (await drain(small, 5, 400)) as Array<{ payload: Buffer }>;
  t.same(
    got.map((p) => p.payload.toString()),
    ['fits'],
    'the server never sends more than the client Maximum Packet Size',
  );
});
