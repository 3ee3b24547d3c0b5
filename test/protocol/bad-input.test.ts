// Bad input as raw bytes over raw TCP sockets to one real node. Each case ends only its own
// connection, with the reason code the spec names (5.0: CONNACK before the session, DISCONNECT
// after; 3.x: a plain close), while a healthy client on the same node keeps working.

import t, { type Test } from 'tap';
import { connectClient, messageCollector, rawConnect, type RawClient } from '../helpers/clients.js';
import { bytes, connectBytes, rawHandshake, readPacket, rssKb } from '../broker/support.js';
import { startNode } from '../helpers/node-process.js';

const node = await startNode(t, {
  env: {
    TIDEMQ_MQTT__IDLE_TIMEOUT: '1',
    TIDEMQ_MQTT__MAX_PACKET_SIZE: '4096',
    TIDEMQ_MQTT__MAX_CONNECT_SIZE: '4096',
    TIDEMQ_MQTT__MAX_INFLIGHT: '2',
    TIDEMQ_MQTT__MAX_TOPIC_ALIAS: '3',
  },
});
const port = node.mqttPort;

// The healthy pair, connected for the whole file.
const healthySub = await connectClient(t, port, { protocolVersion: 5, clientId: 'healthy-sub' });
const healthyPub = await connectClient(t, port, { protocolVersion: 4, clientId: 'healthy-pub' });
const healthy = messageCollector(healthySub);
await healthySub.subscribeAsync('healthy', { qos: 1 });
let roundTrips = 0;

async function stillHealthy(t: Test): Promise<void> {
  const n = ++roundTrips;
  await healthyPub.publishAsync('healthy', String(n), { qos: 1 });
  const [m] = await healthy.next(1);
  t.equal(m?.payload.toString(), String(n), 'the healthy client still works');
}

/** A 5.0 raw client past CONNACK. */
async function connected5(t: Test, id: string, keepalive = 0): Promise<RawClient> {
  const raw = await rawConnect(t, port);
  await rawHandshake(raw, id, 5, { keepalive });
  return raw;
}

async function connected4(t: Test, id: string): Promise<RawClient> {
  const raw = await rawConnect(t, port);
  await rawHandshake(raw, id, 4);
  return raw;
}

/** Expects a 5.0 DISCONNECT with `reason`, then the close. */
async function disconnectedWith(t: Test, raw: RawClient, reason: number, what: string): Promise<void> {
  t.match(await readPacket(raw, 5), { cmd: 'disconnect', reasonCode: reason }, what);
  await raw.closed();
}

/** Expects the connection to close without another byte (3.x, or before CONNECT). */
async function closedSilently(t: Test, raw: RawClient, what: string, timeoutMs = 5000): Promise<void> {
  const rest = await raw.read(1, timeoutMs);
  t.equal(rest.length, 0, `${what}: closed without a reply`);
  t.ok(raw.isClosed);
}

const pub5 = (topic: string, extra: object = {}): Buffer =>
  bytes({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 0, retain: false, dup: false, ...extra }, 5);

/** A 5.0 PUBLISH QoS 0 with `topicBytes` as the raw topic name. */
function publishRawTopic(topicBytes: number[]): Buffer {
  const body = [topicBytes.length >> 8, topicBytes.length & 0xff, ...topicBytes, 0 /* no properties */];
  return Buffer.from([0x30, body.length, ...body]);
}

t.test('remaining length: 5 bytes, and a non-minimal encoding', async (t) => {
  const early = await rawConnect(t, port);
  early.send([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]);
  await closedSilently(t, early, 'before CONNECT');
  const five = await connected5(t, 'rl-five');
  five.send([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]);
  await disconnectedWith(t, five, 0x81, '5-byte remaining length: malformed');
  const nonMinimal = await connected5(t, 'rl-nonmin');
  nonMinimal.send([0xc0, 0x80, 0x00]); // PINGREQ with length 0 in two bytes
  await disconnectedWith(t, nonMinimal, 0x81, 'non-minimal remaining length: malformed');
  await stillHealthy(t);
});

t.test('truncated packets idle until the deadline', async (t) => {
  const connect = connectBytes('trunc', 5);
  const before = await rawConnect(t, port);
  const start = Date.now();
  before.send(connect.subarray(0, 6));
  await closedSilently(t, before, 'truncated CONNECT');
  const waited = Date.now() - start;
  t.ok(waited >= 900, `closed at the CONNECT deadline (${waited} ms)`);

  const after = await connected5(t, 'trunc-after', 1);
  after.send([0x30, 20, 0, 3, 0x61]); // PUBLISH promising 20 bytes, sending 3
  t.match(await readPacket(after, 5, 4000), { cmd: 'disconnect', reasonCode: 0x8d }, 'then the keepalive ends it');
  await stillHealthy(t);
});

t.test('wrong fixed-header flags', async (t) => {
  const v5 = await connected5(t, 'flags5');
  v5.send([0x80, 0x06, 0, 1, 0, 1, 0x61, 0]); // SUBSCRIBE with flags 0 instead of 2
  await disconnectedWith(t, v5, 0x81, 'SUBSCRIBE flags 0');
  const v4 = await connected4(t, 'flags4');
  v4.send([0x62 & 0xf0, 2, 0, 1]); // PUBREL with flags 0
  await closedSilently(t, v4, '3.1.1 PUBREL flags 0');
  const qos3 = await connected5(t, 'flags-qos3');
  qos3.send([0x36, 4, 0, 1, 0x61, 0]); // PUBLISH QoS 3
  await disconnectedWith(t, qos3, 0x81, 'PUBLISH QoS 3');
  await stillHealthy(t);
});

t.test('packet before CONNECT, and a second CONNECT', async (t) => {
  const early = await rawConnect(t, port);
  early.send(bytes({ cmd: 'pingreq' }));
  await closedSilently(t, early, 'PINGREQ first');
  const twice = await connected5(t, 'twice');
  twice.send(connectBytes('twice', 5));
  await disconnectedWith(t, twice, 0x82, 'second CONNECT: protocol error');
  const twice4 = await connected4(t, 'twice4');
  twice4.send(connectBytes('twice4', 4));
  await closedSilently(t, twice4, '3.1.1 second CONNECT');
  await stillHealthy(t);
});

t.test('bad CONNECT: 5.0 gets a CONNACK with the reason, 3.x a close or its return code', async (t) => {
  const reserved = await rawConnect(t, port);
  const c5 = connectBytes('bad-flags', 5);
  c5[9] = (c5[9] as number) | 0x01; // the reserved connect flag [MQTT-3.1.2-3]
  reserved.send(c5);
  t.match(await readPacket(reserved, 5), { cmd: 'connack', reasonCode: 0x81 }, '5.0 reserved flag: CONNACK 0x81');
  await reserved.closed();
  const reserved4 = await rawConnect(t, port);
  const c4 = connectBytes('bad-flags4', 4);
  c4[9] = (c4[9] as number) | 0x01;
  reserved4.send(c4);
  await closedSilently(t, reserved4, '3.1.1 reserved flag');
  const level = await rawConnect(t, port);
  const c6 = connectBytes('level6', 4);
  c6[8] = 6; // protocol level 6
  level.send(c6);
  t.match(await readPacket(level, 4), { cmd: 'connack', returnCode: 1 }, 'unknown level: return code 1');
  await stillHealthy(t);
});

t.test('oversize packets', async (t) => {
  const v5 = await connected5(t, 'big5');
  v5.send(pub5('big', { payload: Buffer.alloc(5000) }));
  await disconnectedWith(t, v5, 0x95, 'PUBLISH over max_packet_size');
  const v4 = await connected4(t, 'big4');
  v4.send(bytes({ cmd: 'publish', topic: 'big', payload: Buffer.alloc(5000), qos: 0, retain: false, dup: false }));
  await closedSilently(t, v4, '3.1.1 oversize');
  const connect = await rawConnect(t, port);
  connect.send(connectBytes('huge-connect', 4, { will: { topic: 'w', payload: Buffer.alloc(5000), qos: 0, retain: false } }));
  await closedSilently(t, connect, 'CONNECT over max_connect_size');
  await stillHealthy(t);
});

t.test('bad topic names: invalid UTF-8, U+0000, wildcards', async (t) => {
  const utf8 = await connected5(t, 'topic-utf8');
  utf8.send(publishRawTopic([0x61, 0xc3, 0x28]));
  await disconnectedWith(t, utf8, 0x81, 'invalid UTF-8: malformed');
  const nul = await connected5(t, 'topic-nul');
  nul.send(publishRawTopic([0x61, 0x00, 0x62]));
  await disconnectedWith(t, nul, 0x81, 'U+0000: malformed');
  const wild = await connected5(t, 'topic-wild');
  wild.send(pub5('a/+/b'));
  await disconnectedWith(t, wild, 0x90, 'wildcard in a PUBLISH topic: topic name invalid');
  const wild4 = await connected4(t, 'topic-wild4');
  wild4.send(bytes({ cmd: 'publish', topic: 'a/#', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }));
  await closedSilently(t, wild4, '3.1.1 wildcard topic');
  await stillHealthy(t);
});

t.test('packet id 0 with QoS 1', async (t) => {
  const raw = await connected5(t, 'pid0');
  raw.send([0x32, 6, 0, 1, 0x61, 0, 0, 0]); // QoS 1, topic "a", packet id 0, no properties
  await disconnectedWith(t, raw, 0x82, 'packet id 0: protocol error');
  await stillHealthy(t);
});

t.test('topic alias 0 or over the maximum', async (t) => {
  const zero = await connected5(t, 'alias0');
  // topic "a", properties: Topic Alias (0x23) = 0
  zero.send([0x30, 7, 0, 1, 0x61, 3, 0x23, 0, 0]);
  // A zero Topic Alias [MQTT-3.3.2-8] is refused by the property decoder as a Protocol Error.
  await disconnectedWith(t, zero, 0x94, 'topic alias 0 [MQTT-3.3.2-8]');
  const over = await connected5(t, 'alias4');
  over.send(pub5('a', { properties: { topicAlias: 4 } }));
  await disconnectedWith(t, over, 0x94, 'topic alias over the maximum (3)');
  const unknown = await connected5(t, 'alias-unknown');
  unknown.send(pub5('', { properties: { topicAlias: 2 } }));
  await disconnectedWith(t, unknown, 0x82, 'an alias never set');
  await stillHealthy(t);
});

t.test('receive maximum exceeded: more unacked QoS 2 than the server allows', async (t) => {
  const raw = await rawConnect(t, port);
  const connack = await rawHandshake(raw, 'rm-exceed', 5);
  t.equal(connack.properties?.receiveMaximum, 2);
  for (const messageId of [1, 2, 3]) {
    raw.send(bytes({ cmd: 'publish', topic: 'rm', payload: Buffer.from('x'), qos: 2, messageId, retain: false, dup: false }, 5));
  }
  t.match(await readPacket(raw, 5), { cmd: 'pubrec', messageId: 1 });
  t.match(await readPacket(raw, 5), { cmd: 'pubrec', messageId: 2 });
  await disconnectedWith(t, raw, 0x93, 'the third: receive maximum exceeded');
  await stillHealthy(t);
});

t.test('a 3.1.1 publisher was never told a Receive Maximum: more unreleased QoS 2 is not an error', async (t) => {
  const raw = await rawConnect(t, port);
  await rawHandshake(raw, 'rm-v4', 4);
  for (const messageId of [1, 2, 3, 4]) {
    raw.send(bytes({ cmd: 'publish', topic: 'rm', payload: Buffer.from('x'), qos: 2, messageId, retain: false, dup: false }, 4));
  }
  for (const messageId of [1, 2, 3, 4]) t.match(await readPacket(raw, 4), { cmd: 'pubrec', messageId });
  t.notOk(raw.isClosed, 'still connected');
  await stillHealthy(t);
});

t.test('a 100 MB length prefix is refused at once and allocates nothing', async (t) => {
  const before = rssKb(node.pid);
  const prefix = [0x80, 0x80, 0x80, 0x32]; // 100 * 2^21 bytes
  for (let i = 0; i < 10; i++) {
    const early = await rawConnect(t, port);
    const start = Date.now();
    early.send([0x10, ...prefix]);
    await closedSilently(t, early, 'CONNECT with a 100 MB length', 1000);
    t.ok(Date.now() - start < 1000, 'closed at once');
    const late = await connected5(t, `huge-${i}`);
    late.send([0x30, ...prefix, 0, 1]);
    await disconnectedWith(t, late, 0x95, 'PUBLISH with a 100 MB length: packet too large');
  }
  const after = rssKb(node.pid);
  t.ok(after - before < 20_000, `RSS grew ${after - before} kB (from ${before} kB)`);
  await stillHealthy(t);
});

t.test('garbage bytes', async (t) => {
  const early = await rawConnect(t, port);
  early.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await closedSilently(t, early, 'HTTP request');
  const zero = await rawConnect(t, port);
  zero.send(Buffer.alloc(64));
  await closedSilently(t, zero, 'zeros');
  const after = await connected5(t, 'garbage');
  after.send([0x00, 0x00]); // packet type 0
  await disconnectedWith(t, after, 0x81, 'reserved packet type 0');
  const after4 = await connected4(t, 'garbage4');
  after4.send([0xf0, 0x00]); // AUTH does not exist in 3.1.1
  await closedSilently(t, after4, '3.1.1 AUTH');
  await stillHealthy(t);
});
