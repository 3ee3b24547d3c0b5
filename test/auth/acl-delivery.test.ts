// ACL on real nodes: read access holds for every delivered message whatever the subscription's
// wildcard (live, retained, shared, forwarded by another node), wills pass the publish ACL at
// CONNECT, `$SYS/...` is not for clients to publish, and a PUBLISH to `$share/...` is invalid.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import t, { type Test } from 'tap';
import { connectClient, messageCollector, rawConnect, run, type MessageCollector } from '../helpers/clients.js';
import { startNode, type NodeProcess } from '../helpers/node-process.js';
import { spawnProcess } from '../helpers/process.js';
import { parsePrometheus, value } from '../metrics/prom-text.js';
import { bytes, connectBytes, rawHandshake, readPacket, sleep, waitFor } from '../broker/support.js';
import { connectListening, startCluster } from '../cluster/support.js';

const dir = t.testdir();
const aclFile = join(dir, 'acl');
// `boss` may read secret/#, nobody else; anyone may publish there (so there is something to leak).
writeFileSync(aclFile, ['allow client:boss subscribe secret/#', 'allow client:reader-mix subscribe secret/#', 'deny all subscribe secret/#', 'deny all publish locked/#', ''].join('\n'));
const env = { TIDEMQ_AUTH__ACL_FILE: aclFile };

/** Publishes `probe/x` until every collector has seen it: the subscriptions (and routes) are in place. */
async function probe(pub: MqttClient, collectors: MessageCollector[]): Promise<void> {
  for (let i = 0; i < 100; i++) {
    await pub.publishAsync('probe/x', `p${i}`, { qos: 1 });
    await sleep(100);
    if (collectors.every((c) => c.all().some((m) => m.topic === 'probe/x'))) return;
  }
  throw new Error('the subscriptions never saw the probe');
}

async function scrape(node: NodeProcess, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${node.mgmtPort}/metrics`);
  return value(parsePrometheus(await res.text()), name);
}

const topics = (c: MessageCollector): string[] => c.all().map((m) => m.topic).filter((x) => x !== 'probe/x');

t.test('one node: wildcards, retained and shared subscriptions carry no topic the subscriber may not read', async (t) => {
  const node = await startNode(t, { env });
  const port = node.mqttPort;
  const pub = await connectClient(t, port, { clientId: 'pub', protocolVersion: 5 });
  await pub.publishAsync('secret/r', 'retained secret', { qos: 1, retain: true });
  await pub.publishAsync('public/r', 'retained public', { qos: 1, retain: true });

  const subs: Array<[string, MqttClient, MessageCollector, string]> = [];
  for (const [clientId, filter, protocolVersion] of [
    ['w-hash', '#', 5],
    ['w-pp', '+/+', 4],
    ['w-px', '+/x', 5],
    ['w-share', '$share/g/#', 5],
    ['boss', 'secret/#', 5],
  ] as const) {
    const c = await connectClient(t, port, { clientId, protocolVersion });
    const got = messageCollector(c);
    const granted = await c.subscribeAsync(filter, { qos: 1 });
    t.equal(granted[0]?.qos, 1, `${clientId}: ${filter} is granted (the rule does not cover it)`);
    subs.push([clientId, c, got, filter]);
  }
  const denied = await subs[0]?.[1].subscribeAsync('secret/+', { qos: 1 }).then(() => 'granted', (err: Error) => err.message);
  t.match(denied, /Not authorized/, 'a filter inside the denied one is still refused at SUBSCRIBE (0x87)');

  // A shared group of a reader and a non-reader: the secret message goes to the reader.
  const mix: Array<[string, MessageCollector]> = [];
  for (const clientId of ['w-mix', 'reader-mix']) {
    const c = await connectClient(t, port, { clientId, protocolVersion: 5 });
    mix.push([clientId, messageCollector(c)]);
    t.equal((await c.subscribeAsync('$share/mix/+/x', { qos: 1 }))[0]?.qos, 1);
  }

  const sub = spawnProcess({ name: 'mosquitto_sub', command: 'mosquitto_sub', args: ['-h', '127.0.0.1', '-p', String(port), '-V', 'mqttv311', '-q', '1', '-t', '#', '-v'], killAfterMs: 2000 });
  t.teardown(() => sub.stop());
  await waitFor(() => sub.stdout().includes('public/r retained public'), 'mosquitto_sub to get the public retained message');
  await probe(pub, subs.filter((s) => s[0] !== 'boss').map((s) => s[2]));

  // Order is kept per publisher: once public/x arrived, an earlier secret/x would have too.
  await pub.publishAsync('secret/x', 'live secret', { qos: 1 });
  await pub.publishAsync('public/x', 'live public', { qos: 1 });
  for (const [clientId, , got, filter] of subs) {
    if (clientId === 'boss') continue;
    await waitFor(() => topics(got).includes('public/x'), `${clientId} (${filter}) to get public/x`);
  }
  await waitFor(() => sub.stdout().includes('public/x live public'), 'mosquitto_sub to get public/x');
  const seen = Object.fromEntries(subs.map(([id, , got]) => [id, topics(got)]));
  t.same(seen['w-hash'], ['public/r', 'public/x'], '#: the public retained and live messages only');
  t.same(seen['w-pp'], ['public/r', 'public/x'], '+/+: the same');
  t.same(seen['w-px'], ['public/x'], '+/x: public/x only');
  t.same(seen['w-share'], ['public/x'], '$share/g/#: public/x only (no retained for shared subscriptions)');
  t.same(seen.boss, ['secret/r', 'secret/x'], 'the client allowed to read secret/# gets both: the messages were routed');
  t.notOk(/secret/.test(sub.stdout()), 'mosquitto_sub on # printed no secret topic');
  await waitFor(() => mix.some(([, got]) => topics(got).includes('public/x')), 'the mixed group to get public/x');
  const mixed = Object.fromEntries(mix.map(([id, got]) => [id, topics(got)]));
  t.same(mixed['w-mix']?.filter((x) => x.startsWith('secret')), [], 'the non-reader of the group got no secret message');
  t.same(mixed['reader-mix']?.filter((x) => x.startsWith('secret')), ['secret/x'], 'the reader of the group got it, whoever was next in turn');
  t.equal(mix.filter(([, got]) => topics(got).includes('public/x')).length, 1, 'public/x went to one member');
  t.ok((await scrape(node, 'tidemq_deliveries_denied_total')) >= 5, 'withheld deliveries are counted');
  t.ok((await scrape(node, 'tidemq_acl_cache_entries')) > 0, 'read verdicts are cached');
});

t.test('two nodes: a forwarded message reaches no plain or shared subscriber that may not read it', async (t) => {
  const [n1, n2] = (await startCluster(t, 2, { each: [{ env }, { env }] })) as [NodeProcess, NodeProcess];
  const pub = await connectClient(t, n1.mqttPort, { clientId: 'c-pub', protocolVersion: 5 });
  const subs: Array<[string, MessageCollector]> = [];
  for (const [clientId, filter] of [
    ['c-hash', '#'],
    ['c-share', '$share/cg/+/x'],
    ['boss', 'secret/#'],
  ] as const) {
    const c = await connectClient(t, n2.mqttPort, { clientId, protocolVersion: 5 });
    subs.push([clientId, messageCollector(c)]);
    t.equal((await c.subscribeAsync(filter, { qos: 1 }))[0]?.qos, 1, `${clientId} on node 2: ${filter}`);
  }
  // The routes reach node 1 asynchronously: probe until both non-readers see a forwarded message.
  await probe(pub, subs.filter(([id]) => id !== 'boss').map(([, c]) => c));
  await pub.publishAsync('secret/x', 'forwarded secret', { qos: 1 });
  await pub.publishAsync('public/x', 'forwarded public', { qos: 1 });
  const got = Object.fromEntries(subs);
  await waitFor(() => topics(got['c-hash'] as MessageCollector).includes('public/x') && topics(got['c-share'] as MessageCollector).includes('public/x'), 'the forwarded public message');
  await waitFor(() => topics(got.boss as MessageCollector).includes('secret/x'), 'the reader to get the forwarded secret message');
  t.same(topics(got['c-hash'] as MessageCollector), ['public/x'], '# on the other node: no secret message');
  t.same(topics(got['c-share'] as MessageCollector), ['public/x'], '$share/cg/+/x on the other node: no secret message');
  t.ok((await scrape(n2, 'tidemq_deliveries_denied_total')) >= 2, 'withheld on the receiving node');
});

t.test('wills pass the publish ACL at CONNECT; $SYS is not for clients; $share/ is no topic name', async (t) => {
  const node = await startNode(t, { env });
  const port = node.mqttPort;
  const will = (topic: string) => ({ will: { topic, payload: Buffer.from('gone'), qos: 0 as const, retain: true } });

  const w5 = await rawConnect(t, port);
  t.equal((await rawHandshake(w5, 'will5', 5, will('locked/door'))).reasonCode, 0x87, '5.0: a will on a denied topic gets CONNACK 0x87');
  await w5.closed();
  const w4 = await rawConnect(t, port);
  t.equal((await rawHandshake(w4, 'will4', 4, will('locked/door'))).returnCode, 5, '3.1.1: return code 5 (not authorized), as Mosquitto');
  await w4.closed();
  const sys = await rawConnect(t, port);
  t.equal((await rawHandshake(sys, 'will-sys', 5, will('$SYS/broker/fake'))).reasonCode, 0x87, 'a will on $SYS/... is refused too');
  await sys.closed();
  const ok = await rawConnect(t, port);
  t.equal((await rawHandshake(ok, 'will-ok', 4, will('open/door'))).returnCode, 0, 'an allowed will topic connects');

  const watcher = await connectClient(t, port, { clientId: 'sys-watch', protocolVersion: 5 });
  const seen = messageCollector(watcher);
  await watcher.subscribeAsync('$SYS/#', { qos: 1 });
  await watcher.subscribeAsync('locked/#', { qos: 1 });
  await watcher.subscribeAsync('open/#', { qos: 1 });
  const p5 = await rawConnect(t, port);
  await rawHandshake(p5, 'sys5', 5);
  p5.send(bytes({ cmd: 'publish', topic: '$SYS/broker/uptime', payload: Buffer.from('fake'), qos: 1, messageId: 7, retain: true, dup: false }, 5));
  t.match(await readPacket(p5, 5), { cmd: 'puback', messageId: 7, reasonCode: 0x87 }, '5.0: PUBLISH to $SYS/... -> PUBACK 0x87');
  const pub4 = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-V', 'mqttv311', '-q', '1', '-r', '-t', '$SYS/broker/uptime', '-m', 'fake']);
  t.equal(pub4.code, 0, '3.1.1: acknowledged (it cannot be told why), and dropped');
  // The will of `ok` is allowed: dropping its socket publishes it, after the refused ones.
  ok.socket.destroy();
  await waitFor(() => seen.all().some((m) => m.topic === 'open/door'), 'the allowed will');
  t.same(seen.all().map((m) => m.topic), ['open/door'], 'nothing reached $SYS/# or locked/#');
  const retained = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-t', '$SYS/#', '-C', '1', '-W', '1']);
  t.equal(retained.stdout, '', 'and nothing was retained on $SYS');

  const s5 = await rawConnect(t, port);
  await rawHandshake(s5, 'share5', 5);
  s5.send(bytes({ cmd: 'publish', topic: '$share/g/x', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, 5));
  t.match(await readPacket(s5, 5), { cmd: 'disconnect', reasonCode: 0x90 }, '5.0: PUBLISH to $share/... -> DISCONNECT 0x90');
  await s5.closed();
  const s4 = await rawConnect(t, port);
  await rawHandshake(s4, 'share4', 4);
  s4.send(bytes({ cmd: 'publish', topic: '$share/g/x', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }));
  await s4.closed();
  t.pass('3.1.1: PUBLISH to $share/... closes the connection');
  const bad = await rawConnect(t, port);
  bad.send(connectBytes('badwill4', 4, will('$share/g/x')));
  t.equal((await bad.read(4, 3000)).length, 0, '3.1.1: an invalid will topic closes the connection without CONNACK [MQTT-3.1.4-1]');
  const bad5 = await rawConnect(t, port);
  t.equal((await rawHandshake(bad5, 'badwill5', 5, will('a/+'))).reasonCode, 0x90, '5.0: CONNACK 0x90 before the close');
});

t.test('a will is checked again when it is published: a stored session restarted under an ACL that denies it', async (t) => {
  const first = await startNode(t, { keepDataDir: true });
  // A persistent watcher: whenever the wills go out after the restart, they are queued for it.
  const watch = { clientId: 'will-watch', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 300 } };
  const watcher = await connectClient(t, first.mqttPort, watch);
  await watcher.subscribeAsync(['locked/#', 'open/#'], { qos: 1 });
  await watcher.endAsync();
  const willAfter = (clientId: string, topic: string) =>
    connectClient(t, first.mqttPort, {
      clientId,
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 60 },
      will: { topic, payload: Buffer.from(clientId), qos: 1, retain: false, properties: { willDelayInterval: 3 } },
    });
  const denied = await willAfter('will-locked', 'locked/door');
  const allowed = await willAfter('will-open', 'open/door');
  // Abnormal ends: both wills wait for their delay, stored with the sessions; the node dies first,
  // once the store is durable: a QoS 1 message queued for the offline watcher is acknowledged only
  // then (the store writes in order, so the will sessions written before it are durable too).
  denied.stream.destroy();
  allowed.stream.destroy();
  const flusher = await connectClient(t, first.mqttPort, { clientId: 'flusher', protocolVersion: 5 });
  await flusher.publishAsync('open/flush', 'x', { qos: 1 });
  await first.stop('SIGKILL');
  const second = await startNode(t, { name: first.name, dataDir: first.dataDir, env });
  const topicsSeen: string[] = [];
  await connectListening(t, second.mqttPort, watch, (topic) => topicsSeen.push(topic));
  await waitFor(() => topicsSeen.includes('open/door'), 'the allowed will', 15_000);
  let deniedCount = 0;
  for (let i = 0; i < 100 && deniedCount === 0; i++) {
    deniedCount = await scrape(second, 'tidemq_messages_denied_total');
    if (deniedCount === 0) await sleep(50);
  }
  t.equal(deniedCount, 1, 'the denied will was refused by the publish ACL');
  t.same(topicsSeen, ['open/flush', 'open/door'], 'and never delivered');
});
