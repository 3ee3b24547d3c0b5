// Flow control and per-connection limits in process, over fake transports and a timer wheel on the
// test's clock (no sockets, no sleeps): the CONNECT deadline, server keepalive, receive maximum and
// the inflight window, topic aliases both ways, maximum packet size both ways. Client keepalive
// stays with a real node in flow.test.ts (why there).

import type mqttPacket from 'mqtt-packet';
import t from 'tap';
import type { Broker } from '../../src/broker/broker.js';
import { Protocol } from '../../src/broker/protocol.js';
import { TimerWheel } from '../../src/broker/timer-wheel.js';
import { defaultConfig } from '../../src/config/schema.js';
import { testBroker } from '../helpers/broker.js';
import { FakeTransport } from '../helpers/fake-transport.js';
import { bytes, connectBytes } from './support.js';

const clock = { now: Date.now() };
const wheel = new TimerWheel(250, () => clock.now);
const config = defaultConfig();
Object.assign(config.mqtt, { idle_timeout: 1, max_keepalive: 10, max_topic_alias: 5, max_packet_size: 2048, max_inflight: 3 });
const broker: Broker = testBroker({ config, wheel });

function advance(ms: number): void {
  clock.now += ms;
  wheel.advance(clock.now);
}

interface Client {
  protocol: Protocol;
  transport: FakeTransport;
  connack: mqttPacket.IConnackPacket;
}

function connect(clientId: string, version: 4 | 5, extra: Partial<mqttPacket.IConnectPacket> = {}): Client {
  const transport = new FakeTransport(version);
  const protocol = new Protocol(broker, transport, clock.now);
  protocol.receive(connectBytes(clientId, version, extra));
  const connack = transport.packets.shift();
  if (connack?.cmd !== 'connack') throw new Error(`expected CONNACK, got ${JSON.stringify(connack)}`);
  return { protocol, transport, connack };
}

function subscribe(c: Client, version: 4 | 5, topic: string, qos: 0 | 1): void {
  c.protocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] }, version));
  const suback = c.transport.take();
  if (suback[0]?.cmd !== 'suback') throw new Error(`expected SUBACK, got ${JSON.stringify(suback)}`);
}

let pubN = 0;
/** Publishes, from a fresh 5.0 client, one message per payload to `topic`. */
function publishMany(topic: string, payloads: Array<string | Buffer>, qos: 0 | 1 = 1): void {
  const pub = connect(`pub-${++pubN}`, 5);
  let id = 0;
  for (const p of payloads) {
    const payload = typeof p === 'string' ? Buffer.from(p) : p;
    pub.protocol.receive(bytes({ cmd: 'publish', topic, payload, qos, retain: false, dup: false, ...(qos === 0 ? {} : { messageId: ++id }) }, 5));
  }
}

const publishes = (c: Client): mqttPacket.IPublishPacket[] => c.transport.take().filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish');

t.test('CONNECT deadline: a connection that sends nothing is closed after idle_timeout', async (t) => {
  const silent = new FakeTransport(4);
  new Protocol(broker, silent, clock.now);
  const before = broker.stats.connectTimeouts;
  advance(750);
  t.notOk(silent.ended, 'still open before idle_timeout');
  advance(500);
  t.ok(silent.ended, 'closed at idle_timeout');
  t.same(silent.packets, [], 'without a packet');
  t.equal(broker.stats.connectTimeouts - before, 1);
});

t.test('server keepalive: a 5.0 keepalive over max_keepalive is answered with Server Keep Alive', async (t) => {
  t.equal(connect('ska-long', 5, { keepalive: 60 }).connack.properties?.serverKeepAlive, 10);
  t.equal(connect('ska-zero', 5, { keepalive: 0 }).connack.properties?.serverKeepAlive, 10, 'keepalive 0 (none) is over any maximum');
  t.equal(connect('ska-short', 5, { keepalive: 5 }).connack.properties?.serverKeepAlive, undefined, 'within the maximum: not sent');
});

t.test('receive maximum: a 5.0 subscriber with receiveMaximum 2 never has more than 2 unacked', async (t) => {
  const sub = connect('rm-sub', 5, { properties: { receiveMaximum: 2 } });
  t.equal(sub.connack.properties?.receiveMaximum, 3, 'the server announces its own Receive Maximum');
  subscribe(sub, 5, 'rm/t', 1);
  publishMany('rm/t', ['1', '2', '3', '4', '5']);
  const first = publishes(sub);
  t.same(first.map((p) => p.payload.toString()), ['1', '2'], 'two in flight');
  sub.protocol.receive(bytes({ cmd: 'puback', messageId: first[0]?.messageId ?? 0 }, 5));
  t.same(publishes(sub).map((p) => p.payload.toString()), ['3'], 'one PUBACK opens one slot');
});

t.test('inflight window: a 3.1.1 subscriber gets at most max_inflight unacked', async (t) => {
  const sub = connect('win-sub', 4);
  subscribe(sub, 4, 'win/t', 1);
  publishMany('win/t', ['1', '2', '3', '4', '5']);
  const got = publishes(sub);
  t.same(got.map((p) => p.payload.toString()), ['1', '2', '3']);
  for (const p of got) sub.protocol.receive(bytes({ cmd: 'puback', messageId: p.messageId ?? 0 }));
  t.same(publishes(sub).map((p) => p.payload.toString()), ['4', '5'], 'acknowledgements let the rest through');
});

t.test('topic aliases, client to server: set and use; over the maximum is DISCONNECT 0x94', async (t) => {
  const s = connect('alias-watch', 5);
  subscribe(s, 5, 'al/#', 1);
  const pub = connect('alias-pub', 5);
  t.equal(pub.connack.properties?.topicAliasMaximum, 5);
  const publish = { cmd: 'publish' as const, qos: 0 as const, retain: false, dup: false };
  pub.protocol.receive(bytes({ ...publish, topic: 'al/x', payload: Buffer.from('set'), properties: { topicAlias: 5 } }, 5));
  pub.protocol.receive(bytes({ ...publish, topic: '', payload: Buffer.from('use'), properties: { topicAlias: 5 } }, 5));
  t.same(publishes(s).map((m) => `${m.topic}:${m.payload.toString()}`), ['al/x:set', 'al/x:use']);
  pub.protocol.receive(bytes({ ...publish, topic: 'al/y', payload: Buffer.from('over'), properties: { topicAlias: 6 } }, 5));
  t.match(pub.transport.take(), [{ cmd: 'disconnect', reasonCode: 0x94 }]);
  t.ok(pub.transport.ended, 'and closed');
  t.same(publishes(s), [], 'the refused publish is not delivered');
});

t.test('topic aliases, server to client, when the client announces a Topic Alias Maximum', async (t) => {
  const sub = connect('alias-sub', 5, { properties: { topicAliasMaximum: 1 } });
  subscribe(sub, 5, 'sa/+', 0);
  publishMany('sa/x', ['1', '2'], 0);
  publishMany('sa/y', ['3'], 0);
  t.same(
    publishes(sub).map((p) => [p.topic, p.properties?.topicAlias]),
    [
      ['sa/x', 1],
      ['', 1],
      ['sa/y', undefined],
    ],
    'alias set, then used alone; none beyond the maximum',
  );
});

t.test('maximum packet size both ways', async (t) => {
  const big = connect('mps-big', 5);
  t.equal(big.connack.properties?.maximumPacketSize, 2048);
  big.protocol.receive(bytes({ cmd: 'publish', topic: 'mps/x', payload: Buffer.alloc(3000), qos: 0, retain: false, dup: false }, 5));
  t.match(big.transport.take(), [{ cmd: 'disconnect', reasonCode: 0x95 }], 'client over the server maximum');
  t.ok(big.transport.ended);

  const small = connect('mps-small', 5, { properties: { maximumPacketSize: 200 } });
  subscribe(small, 5, 'mps/y', 1);
  publishMany('mps/y', [Buffer.alloc(500, 1), 'fits']);
  t.same(publishes(small).map((p) => p.payload.toString()), ['fits'], 'the server never sends more than the client Maximum Packet Size');
});
