// MQTT over TLS (node:tls) and WSS: mosquitto clients with and without client certificates,
// MQTT.js over wss://, all meeting TCP clients on the same broker; TLS below 1.2 refused.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import mqtt from 'mqtt';
import t from 'tap';
import { connectClient, messageCollector } from '../helpers/clients.js';
import { run, spawnProcess } from '../helpers/process.js';
import { eventually, makeCerts, startTestNode } from './support.js';

const certs = await makeCerts(t);

t.test('mosquitto clients over TLS meet TCP clients', async (t) => {
  const node = await startTestNode(t, { certs });
  const port = String(node.port('tls'));
  const tcp = await connectClient(t, node.port('tcp'), { clientId: 'tcp-side' });
  const atTcp = messageCollector(tcp);
  await tcp.subscribeAsync('from/tls', { qos: 1 });

  // mosquitto_sub over TLS waits for one message that a TCP client publishes.
  const sub = spawnProcess({
    name: 'mosquitto_sub',
    command: 'mosquitto_sub',
    args: ['-h', '127.0.0.1', '-p', port, '--cafile', certs.caCert, '-t', 'from/tcp', '-q', '1', '-C', '1', '-W', '10', '-i', 'mosq-sub', '-V', 'mqttv5'],
  });
  t.teardown(() => sub.stop());
  // Its SUBSCRIBE, not just its CONNECT, must be in before the publish, or the message is missed.
  await eventually(() => node.broker.sessions.get('mosq-sub')?.subscriptions.has('from/tcp') === true, 5000, 'mosquitto_sub to subscribe');
  await tcp.publishAsync('from/tcp', 'to mosquitto', { qos: 1 });
  t.equal(await sub.exited, 0, `mosquitto_sub exits after its message: ${sub.output()}`);
  t.equal(sub.stdout().trim(), 'to mosquitto');

  const pub = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '--cafile', certs.caCert, '-t', 'from/tls', '-m', 'from mosquitto', '-q', '1', '-i', 'mosq-pub']);
  t.equal(pub.code, 0, pub.stderr);
  t.equal((await atTcp.next(1))[0]?.payload.toString(), 'from mosquitto');

  const refusedOld = await new Promise<string>((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: node.port('tls'), ca: readFileSync(certs.caCert), minVersion: 'TLSv1', maxVersion: 'TLSv1.1' });
    s.on('secureConnect', () => resolve('connected'));
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
  t.not(refusedOld, 'connected', `TLS 1.1 is refused (${refusedOld})`);
  await eventually(() => node.listeners.every((l) => l.name === 'tcp' || l.stats.live === 0), 5000, 'TLS connections released');
  t.pass('every closed TLS connection left the listener count');
});

t.test('client certificates: verified, CN as username, others refused', async (t) => {
  const acl = join(certs.dir, 'acl');
  writeFileSync(acl, 'allow user:alice publish cn/#\ndeny all publish cn/#\n');
  const aclNode = await startTestNode(t, { certs, listeners: { tls_verify_peer: true, tls_cn_as_username: true }, auth: { acl_file: acl } });
  const port = String(aclNode.port('tls'));
  const tcp = await connectClient(t, aclNode.port('tcp'), { clientId: 'watcher' });
  const seen = messageCollector(tcp);
  await tcp.subscribeAsync('cn/#', { qos: 1 });

  const withCert = ['-h', '127.0.0.1', '-p', port, '--cafile', certs.caCert, '--cert', certs.clientCert, '--key', certs.clientKey, '-q', '1'];
  // The CONNECT says "bob"; the certificate says alice, and the ACL lets only alice publish.
  const pub = await run('mosquitto_pub', [...withCert, '-u', 'bob', '-t', 'cn/alice', '-m', 'signed', '-i', 'cert-pub']);
  t.equal(pub.code, 0, pub.stderr);
  t.equal((await seen.next(1))[0]?.payload.toString(), 'signed', 'the certificate CN is the username the ACL sees');

  const noCert = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '--cafile', certs.caCert, '-t', 'cn/x', '-m', 'x', '-i', 'no-cert']);
  t.not(noCert.code, 0, 'without a client certificate the handshake fails');
  const rogue = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '--cafile', certs.caCert, '--cert', certs.rogueCert, '--key', certs.rogueKey, '-t', 'cn/x', '-m', 'x', '-i', 'rogue']);
  t.not(rogue.code, 0, 'a certificate from another CA is refused');
  t.equal(seen.all().length, 1, 'nothing from the refused clients arrived');
  await eventually(() => aclNode.listeners.every((l) => l.name === 'tcp' || l.stats.live === 0), 5000, 'TLS connections released');
  t.pass('refused handshakes left the listener count');
});

t.test('MQTT.js over wss:// meets TCP clients', async (t) => {
  const node = await startTestNode(t, { certs });
  const wss = await mqtt.connectAsync(`wss://127.0.0.1:${node.port('wss')}/mqtt`, {
    clientId: 'wss-1',
    ca: readFileSync(certs.caCert),
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 5,
  });
  t.teardown(() => wss.endAsync(true));
  const tcp = await connectClient(t, node.port('tcp'), { clientId: 'tcp-2' });
  const atWss = messageCollector(wss);
  const atTcp = messageCollector(tcp);
  await wss.subscribeAsync('to/wss', { qos: 2 });
  await tcp.subscribeAsync('to/tcp', { qos: 2 });
  await tcp.publishAsync('to/wss', 'secure hello', { qos: 2 });
  await wss.publishAsync('to/tcp', 'secure reply', { qos: 2 });
  t.equal((await atWss.next(1))[0]?.payload.toString(), 'secure hello');
  t.equal((await atTcp.next(1))[0]?.payload.toString(), 'secure reply');
});

t.test('without cert files only TCP and WebSocket start', async (t) => {
  const node = await startTestNode(t);
  t.same(node.listeners.map((l) => l.name), ['tcp', 'ws']);
  const tcpOnly = await startTestNode(t, { certs, listeners: { tls_enabled: false, ws_enabled: false, wss_enabled: false } });
  t.same(tcpOnly.listeners.map((l) => l.name), ['tcp'], 'each listener but TCP can be switched off');
});
