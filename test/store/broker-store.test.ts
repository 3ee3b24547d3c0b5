// The broker's use of the store, in process over a fake transport: clean sessions never write,
// persistent ones write through (queue with its drop policy, inflight, incoming QoS 2), acks to a
// publisher wait for one flush per turn and keep their order, and a new broker restores it all.
import mqttPacket, { type IPublishPacket, type Packet } from 'mqtt-packet';
import t from 'tap';
import { Broker } from '../../src/broker/broker.js';
import { Protocol } from '../../src/broker/protocol.js';
import { DropReason } from '../../src/broker/stats.js';
import { defaultConfig } from '../../src/config/schema.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { bytes, connectBytes } from '../broker/support.js';
import { testBroker } from '../helpers/broker.js';
import { FakeTransport } from '../helpers/fake-transport.js';

/** A memory store whose flushes complete when the test says so, counted. */
class GatedStore extends MemoryStore {
  flushes = 0;
  private gates: Array<() => void> = [];
  override flushed(): Promise<void> {
    this.flushes++;
    return new Promise((resolve) => this.gates.push(resolve));
  }
  /** Completes every flush asked for so far, then lets the releases run. */
  async open(): Promise<void> {
    for (const g of this.gates.splice(0)) g();
    await new Promise((r) => setImmediate(r));
  }
}

function newBroker(store: MemoryStore, maxQueued = 1000): Broker {
  const config = defaultConfig();
  config.mqtt.max_queued = maxQueued;
  return testBroker({ config, store });
}

function connect(broker: Broker, clientId: string, version: 4 | 5, extra: Partial<mqttPacket.IConnectPacket> = {}): { p: Protocol; w: FakeTransport } {
  const w = new FakeTransport(version);
  const p = new Protocol(broker, w, Date.now());
  p.receive(connectBytes(clientId, version, extra));
  return { p, w };
}

function publish(topic: string, payload: string, qos: 0 | 1 | 2, messageId: number, version: 4 | 5 = 4): Buffer {
  return bytes({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, messageId, retain: false, dup: false }, version);
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('clean sessions never touch the store, and their publishers are acked at once', async (t) => {
  const store = new GatedStore();
  const broker = newBroker(store);
  const sub = connect(broker, 'sub', 4);
  const sub5 = connect(broker, 'sub5', 5, { properties: { sessionExpiryInterval: 0 } });
  sub.p.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 2 }] }));
  sub5.p.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 2 }] }, 5));
  const pub = connect(broker, 'pub', 4);
  pub.w.take();
  pub.p.receive(Buffer.concat([publish('a/1', 'x', 0, 0), publish('a/1', 'x', 1, 1), publish('a/1', 'x', 2, 2)]));
  t.match(pub.w.take(), [{ cmd: 'puback', messageId: 1 }, { cmd: 'pubrec', messageId: 2 }], 'no wait for a flush');
  pub.p.receive(bytes({ cmd: 'pubrel', messageId: 2 }));
  pub.p.receive(bytes({ cmd: 'disconnect' }));
  sub.p.receive(bytes({ cmd: 'disconnect' }));
  await tick();
  t.equal(store.writes, 0, 'no write');
  t.equal(store.flushes, 0, 'no flush');
});

t.test('acks wait for one flush per turn when a persistent session got the message, in PUBLISH order', async (t) => {
  const store = new GatedStore();
  const broker = newBroker(store);
  const sub = connect(broker, 'sub', 4, { clean: false });
  sub.p.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'p/#', qos: 1 }] }));
  sub.p.receive(bytes({ cmd: 'disconnect' }));
  const pub = connect(broker, 'pub', 4);
  pub.w.take();
  await store.open();
  const flushesBefore = store.flushes;
  const burst = [];
  for (let i = 1; i <= 10; i++) burst.push(publish('p/x', `m${i}`, 1, i));
  burst.push(publish('other', 'no subscriber', 1, 11), publish('p/x', 'qos0', 0, 0));
  pub.p.receive(Buffer.concat(burst));
  t.same(pub.w.take(), [], 'nothing acked before the flush; the unrelated one waits behind the others');
  await tick();
  t.equal(store.flushes - flushesBefore, 1, 'one flush for the whole turn');
  await store.open();
  t.same(
    pub.w.take().map((p) => [p.cmd, (p as { messageId?: number }).messageId]),
    Array.from({ length: 11 }, (_, i) => ['puback', i + 1]),
    'then all acks, in order',
  );
  pub.p.receive(publish('other', 'alone', 1, 12));
  t.match(pub.w.take(), [{ cmd: 'puback', messageId: 12 }], 'with nothing held and nothing stored, at once again');
});

t.test('a persistent session writes through and a new broker restores it', async (t) => {
  const store = new MemoryStore();
  const broker = newBroker(store, 3);
  const sub = connect(broker, 's', 5, { clean: false, properties: { sessionExpiryInterval: 300 } });
  sub.p.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q/#', qos: 2 }] }, 5));
  sub.p.receive(bytes({ cmd: 'disconnect' }, 5));
  const pub = connect(broker, 'pub', 5, { clean: false, properties: { sessionExpiryInterval: 300 } });
  pub.p.receive(publish('q/0', 'zero', 0, 0, 5));
  for (let i = 1; i <= 3; i++) pub.p.receive(publish('q/1', `one-${i}`, 1, i, 5));
  pub.p.receive(publish('q/2', 'two', 2, 9, 5)); // its id stays held until PUBREL
  const mem = broker.sessions.get('s');
  t.same(mem?.queue.map((d) => d.message.payload.toString()), ['one-2', 'one-3', 'two'], 'QoS 0 dropped first, then the oldest');
  await store.flushed();
  const stored = [...store.loadSessions()];
  const s = stored.find((x) => x.record.clientId === 's');
  t.same(s?.queue.map((q) => q.message.payload.toString()), ['one-2', 'one-3', 'two'], 'the store holds the same queue');
  t.same(s?.record.subscriptions.map(([f]) => f), ['q/#']);
  t.same(stored.find((x) => x.record.clientId === 'pub')?.incoming, [9], 'the publisher QoS 2 id awaiting PUBREL');

  // Restart: a new broker on the same store.
  const again = newBroker(store, 3);
  t.match(again.sessions.restore(Date.now()), { sessions: 2, expired: 0 });
  const back = connect(again, 's', 5, { clean: false, properties: { sessionExpiryInterval: 300 } });
  const [connack, ...publishes] = back.w.take();
  t.match(connack, { cmd: 'connack', sessionPresent: true });
  t.same(publishes.map((p) => (p as IPublishPacket).payload.toString()), ['one-2', 'one-3', 'two']);
  for (const p of publishes) {
    const id = (p as IPublishPacket).messageId ?? 0;
    back.p.receive(bytes(p.cmd === 'publish' && (p as IPublishPacket).qos === 2 ? { cmd: 'pubrec', messageId: id } : { cmd: 'puback', messageId: id }, 5));
  }
  await store.flushed();
  const after = [...store.loadSessions()].find((x) => x.record.clientId === 's');
  t.same(after?.queue, [], 'queue drained in the store');
  t.same(after?.inflight.map(([, e]) => [e.message.payload.toString(), e.released]), [['two', true]], 'QoS 2 awaiting PUBCOMP');
  const pubBack = connect(again, 'pub', 5, { clean: false, properties: { sessionExpiryInterval: 300 } });
  pubBack.w.take();
  pubBack.p.receive(publish('q/2', 'two', 2, 9, 5));
  await tick(); // the batch closes, then its flush
  await tick();
  t.match(pubBack.w.take(), [{ cmd: 'pubrec', messageId: 9 }], 'a resent QoS 2 after the restart is acknowledged');
  t.equal(again.sessions.get('s')?.queue.length, 0, 'and not delivered twice');
});

t.test('a restart with a smaller max_queued cuts the stored queue to it, in memory and in the store', async (t) => {
  const store = new MemoryStore();
  const broker = newBroker(store, 5);
  const sub = connect(broker, 's', 4, { clean: false });
  sub.p.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q', qos: 1 }] }));
  sub.p.receive(bytes({ cmd: 'disconnect' }));
  const pub = connect(broker, 'pub', 4);
  for (let i = 1; i <= 5; i++) pub.p.receive(publish('q', `m${i}`, 1, i, 4));
  await store.flushed();
  t.equal([...store.loadSessions()].find((x) => x.record.clientId === 's')?.queue.length, 5);

  const smaller = newBroker(store, 2);
  smaller.sessions.restore(Date.now());
  t.same(smaller.sessions.get('s')?.queue.map((d) => d.message.payload.toString()), ['m4', 'm5'], 'the newest two stay');
  t.equal(smaller.stats.drops[DropReason.QueueFull], 3, 'the rest counted as dropped');
  await store.flushed();
  const stored = [...store.loadSessions()].find((x) => x.record.clientId === 's');
  t.same(stored?.queue.map((q) => q.message.payload.toString()), ['m4', 'm5'], 'and gone from the store');
});

t.test('restore drops sessions whose expiry ran out while the node was down', async (t) => {
  const store = new MemoryStore();
  const broker = newBroker(store);
  const c = connect(broker, 'short', 5, { clean: false, properties: { sessionExpiryInterval: 10 } });
  c.p.receive(bytes({ cmd: 'disconnect' }, 5));
  const now = Date.now();
  t.match(newBroker(store).sessions.restore(now + 5_000), { sessions: 1, expired: 0 }, 'within its expiry');
  t.match(newBroker(store).sessions.restore(now + 11_000), { sessions: 0, expired: 1 }, 'past it: dropped');
  await store.flushed();
  t.same([...store.loadSessions()], [], 'and deleted from the store');
});

t.test('a session reconnecting with expiry 0 leaves the store', async (t) => {
  const store = new MemoryStore();
  const broker = newBroker(store);
  const a = connect(broker, 'c', 5, { clean: false, properties: { sessionExpiryInterval: 60 } });
  a.p.receive(bytes({ cmd: 'disconnect' }, 5));
  t.equal([...store.loadSessions()].length, 1);
  connect(broker, 'c', 5, { clean: false, properties: { sessionExpiryInterval: 0 } });
  t.equal([...store.loadSessions()].length, 0);
});
