// The per-connection memory bounds of the protocol state machine, in-process over a fake
// transport: reading paused while a CONNECT waits, bytes before CONNACK per connection and per
// node, the slow-consumer timeout, subscriptions per client and outgoing topic-alias bytes.

import type mqttPacket from 'mqtt-packet';
import { pino } from 'pino';
import t from 'tap';
import { loadAcl } from '../../src/broker/acl.js';
import type { Authenticator, PendingCheck } from '../../src/broker/auth.js';
import { Broker } from '../../src/broker/broker.js';
import { Protocol } from '../../src/broker/protocol.js';
import { DropReason, LimitHit } from '../../src/broker/stats.js';
import { TimerWheel } from '../../src/broker/timer-wheel.js';
import { defaultConfig, type Config } from '../../src/config/schema.js';
import { bytes, connectBytes } from '../broker/support.js';
import { testBroker } from '../helpers/broker.js';
import { FakeTransport } from '../helpers/fake-transport.js';

/** An authenticator whose verdicts the test gives, one per CONNECT, in order. */
class HeldAuth implements Authenticator {
  readonly waiting: Array<(ok: boolean) => void> = [];
  readonly pendingChecks = 0;
  readonly refusedBusy = 0;
  readonly refusedThrottled = 0;
  readonly cancelledChecks = 0;
  authenticate(): PendingCheck {
    return { result: new Promise((resolve) => this.waiting.push(resolve)), cancel: () => {} };
  }
}

function brokerWith(config: Config, auth?: Authenticator): Broker {
  if (auth === undefined) return testBroker({ config });
  return new Broker(config, new TimerWheel(250), auth, loadAcl(config.auth), pino({ level: 'silent' }));
}

function client(broker: Broker, version: 3 | 4 | 5): { protocol: Protocol; transport: FakeTransport } {
  const transport = new FakeTransport(version);
  return { protocol: new Protocol(broker, transport, Date.now()), transport };
}

const publish = (topic: string, size: number, qos: 0 | 1 = 0, messageId?: number): Buffer =>
  bytes({ cmd: 'publish', topic, payload: Buffer.alloc(size, 0x61), qos, retain: false, dup: false, ...(messageId === undefined ? {} : { messageId }) }, 5);

t.test('reading pauses while the password check runs; packets behind CONNECT are bounded in bytes', async (t) => {
  const config = defaultConfig();
  config.mqtt.max_pending_bytes = 3000;
  const auth = new HeldAuth();
  const broker = brokerWith(config, auth);

  const ok = client(broker, 5);
  ok.protocol.receive(Buffer.concat([connectBytes('ok', 5), publish('a', 1000)]));
  t.equal(ok.transport.paused, true, 'paused while the verdict is pending');
  t.ok(broker.stats.connectingBytes > 1000, `the CONNECT and the pipelined PUBLISH count in the node total (${broker.stats.connectingBytes})`);
  auth.waiting.shift()?.(true);
  await new Promise((r) => setImmediate(r));
  t.equal(ok.transport.paused, false, 'reading resumes after CONNACK');
  t.match(ok.transport.take(), [{ cmd: 'connack', reasonCode: 0 }]);
  t.equal(broker.stats.connectingBytes, 0, 'released once connected');

  const greedy = client(broker, 5);
  greedy.protocol.receive(Buffer.concat([connectBytes('greedy', 5), publish('a', 1000), publish('a', 1000), publish('a', 1000)]));
  t.match(greedy.transport.take(), [{ cmd: 'connack', reasonCode: 0x97 }], '5.0: CONNACK 0x97 past max_pending_bytes');
  t.equal(greedy.transport.ended, true);
  t.equal(broker.stats.limitHits[LimitHit.PendingBytes], 1);
  t.equal(broker.stats.connectingBytes, 0, 'nothing left counted');
  auth.waiting.shift()?.(true); // the late verdict changes nothing
  await new Promise((r) => setImmediate(r));
  t.same(greedy.transport.take(), []);
});

t.test('bytes before CONNACK are bounded per node: a partial CONNECT counts at its declared size', async (t) => {
  const config = defaultConfig();
  config.mqtt.max_connecting_bytes = 1_500_000;
  const broker = brokerWith(config);
  // The start of a CONNECT that declares 900 000 bytes (0x10, remaining length 900000 as a varint).
  const partial = Buffer.concat([Buffer.from([0x10, 0xa0, 0xf7, 0x36]), Buffer.alloc(1000)]);
  const first = client(broker, 4);
  first.protocol.receive(partial);
  t.ok(broker.stats.connectingBytes >= 900_000, `a CONNECT's declared size is held (${broker.stats.connectingBytes})`);
  const second = client(broker, 4);
  second.protocol.receive(partial);
  t.equal(second.transport.ended, true, 'the connection that passes the total is closed');
  t.equal(broker.stats.limitHits[LimitHit.ConnectingBytes], 1);
  t.ok(broker.stats.connectingBytes < 1_500_000, 'the total stays under the bound');
  // A small CONNECT still fits beside the first one.
  const small = client(broker, 4);
  small.protocol.receive(connectBytes('small', 4));
  t.match(small.transport.take(), [{ cmd: 'connack', returnCode: 0 }]);
  first.protocol.transportClosed();
  t.equal(broker.stats.connectingBytes, 0);
});

t.test('a client over the output mark: QoS 0 dropped, then closed after slow_consumer_timeout', async (t) => {
  const config = defaultConfig();
  config.mqtt.max_output_buffer = 10_000;
  config.mqtt.slow_consumer_timeout = 2;
  const broker = brokerWith(config);
  const sub = client(broker, 5);
  sub.protocol.receive(connectBytes('slow', 5));
  sub.protocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 's/#', qos: 1 }] }, 5));
  const pub = client(broker, 5);
  pub.protocol.receive(connectBytes('pub', 5));
  sub.transport.take();

  sub.transport.backlog = 20_000; // the client stopped reading
  pub.protocol.receive(publish('s/0', 10));
  pub.protocol.receive(publish('s/1', 10, 1, 1));
  t.same(sub.transport.take(), [], 'nothing written while over the mark');
  t.equal(broker.stats.drops[DropReason.Congested], 1, 'QoS 0 dropped (counted)');
  t.equal(broker.sessions.get('slow')?.queuedCount, 1, 'QoS 1 waits in the session queue');

  const start = Date.now();
  broker.wheel.advance(start + 1000);
  t.equal(sub.transport.ended, false, 'still connected within the timeout');
  broker.wheel.advance(start + 2600);
  t.equal(sub.transport.destroyed, true, 'closed, its unsent output dropped');
  t.equal(broker.stats.serverDisconnects[0x97], 1, 'counted as a server disconnect 0x97');
  t.equal(broker.stats.limitHits[LimitHit.SlowConsumer], 1);
});

t.test('a client that drains in time is not closed', async (t) => {
  const config = defaultConfig();
  config.mqtt.max_output_buffer = 10_000;
  config.mqtt.slow_consumer_timeout = 2;
  const broker = brokerWith(config);
  const sub = client(broker, 4);
  sub.protocol.receive(connectBytes('reader', 4));
  sub.protocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 's/#', qos: 1 }] }));
  const pub = client(broker, 4);
  pub.protocol.receive(connectBytes('pub', 4));
  sub.transport.take();
  sub.transport.backlog = 20_000;
  pub.protocol.receive(bytes({ cmd: 'publish', topic: 's/1', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false }));
  sub.transport.backlog = 0;
  sub.protocol.drained();
  t.match(sub.transport.take(), [{ cmd: 'publish', topic: 's/1', qos: 1 }], 'what waited goes out on drain');
  broker.wheel.advance(Date.now() + 3000);
  t.equal(sub.transport.ended, false, 'not closed');
});

t.test('subscriptions per client: 5.0 SUBACK 0x97, 3.1.1 0x80; a repeated filter still replaces', async (t) => {
  const config = defaultConfig();
  config.mqtt.max_subscriptions = 2;
  const broker = brokerWith(config);
  for (const version of [5, 4] as const) {
    const c = client(broker, version);
    c.protocol.receive(connectBytes(`subs-${version}`, version));
    c.transport.take();
    const subscriptions = ['a', 'b', 'c', 'a'].map((topic) => ({ topic, qos: 1 as const }));
    c.protocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions }, version));
    const [suback] = c.transport.take() as [mqttPacket.ISubackPacket];
    t.same(suback.granted, version === 5 ? [1, 1, 0x97, 1] : [1, 1, 0x80, 1], `${version}: the third filter is over the quota`);
    t.equal(broker.sessions.get(`subs-${version}`)?.subscriptions.size, 2);
  }
  t.equal(broker.stats.limitHits[LimitHit.Subscriptions], 2);
});

t.test('outgoing topic aliases are bounded in bytes: past the bound topics go in full', async (t) => {
  const config = defaultConfig();
  config.mqtt.max_topic_alias_bytes = 250;
  const broker = brokerWith(config);
  const sub = client(broker, 5);
  sub.protocol.receive(connectBytes('aliased', 5, { properties: { topicAliasMaximum: 100 } }));
  sub.protocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'x/#', qos: 0 }] }, 5));
  const pub = client(broker, 5);
  pub.protocol.receive(connectBytes('pub', 5));
  sub.transport.take();
  const topics = Array.from({ length: 5 }, (_, i) => `x/${String(i).repeat(98)}`); // 100 bytes each
  for (const topic of topics) pub.protocol.receive(publish(topic, 1));
  for (const topic of topics) pub.protocol.receive(publish(topic, 1));
  const got = sub.transport.take() as mqttPacket.IPublishPacket[];
  const aliasOf = (p: mqttPacket.IPublishPacket): number | undefined => p.properties?.topicAlias;
  t.same(got.slice(0, 5).map(aliasOf), [1, 2, undefined, undefined, undefined], 'two 100-byte topics fit in 250 bytes');
  t.same(got.slice(5).map((p) => [p.topic, aliasOf(p)]), [['', 1], ['', 2], [topics[2], undefined], [topics[3], undefined], [topics[4], undefined]]);
  t.ok((broker.stats.limitHits[LimitHit.TopicAliasBytes] as number) > 0);
});
