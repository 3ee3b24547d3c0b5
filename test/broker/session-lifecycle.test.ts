// Sessions in process, over fake transports and a timer wheel on the test's clock (no sockets, no
// sleeps): wills (and their delay), takeover on one node, the offline queue and its bound,
// redelivery on reconnect, session expiry. Message expiry, which reads the wall clock, stays with
// a real node in session.test.ts.
import type mqttPacket from 'mqtt-packet';
import t, { type Test } from 'tap';
import type { Broker } from '../../src/broker/broker.js';
import type { ClusterBridge, HeldOutput } from '../../src/broker/cluster-bridge.js';
import { Protocol } from '../../src/broker/protocol.js';
import { TimerWheel } from '../../src/broker/timer-wheel.js';
import { defaultConfig } from '../../src/config/schema.js';
import { testBroker } from '../helpers/broker.js';
import { FakeTransport } from '../helpers/fake-transport.js';
import { bytes, connectBytes } from './support.js';

interface Client {
  protocol: Protocol;
  transport: FakeTransport;
  connack: mqttPacket.IConnackPacket;
}

/** A broker whose timers run on `clock.now`, moved by `clock.advance(ms)`. */
function clockedBroker(maxQueued = 1000): { broker: Broker; clock: { now: number; advance(ms: number): void } } {
  const clock = {
    now: Date.now(),
    advance(ms: number): void {
      clock.now += ms;
      wheel.advance(clock.now);
    },
  };
  const wheel = new TimerWheel(250, () => clock.now);
  const config = defaultConfig();
  config.mqtt.max_queued = maxQueued;
  return { broker: testBroker({ config, wheel }), clock };
}

function connect(broker: Broker, clientId: string, version: 4 | 5, extra: Partial<mqttPacket.IConnectPacket> = {}): Client {
  const transport = new FakeTransport(version);
  const protocol = new Protocol(broker, transport, Date.now());
  protocol.receive(connectBytes(clientId, version, extra));
  const connack = transport.packets.shift(); // what the session had queued follows it
  if (connack?.cmd !== 'connack') throw new Error(`expected CONNACK, got ${JSON.stringify(connack)}`);
  return { protocol, transport, connack };
}

/** A 5.0 subscriber on `filter` at QoS 1; returns the topics it has received, as a function. */
function watch(t: Test, broker: Broker, filter: string): () => string[] {
  const c = connect(broker, `watch-${filter}`, 5);
  c.protocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 1 }] }, 5));
  t.match(c.transport.take(), [{ cmd: 'suback', granted: [1] }]);
  const topics: string[] = [];
  return () => {
    for (const p of c.transport.take()) if (p.cmd === 'publish') topics.push(p.topic);
    return topics;
  };
}

const will = (topic: string, delay?: number): mqttPacket.IConnectPacket['will'] => ({
  topic,
  payload: Buffer.from(`will of ${topic}`),
  qos: 1,
  retain: false,
  ...(delay === undefined ? {} : { properties: { willDelayInterval: delay } }),
});

t.test('wills: abnormal close and DISCONNECT 0x04 publish it, a normal DISCONNECT does not', async (t) => {
  const { broker } = clockedBroker();
  const got = watch(t, broker, 'will/#');
  const abrupt = connect(broker, 'will-abrupt', 4, { will: will('will/abrupt') });
  const withWill = connect(broker, 'will-04', 5, { will: will('will/04') });
  const normal = connect(broker, 'will-normal', 5, { will: will('will/normal') });
  const normal4 = connect(broker, 'will-normal4', 4, { will: will('will/normal4') });
  normal.protocol.receive(bytes({ cmd: 'disconnect', reasonCode: 0 }, 5));
  normal4.protocol.receive(bytes({ cmd: 'disconnect' }));
  t.ok(normal.transport.ended && normal4.transport.ended);
  abrupt.protocol.transportClosed();
  withWill.protocol.receive(bytes({ cmd: 'disconnect', reasonCode: 0x04 }, 5));
  t.same(got().sort(), ['will/04', 'will/abrupt'], 'no will after a normal DISCONNECT');
  t.equal(broker.stats.willsPublished, 2);
});

t.test('will delay: sent after the delay, or at session end if sooner, and not when resumed in time', async (t) => {
  const { broker, clock } = clockedBroker();
  const got = watch(t, broker, 'delayed/#');
  const a = connect(broker, 'wd-a', 5, { will: will('delayed/a', 1), properties: { sessionExpiryInterval: 30 } });
  const b = connect(broker, 'wd-b', 5, { will: will('delayed/b', 30), properties: { sessionExpiryInterval: 1 } });
  const c = connect(broker, 'wd-c', 5, { will: will('delayed/c', 2), properties: { sessionExpiryInterval: 30 } });
  for (const x of [a, b, c]) x.protocol.transportClosed();
  clock.now = Date.now(); // the disconnect times are on the wall clock: the test's clock starts there
  clock.advance(500);
  t.same(got(), [], 'nothing before the delay');
  // wd-c comes back before its will delay ran out: the will is cancelled.
  const c2 = connect(broker, 'wd-c', 5, { clean: false, properties: { sessionExpiryInterval: 30 } });
  t.equal(c2.connack.sessionPresent, true);
  clock.advance(1000);
  t.same(got().sort(), ['delayed/a', 'delayed/b'], 'delay 1 s; delay 30 s cut short by session expiry 1 s');
  clock.advance(3000);
  t.equal(got().length, 2, 'the resumed session sent no will');
});

t.test('takeover on the same node: 5.0 gets DISCONNECT 0x8E, 3.1.1 is closed, no will', async (t) => {
  const { broker } = clockedBroker();
  const got = watch(t, broker, 'takeover/#');
  const old5 = connect(broker, 'take-5', 5, { will: will('takeover/5') });
  const new5 = connect(broker, 'take-5', 5);
  t.equal(new5.connack.reasonCode, 0);
  t.match(old5.transport.take(), [{ cmd: 'disconnect', reasonCode: 0x8e }]);
  t.ok(old5.transport.ended);

  const old4 = connect(broker, 'take-4', 4, { will: will('takeover/4'), clean: false });
  const new4 = connect(broker, 'take-4', 4, { clean: false });
  t.equal(new4.connack.sessionPresent, true, 'the persistent 3.1.1 session is taken over');
  t.same(old4.transport.take(), [], '3.1.1: closed without a packet');
  t.ok(old4.transport.ended);
  t.same(got(), [], 'no will on takeover');
  t.equal(broker.stats.sessionsTakenOver, 2);
  // Both new connections still work.
  new5.protocol.receive(bytes({ cmd: 'pingreq' }, 5));
  t.match(new5.transport.take(), [{ cmd: 'pingresp' }]);
  new4.protocol.receive(bytes({ cmd: 'pingreq' }));
  t.match(new4.transport.take(), [{ cmd: 'pingresp' }]);
});

t.test('a clean session taken over by clean session 0 is not present and stays registered', async (t) => {
  const { broker } = clockedBroker();
  connect(broker, 'take-clean', 4, { clean: true });
  const second = connect(broker, 'take-clean', 4, { clean: false });
  t.equal(second.connack.sessionPresent, false, 'the old session ended with its connection [MQTT-3.2.2-2]');
  second.protocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'tc/x', qos: 1 }] }));
  t.match(second.transport.take(), [{ cmd: 'suback', granted: [1] }]);
  second.protocol.receive(bytes({ cmd: 'disconnect' }));
  const pub = connect(broker, 'tc-pub', 4);
  pub.protocol.receive(bytes({ cmd: 'publish', topic: 'tc/x', payload: Buffer.from('queued'), qos: 1, messageId: 1, retain: false, dup: false }));
  const third = connect(broker, 'take-clean', 4, { clean: false });
  t.equal(third.connack.sessionPresent, true, 'the new persistent session is kept');
  t.match(third.transport.take(), [{ cmd: 'publish', topic: 'tc/x', qos: 1 }]);
});

t.test('offline queue: bounded by max_queued, QoS 0 dropped first, redelivered with session present', async (t) => {
  const { broker } = clockedBroker(3);
  const sub = connect(broker, 'queue-sub', 5, { properties: { sessionExpiryInterval: 60 } });
  sub.protocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q/#', qos: 1 }] }, 5));
  t.match(sub.transport.take(), [{ cmd: 'suback', granted: [1] }]);
  sub.protocol.receive(bytes({ cmd: 'disconnect', reasonCode: 0 }, 5));

  const pub = connect(broker, 'queue-pub', 5);
  const publish = (topic: string, payload: string, qos: 0 | 1, messageId: number): void =>
    pub.protocol.receive(bytes({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, messageId, retain: false, dup: false }, 5));
  publish('q/1', 'one', 1, 1);
  publish('q/0', 'zero', 0, 0);
  publish('q/2', 'two', 1, 2);
  publish('q/3', 'three', 1, 3); // the queue (3) is full: QoS 0 goes
  t.equal(broker.sessions.get('queue-sub')?.queuedCount, 3);

  const back = connect(broker, 'queue-sub', 5, { clean: false, properties: { sessionExpiryInterval: 60 } });
  t.equal(back.connack.sessionPresent, true);
  const got = back.transport.take().flatMap((p) => (p.cmd === 'publish' ? [p.payload.toString()] : []));
  t.same(got, ['one', 'two', 'three']);

  // Unacknowledged: sent again with DUP on the next reconnect [MQTT-4.4.0-1].
  back.protocol.transportClosed();
  const again = connect(broker, 'queue-sub', 5, { clean: false, properties: { sessionExpiryInterval: 60 } });
  t.match(again.transport.take()[0], { cmd: 'publish', dup: true, topic: 'q/1' });
});

/** A cluster of one peer as the broker sees it: claims wait for announce(), nothing is remote. */
class AnnouncingBridge implements ClusterBridge {
  readonly waiting: HeldOutput[] = [];
  routeAdded(): void {}
  routeRemoved(): void {}
  planRemote(): void {}
  forward(): number {
    return 0;
  }
  retained(): void {}
  sessionOpened(): void {}
  sessionDiscarded(): void {}
  holdConnack(_clientId: string, output: HeldOutput): void {
    output.hold();
    this.waiting.push(output);
  }
  pullSession(): null {
    return null;
  }
  /** The peers were sent the claims: the connections waiting for that go on. */
  announce(): void {
    for (const output of this.waiting.splice(0)) output.release();
  }
}

t.test('in a cluster, CONNACK and the session\'s queued messages wait until the peers are sent its claim, then leave in order', async (t) => {
  const { broker } = clockedBroker();
  const bridge = new AnnouncingBridge();
  broker.cluster = bridge;
  const sub = new FakeTransport(5);
  const subProtocol = new Protocol(broker, sub, Date.now());
  subProtocol.receive(connectBytes('held-sub', 5, { properties: { sessionExpiryInterval: 60 } }));
  t.same(sub.take(), [], 'no CONNACK before the announcement');
  bridge.announce();
  t.match(sub.take(), [{ cmd: 'connack', sessionPresent: false }]);
  subProtocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'h/#', qos: 1 }] }, 5));
  t.match(sub.take(), [{ cmd: 'suback', granted: [1] }], 'connected: written straight out');
  subProtocol.receive(bytes({ cmd: 'disconnect', reasonCode: 0 }, 5));

  const pub = new Protocol(broker, new FakeTransport(5), Date.now());
  pub.receive(connectBytes('held-pub', 5));
  bridge.announce();
  for (const [i, payload] of ['one', 'two'].entries()) {
    pub.receive(bytes({ cmd: 'publish', topic: 'h/1', payload: Buffer.from(payload), qos: 1, messageId: i + 1, retain: false, dup: false }, 5));
  }

  const back = new FakeTransport(5);
  new Protocol(broker, back, Date.now()).receive(connectBytes('held-sub', 5, { clean: false, properties: { sessionExpiryInterval: 60 } }));
  t.same(back.take(), [], 'neither CONNACK nor the queued messages before the announcement');
  bridge.announce();
  const packets = back.take();
  t.match(packets[0], { cmd: 'connack', sessionPresent: true });
  t.same(packets.slice(1).map((p) => (p.cmd === 'publish' ? p.payload.toString() : p.cmd)), ['one', 'two'], 'then the queued messages');
});

t.test('session expiry: a 5.0 session with expiry 2 is gone after 3 s, there after 1 s', async (t) => {
  const { broker, clock } = clockedBroker();
  for (const id of ['sx-short', 'sx-check']) {
    const c = connect(broker, id, 5, { properties: { sessionExpiryInterval: 2 } });
    c.protocol.receive(bytes({ cmd: 'disconnect', reasonCode: 0 }, 5));
  }
  clock.now = Date.now();
  clock.advance(1000);
  t.equal(connect(broker, 'sx-check', 5, { clean: false }).connack.sessionPresent, true, 'still there after 1 s');
  clock.advance(2000);
  t.equal(connect(broker, 'sx-short', 5, { clean: false }).connack.sessionPresent, false, 'gone after 3 s');
  t.equal(broker.stats.sessionsExpired, 1);
});

t.test('a will payload is a copy: the CONNECT read chunk can be reused, the will does not change', async (t) => {
  const { broker } = clockedBroker();
  const sub = connect(broker, 'will-copy-watch', 4);
  sub.protocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'will/copy', qos: 1 }] }));
  t.match(sub.transport.take(), [{ cmd: 'suback', granted: [1] }]);
  const transport = new FakeTransport(4);
  const protocol = new Protocol(broker, transport, Date.now());
  const chunk = connectBytes('will-copy', 4, { will: will('will/copy') });
  protocol.receive(chunk);
  t.match(transport.take(), [{ cmd: 'connack', returnCode: 0 }]);
  const kept = protocol.session?.will?.payload;
  const overlaps = kept !== undefined && kept.buffer === chunk.buffer && kept.byteOffset < chunk.byteOffset + chunk.length && chunk.byteOffset < kept.byteOffset + kept.length;
  t.ok(kept !== undefined && !overlaps, 'the will payload is not a view of the read chunk');
  chunk.fill(0); // the transport reuses its read buffer
  protocol.transportClosed();
  const published = sub.transport.take().filter((p) => p.cmd === 'publish');
  t.equal(published.length, 1);
  t.equal(published[0]?.cmd === 'publish' ? published[0].payload.toString() : '', 'will of will/copy', 'the will as it was sent');
});
