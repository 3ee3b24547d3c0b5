// Sessions on one real node: wills (and their delay), takeover, the offline queue and its bound,
// redelivery on reconnect, message expiry and session expiry.

import t, { type Test } from 'tap';
import { connectClient, messageCollector, rawConnect } from '../helpers/clients.js';
import { bytes, rawHandshake, readPacket, sleep } from './support.js';
import { startNode } from '../helpers/node-process.js';

const node = await startNode(t, { env: { TIDEMQ_MQTT__MAX_QUEUED: '3' } });
const port = node.mqttPort;

/** A subscriber on `filter` (5.0, QoS 1) collecting what arrives. */
async function watch(t: Test, filter: string): Promise<ReturnType<typeof messageCollector>> {
  const c = await connectClient(t, port, { protocolVersion: 5 });
  const got = messageCollector(c);
  await c.subscribeAsync(filter, { qos: 1 });
  return got;
}

const will = (topic: string, delay?: number) => ({
  topic,
  payload: Buffer.from(`will of ${topic}`),
  qos: 1 as const,
  retain: false,
  ...(delay === undefined ? {} : { properties: { willDelayInterval: delay } }),
});

t.test('wills: abnormal close and DISCONNECT 0x04 publish it, a normal DISCONNECT does not', async (t) => {
  const got = await watch(t, 'will/#');
  const abrupt = await rawConnect(t, port);
  await rawHandshake(abrupt, 'will-abrupt', 4, { will: will('will/abrupt') });
  const withWill = await rawConnect(t, port);
  await rawHandshake(withWill, 'will-04', 5, { will: will('will/04') });
  const normal = await rawConnect(t, port);
  await rawHandshake(normal, 'will-normal', 5, { will: will('will/normal') });
  const normal4 = await rawConnect(t, port);
  await rawHandshake(normal4, 'will-normal4', 4, { will: will('will/normal4') });

  normal.send(bytes({ cmd: 'disconnect', reasonCode: 0 }, 5));
  normal4.send(bytes({ cmd: 'disconnect' }));
  await normal.closed();
  await normal4.closed();
  abrupt.socket.destroy();
  withWill.send(bytes({ cmd: 'disconnect', reasonCode: 0x04 }, 5));
  const msgs = await got.next(2);
  t.same(msgs.map((m) => m.topic).sort(), ['will/04', 'will/abrupt']);
  await sleep(300);
  t.equal(got.all().length, 2, 'no will after a normal DISCONNECT');
});

t.test('will delay: sent after the delay, or at session end if sooner, and not when resumed in time', async (t) => {
  const got = await watch(t, 'delayed/#');
  const start = Date.now();
  const a = await rawConnect(t, port);
  await rawHandshake(a, 'wd-a', 5, { will: will('delayed/a', 1), properties: { sessionExpiryInterval: 30 } });
  const b = await rawConnect(t, port);
  await rawHandshake(b, 'wd-b', 5, { will: will('delayed/b', 30), properties: { sessionExpiryInterval: 1 } });
  const c = await rawConnect(t, port);
  await rawHandshake(c, 'wd-c', 5, { will: will('delayed/c', 2), properties: { sessionExpiryInterval: 30 } });
  for (const r of [a, b, c]) r.socket.destroy();
  await sleep(300);
  t.equal(got.all().length, 0, 'nothing before the delay');
  // wd-c comes back before its will delay ran out: the will is cancelled.
  const c2 = await rawConnect(t, port);
  const connack = await rawHandshake(c2, 'wd-c', 5, { clean: false, properties: { sessionExpiryInterval: 30 } });
  t.equal(connack.sessionPresent, true);
  const msgs = await got.next(2, 4000);
  t.same(msgs.map((m) => m.topic).sort(), ['delayed/a', 'delayed/b'], 'delay 1 s; delay 30 s cut short by session expiry 1 s');
  t.ok(Date.now() - start >= 900, 'not before the delay');
  await sleep(2200);
  t.equal(got.all().length, 2, 'the resumed session sent no will');
});

t.test('takeover on the same node: 5.0 gets DISCONNECT 0x8E, 3.1.1 is closed, no will', async (t) => {
  const got = await watch(t, 'takeover/#');
  const old5 = await rawConnect(t, port);
  await rawHandshake(old5, 'take-5', 5, { will: will('takeover/5') });
  const new5 = await rawConnect(t, port);
  t.equal((await rawHandshake(new5, 'take-5', 5)).reasonCode, 0);
  t.match(await readPacket(old5, 5), { cmd: 'disconnect', reasonCode: 0x8e });
  await old5.closed();

  const old4 = await rawConnect(t, port);
  await rawHandshake(old4, 'take-4', 4, { will: will('takeover/4'), clean: false });
  const new4 = await rawConnect(t, port);
  const connack = await rawHandshake(new4, 'take-4', 4, { clean: false });
  t.equal(connack.sessionPresent, true, 'the persistent 3.1.1 session is taken over');
  t.equal(await readPacket(old4, 4), null, '3.1.1: closed without a packet');
  await sleep(300);
  t.equal(got.all().length, 0, 'no will on takeover');
  // Both new connections still work.
  new5.send(bytes({ cmd: 'pingreq' }, 5));
  t.match(await readPacket(new5, 5), { cmd: 'pingresp' });
  new4.send(bytes({ cmd: 'pingreq' }));
  t.match(await readPacket(new4, 4), { cmd: 'pingresp' });
});

t.test('a clean session taken over by clean session 0 is not present and stays registered', async (t) => {
  const first = await rawConnect(t, port);
  await rawHandshake(first, 'take-clean', 4, { clean: true });
  const second = await rawConnect(t, port);
  const connack = await rawHandshake(second, 'take-clean', 4, { clean: false });
  t.equal(connack.sessionPresent, false, 'the old session ended with its connection [MQTT-3.2.2-2]');
  second.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'tc/x', qos: 1 }] }));
  t.match(await readPacket(second, 4), { cmd: 'suback', granted: [1] });
  second.send(bytes({ cmd: 'disconnect' }));
  await second.closed();
  const pub = await connectClient(t, port, { protocolVersion: 4 });
  await pub.publishAsync('tc/x', 'queued', { qos: 1 });
  const third = await rawConnect(t, port);
  const resumed = await rawHandshake(third, 'take-clean', 4, { clean: false });
  t.equal(resumed.sessionPresent, true, 'the new persistent session is kept');
  t.match(await readPacket(third, 4), { cmd: 'publish', topic: 'tc/x', qos: 1 });
});

t.test('offline queue: bounded by max_queued, QoS 0 dropped first, redelivered with session present', async (t) => {
  const sub = await rawConnect(t, port);
  await rawHandshake(sub, 'queue-sub', 5, { clean: true, properties: { sessionExpiryInterval: 60 } });
  sub.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q/#', qos: 1 }] }, 5));
  t.match(await readPacket(sub, 5), { cmd: 'suback', granted: [1] });
  sub.send(bytes({ cmd: 'disconnect', reasonCode: 0 }, 5));
  await sub.closed();

  const pub = await connectClient(t, port, { protocolVersion: 5 });
  await pub.publishAsync('q/1', 'one', { qos: 1 });
  await pub.publishAsync('q/0', 'zero', { qos: 0 });
  await pub.publishAsync('q/2', 'two', { qos: 1 });
  await pub.publishAsync('q/3', 'three', { qos: 1 }); // the queue (3) is full: QoS 0 goes
  await sleep(100);

  const back = await rawConnect(t, port);
  const connack = await rawHandshake(back, 'queue-sub', 5, { clean: false, properties: { sessionExpiryInterval: 60 } });
  t.equal(connack.sessionPresent, true);
  const got: string[] = [];
  for (let i = 0; i < 3; i++) {
    const p = await readPacket(back, 5);
    if (p?.cmd === 'publish') got.push(p.payload.toString());
  }
  t.same(got, ['one', 'two', 'three']);

  // Unacknowledged: sent again with DUP on the next reconnect [MQTT-4.4.0-1].
  back.socket.destroy();
  const again = await rawConnect(t, port);
  await rawHandshake(again, 'queue-sub', 5, { clean: false, properties: { sessionExpiryInterval: 60 } });
  const dup = await readPacket(again, 5);
  t.match(dup, { cmd: 'publish', dup: true, topic: 'q/1' });
  again.send(bytes({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } }, 5));
});

t.test('message expiry: an expired queued message is not delivered; the interval is lowered', async (t) => {
  const sub = await rawConnect(t, port);
  await rawHandshake(sub, 'expiry-sub', 5, { properties: { sessionExpiryInterval: 60 } });
  sub.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'exp/#', qos: 1 }] }, 5));
  await readPacket(sub, 5);
  sub.send(bytes({ cmd: 'disconnect', reasonCode: 0 }, 5));
  await sub.closed();
  const pub = await connectClient(t, port, { protocolVersion: 5 });
  await pub.publishAsync('exp/short', 'gone', { qos: 1, properties: { messageExpiryInterval: 1 } });
  await pub.publishAsync('exp/long', 'kept', { qos: 1, properties: { messageExpiryInterval: 60 } });
  await sleep(2100);
  const back = await rawConnect(t, port);
  await rawHandshake(back, 'expiry-sub', 5, { clean: false, properties: { sessionExpiryInterval: 60 } });
  const p = await readPacket(back, 5);
  t.match(p, { cmd: 'publish', topic: 'exp/long' }, 'the expired one is skipped');
  const left = p?.cmd === 'publish' ? p.properties?.messageExpiryInterval : undefined;
  t.ok(left !== undefined && left <= 58, `interval lowered by the time queued (got ${left})`);
});

t.test('session expiry: a 5.0 session with expiry 2 is gone after 3 s, there after 1 s', async (t) => {
  for (const id of ['sx-short', 'sx-check']) {
    const c = await rawConnect(t, port);
    await rawHandshake(c, id, 5, { properties: { sessionExpiryInterval: 2 } });
    c.send(bytes({ cmd: 'disconnect', reasonCode: 0 }, 5));
    await c.closed();
  }
  await sleep(1000);
  const early = await rawConnect(t, port);
  t.equal((await rawHandshake(early, 'sx-check', 5, { clean: false })).sessionPresent, true, 'still there after 1 s');
  await sleep(2000);
  const late = await rawConnect(t, port);
  t.equal((await rawHandshake(late, 'sx-short', 5, { clean: false })).sessionPresent, false, 'gone after 3 s');
});
