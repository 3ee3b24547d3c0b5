// Node limits, authentication with a password file, topic ACLs and graceful shutdown, each on
// a real node process configured with only what it needs.

import { join } from 'node:path';
import t from 'tap';
import { connectClient, messageCollector, rawConnect } from '../helpers/clients.js';
import { bytes, configFile, rawHandshake, readPacket, sleep, tidemqPasswd } from './support.js';
import { startNode } from '../helpers/node-process.js';

t.test('max connections, max topic levels, max client id length', async (t) => {
  const node = await startNode(t, {
    env: { TIDEMQ_MQTT__MAX_CONNECTIONS: '3', TIDEMQ_MQTT__MAX_TOPIC_LEVELS: '3', TIDEMQ_MQTT__MAX_CLIENT_ID_LENGTH: '8' },
  });
  const port = node.mqttPort;
  const c1 = await rawConnect(t, port);
  await rawHandshake(c1, 'lim-1', 5);
  const c2 = await rawConnect(t, port);
  await rawHandshake(c2, 'lim-2', 5);
  const c3 = await rawConnect(t, port);
  await rawHandshake(c3, 'lim-3', 5);
  const c4 = await rawConnect(t, port);
  c4.send(bytes({ cmd: 'connect', clientId: 'lim-4', protocolVersion: 4, protocolId: 'MQTT', clean: true, keepalive: 0 }));
  t.equal((await c4.read(1, 2000)).length, 0, 'the 4th connection is closed at once');
  c3.socket.destroy();
  await sleep(200);

  c1.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/b/c/d', qos: 0 }, { topic: 'a/b/+', qos: 0 }] }, 5));
  t.match(await readPacket(c1, 5), { cmd: 'suback', granted: [0x8f, 0] }, 'a filter over max_topic_levels is refused');
  c1.send(bytes({ cmd: 'publish', topic: 'a/b/c/d', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, 5));
  t.match(await readPacket(c1, 5), { cmd: 'disconnect', reasonCode: 0x90 }, 'a topic over max_topic_levels');
  await c1.closed();

  const long5 = await rawConnect(t, port);
  t.equal((await rawHandshake(long5, 'nine-char', 5)).reasonCode, 0x85, '5.0: client id over the maximum');
  await long5.closed();
  const long4 = await rawConnect(t, port);
  t.equal((await rawHandshake(long4, 'nine-char', 4)).returnCode, 2, '3.1.1: identifier rejected');
  await long4.closed();
  const ok = await rawConnect(t, port);
  t.equal((await rawHandshake(ok, 'eight-ch', 4)).returnCode, 0, 'at the maximum is fine');
});

t.test('connection rate: over the rate, sockets are closed at once', async (t) => {
  const node = await startNode(t, { env: { TIDEMQ_MQTT__MAX_CONN_RATE: '2', TIDEMQ_MQTT__MAX_CONN_BURST: '2' } });
  await sleep(1100); // the readiness probe took tokens; let the bucket refill
  const sockets = await Promise.all(Array.from({ length: 6 }, () => rawConnect(t, node.mqttPort)));
  const outcomes = await Promise.all(
    sockets.map(async (s, i) => {
      s.send(bytes({ cmd: 'connect', clientId: `rate-${i}`, protocolVersion: 4, protocolId: 'MQTT', clean: true, keepalive: 0 }));
      return (await readPacket(s, 4, 2000).catch(() => null))?.cmd ?? 'closed';
    }),
  );
  const accepted = outcomes.filter((o) => o === 'connack').length;
  t.ok(accepted >= 1 && accepted <= 3, `burst 2 (+ refill) accepted: ${outcomes.join(',')}`);
  t.equal(outcomes.filter((o) => o === 'closed').length, 6 - accepted, 'the rest closed without a CONNACK');
});

t.test('password file, ACL, and graceful shutdown on SIGTERM', async (t) => {
  const conf = configFile(
    t,
    { auth: { allow_anonymous: false, password_file: '@DIR@/passwd', acl_file: '@DIR@/acl' } },
    { acl: ['deny all subscribe test/nosubscribe', 'deny all publish secret/#', ''].join('\n') },
  );
  await tidemqPasswd(join(conf, '..', 'passwd'), 'alice', 's3cret');
  const node = await startNode(t, { args: ['--config', conf] });
  const port = node.mqttPort;
  const creds = { username: 'alice', password: 's3cret' };
  const rawCreds = { username: 'alice', password: Buffer.from('s3cret') };

  const bad5 = await rawConnect(t, port);
  t.equal((await rawHandshake(bad5, 'bad5', 5, { username: 'alice', password: Buffer.from('nope') })).reasonCode, 0x86, '5.0 bad password: 0x86');
  const bad4 = await rawConnect(t, port);
  t.equal((await rawHandshake(bad4, 'bad4', 4, { username: 'alice', password: Buffer.from('nope') })).returnCode, 4, '3.1.1 bad password: rc 4');
  const anon = await rawConnect(t, port);
  t.equal((await rawHandshake(anon, 'anon', 4)).returnCode, 4, 'anonymous refused when allow_anonymous is false');

  const raw4 = await rawConnect(t, port);
  await rawHandshake(raw4, 'acl4raw', 4, rawCreds);
  raw4.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'test/nosubscribe', qos: 1 }, { topic: 'test/ok', qos: 1 }] }));
  t.match(await readPacket(raw4, 4), { cmd: 'suback', granted: [0x80, 1] }, '3.1.1: denied subscribe -> SUBACK 0x80');
  const raw5 = await rawConnect(t, port);
  await rawHandshake(raw5, 'acl5raw', 5, rawCreds);
  raw5.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'test/nosubscribe', qos: 1 }] }, 5));
  t.match(await readPacket(raw5, 5), { cmd: 'suback', granted: [0x87] }, '5.0: denied subscribe -> SUBACK 0x87');

  const v4 = await connectClient(t, port, { protocolVersion: 4, clientId: 'acl4', ...creds });
  const watcher = await connectClient(t, port, { protocolVersion: 5, clientId: 'acl-watch', ...creds });
  const seen = messageCollector(watcher);
  await watcher.subscribeAsync('secret/#', { qos: 1 });
  await watcher.subscribeAsync('open/#', { qos: 1 });
  await v4.publishAsync('secret/a', 'dropped', { qos: 1 }); // acknowledged, not routed
  raw5.send(bytes({ cmd: 'publish', topic: 'secret/b', payload: Buffer.from('x'), qos: 1, messageId: 3, retain: false, dup: false }, 5));
  t.match(await readPacket(raw5, 5), { cmd: 'puback', messageId: 3, reasonCode: 0x87 }, '5.0: denied publish -> PUBACK 0x87');
  await v4.publishAsync('open/a', 'allowed', { qos: 1 });
  t.same((await seen.next(1)).map((m) => m.topic), ['open/a']);
  t.equal(seen.all().length, 1, 'denied publishes are not delivered');

  const stopping = node.stop('SIGTERM');
  t.match(await readPacket(raw5, 5), { cmd: 'disconnect', reasonCode: 0x8b }, '5.0: DISCONNECT 0x8B on shutdown');
  t.equal(await stopping, 0, 'exit code 0');
});
