// The session queue on its own: a ring buffer whose drops are released at once, the drop policy
// (QoS 0 first, then the oldest) under the message and byte bounds, and the inflight byte bound.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { DeliveryQueue, deliverySize } from '../../src/broker/delivery-queue.js';
import { Message } from '../../src/broker/message.js';
import { Session, type Delivery, type SessionLimits, type SessionOwner } from '../../src/broker/session.js';
import { BrokerStats, DropReason, LimitHit } from '../../src/broker/stats.js';

function message(n: number, size = 10, qos: 0 | 1 | 2 = 1): Message {
  return new Message(`t/${String(n).padStart(6, "0")}`, Buffer.alloc(size, n & 0xff), qos, false, undefined, 0, 'p', true);
}

function delivery(n: number, qos: 0 | 1 | 2 = 1, size = 10): Delivery {
  return { message: message(n, size, qos), qos, retain: false, subscriptionId: 0, seq: n };
}

const ids = (ds: Delivery[]): number[] => ds.map((d) => d.seq);

t.test('ring buffer: FIFO across wrap-around and growth, QoS 0 taken from the middle', async (t) => {
  const q = new DeliveryQueue();
  for (let i = 1; i <= 5; i++) q.push(delivery(i));
  t.equal(q.shift()?.seq, 1);
  t.equal(q.shift()?.seq, 2);
  for (let i = 6; i <= 20; i++) q.push(delivery(i, i % 4 === 0 ? 0 : 1)); // wraps, then grows
  t.equal(q.length, 18);
  t.equal(q.shiftQos0()?.seq, 8, 'the oldest QoS 0, from the middle');
  t.equal(q.shiftQos0()?.seq, 12);
  t.equal(q.length, 16);
  t.same(ids(q.toArray()), [3, 4, 5, 6, 7, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20]);
  t.equal(q.bytes, q.toArray().reduce((s, d) => s + deliverySize(d), 0), 'bytes follow the entries');
  const order: number[] = [];
  for (let d = q.shift(); d !== undefined; d = q.shift()) order.push(d.seq);
  t.same(order, [3, 4, 5, 6, 7, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20], 'holes are skipped');
  t.equal(q.bytes, 0);
  t.equal(q.hasQos0, false);
});

t.test('ring buffer: holes are compacted, the ring stays within a small multiple of its entries', async (t) => {
  const q = new DeliveryQueue();
  for (let i = 0; i < 100; i++) q.push(delivery(i, 1));
  // A full queue of QoS 1 with one QoS 0 pushed and dropped each round: holes pile up between
  // the QoS 1 entries unless they are squeezed out.
  for (let i = 100; i < 100_000; i++) {
    q.push(delivery(i, 0));
    q.shiftQos0();
  }
  t.equal(q.length, 100);
  const slots = (q as unknown as { slots: unknown[] }).slots.length;
  t.ok(slots <= 512, `ring of ${slots} slots for 100 entries`);
  t.same(ids(q.toArray()), Array.from({ length: 100 }, (_, i) => i));
});

/** A connected owner whose transport is congested or not, recording what it sends. */
class Owner implements SessionOwner {
  sendWindow = 32;
  congested = false;
  readonly sent: Array<[number, number]> = [];
  sendPublish(d: Delivery, packetId: number): boolean {
    this.sent.push([d.message.payload[0] as number, packetId]);
    return true;
  }
  sendPubrel(): void {}
}

const limits = (over: Partial<SessionLimits> = {}): SessionLimits => ({ maxQueued: 5, maxQueuedBytes: 1_000_000, maxInflightBytes: 1_000_000, ...over });

t.test('offline session: a full queue drops QoS 0 first, then the oldest, counted by reason', async (t) => {
  const stats = new BrokerStats();
  const s = new Session('c', 60, Date.now());
  const lim = limits();
  for (const [n, qos] of [[1, 1], [2, 0], [3, 1], [4, 1], [5, 0]] as const) s.deliver(message(n), qos, false, 0, lim, stats);
  t.equal(s.queuedCount, 5);
  s.deliver(message(6), 1, false, 0, lim, stats);
  t.same(s.queue.map((d) => d.message.payload[0]), [1, 3, 4, 5, 6], 'the oldest QoS 0 went');
  s.deliver(message(7), 1, false, 0, lim, stats);
  t.same(s.queue.map((d) => d.message.payload[0]), [1, 3, 4, 6, 7], 'then the next QoS 0');
  s.deliver(message(8), 0, false, 0, lim, stats);
  t.same(s.queue.map((d) => d.message.payload[0]), [1, 3, 4, 6, 7], 'a new QoS 0 into a queue of QoS 1 is the one dropped');
  s.deliver(message(9), 1, false, 0, lim, stats);
  t.same(s.queue.map((d) => d.message.payload[0]), [3, 4, 6, 7, 9], 'then the oldest');
  t.equal(stats.drops[DropReason.QueueFull], 4);
  t.equal(s.drops?.[DropReason.QueueFull], 4, 'per client too');
  t.equal(stats.limitHits[LimitHit.Queue], 4);
});

t.test('offline session: the byte bound, and a message larger than the whole queue', async (t) => {
  const stats = new BrokerStats();
  const s = new Session('c', 60, Date.now());
  const size = deliverySize(delivery(1, 1, 100));
  const lim = limits({ maxQueued: 1000, maxQueuedBytes: size * 3 });
  for (let n = 1; n <= 10; n++) s.deliver(message(n, 100), 1, false, 0, lim, stats);
  t.same(s.queue.map((d) => d.message.payload[0]), [8, 9, 10], 'the bytes bound keeps the newest three');
  t.equal(s.queuedBytes, size * 3);
  s.deliver(message(11, size * 4), 1, false, 0, lim, stats);
  t.equal(stats.drops[DropReason.TooLarge], 1, 'too large for the queue: dropped, nothing else goes');
  t.equal(s.queuedCount, 3);
});

t.test('a dropped message is released at once (no hidden tail keeps it)', async (t) => {
  const stats = new BrokerStats();
  const s = new Session('c', 60, Date.now());
  const lim = limits({ maxQueued: 10 });
  const refs: Array<WeakRef<Buffer>> = [];
  for (let n = 0; n < 200; n++) {
    const m = message(n, 1024);
    refs.push(new WeakRef(m.payload));
    s.deliver(m, 1, false, 0, lim, stats);
  }
  const slots = (s as unknown as { pending: { slots: Array<Delivery | undefined> } }).pending.slots;
  t.equal(slots.filter((d) => d !== undefined).length, 10, 'no slot holds a dropped delivery');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
  t.equal(refs.filter((r) => r.deref() !== undefined).length, 10, 'only the 10 queued payloads survive a GC');
});

t.test('connected: QoS 0 dropped while congested, QoS 1 waits and drains; inflight bytes bound the window', async (t) => {
  const stats = new BrokerStats();
  const s = new Session('c', 0, Date.now());
  const owner = new Owner();
  const lim = limits({ maxQueued: 100, maxInflightBytes: 25 });
  s.attach(owner, lim, stats);
  owner.congested = true;
  s.deliver(message(1), 0, false, 0, lim, stats);
  s.deliver(message(2), 1, false, 0, lim, stats);
  t.equal(stats.drops[DropReason.Congested], 1, 'QoS 0 to a congested client is dropped');
  t.equal(s.queuedCount, 1, 'QoS 1 waits');
  owner.congested = false;
  for (let n = 3; n <= 6; n++) s.deliver(message(n), 1, false, 0, lim, stats);
  s.drain(owner, lim, stats);
  t.same(owner.sent.map(([b]) => b), [2, 3, 4], 'sent while inflight bytes were under 25 (10 bytes each)');
  t.ok((stats.limitHits[LimitHit.InflightBytes] as number) > 0, "the inflight-bytes bound bit");
  const [, firstId] = owner.sent[0] as [number, number];
  s.complete(firstId, lim, stats);
  t.same(owner.sent.map(([b]) => b), [2, 3, 4, 5], 'an ack makes room for the next');
});
