// proxy_protocol = true on each listener: the header's address becomes the client's address,
// and a connection without a valid header in time is refused without harm to anyone else.
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import t from 'tap';
import { rawConnect } from '../helpers/clients.js';
import { eventually, makeCerts, rawWs, startTestNode, type TestNode } from './support.js';

const CONNECT = (id: string): Buffer => {
  const idBytes = Buffer.from(id);
  const body = Buffer.concat([Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, idBytes.length]), idBytes]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
};
const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
/** PROXY v2, TCP over IPv4, from 198.51.100.23:40000 to 127.0.0.1:1883. */
const V2 = Buffer.from([...SIG, 0x21, 0x11, 0x00, 0x0c, 198, 51, 100, 23, 127, 0, 0, 1, 0x9c, 0x40, 0x07, 0x5b]);

function connectedFrom(node: TestNode, clientId: string): unknown {
  return node.logs().find((r) => r.msg === 'client connected' && r.clientId === clientId)?.address;
}

const certs = await makeCerts(t);

t.test('TCP: v1 and v2 headers give the real address; bad ones are refused', async (t) => {
  const node = await startTestNode(t, { listeners: { proxy_protocol: true, proxy_header_timeout: 1 } });
  const port = node.port('tcp');
  const stats = node.listeners.find((l) => l.name === 'tcp')?.stats;

  const v1 = await rawConnect(t, port);
  v1.send(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.9 127.0.0.1 51000 1883\r\n'), CONNECT('via-v1')]));
  t.same(await v1.read(4), CONNACK, 'header and CONNECT in one segment');
  t.equal(connectedFrom(node, 'via-v1'), '203.0.113.9');

  const v2 = await rawConnect(t, port);
  for (const b of V2) v2.send([b]); // the header a byte at a time
  await new Promise((r) => setTimeout(r, 50));
  v2.send(CONNECT('via-v2'));
  t.same(await v2.read(4), CONNACK);
  t.equal(connectedFrom(node, 'via-v2'), '198.51.100.23');

  const health = await rawConnect(t, port);
  health.send(Buffer.concat([Buffer.from([...SIG, 0x20, 0x00, 0x00, 0x00]), CONNECT('local')]));
  t.same(await health.read(4), CONNACK, 'LOCAL (a health check) connects with the socket address');
  t.equal(connectedFrom(node, 'local'), '127.0.0.1');

  const bare = await rawConnect(t, port);
  bare.send(CONNECT('no-header'));
  await bare.closed();
  t.equal((await bare.read(4)).length, 0, 'a CONNECT without a header gets no CONNACK');

  const garbage = await rawConnect(t, port);
  garbage.send(Buffer.from('PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n'));
  await garbage.closed();
  const v2garbage = await rawConnect(t, port);
  v2garbage.send(Buffer.from([...SIG, 0x21, 0x99, 0x00, 0x00]));
  await v2garbage.closed();

  const started = Date.now();
  const stalled = await rawConnect(t, port);
  stalled.send(Buffer.from('PROXY TCP4 1.2.3.4'));
  await stalled.closed(5000);
  t.ok(Date.now() - started >= 900, 'a header that never completes is cut at proxy_header_timeout');
  t.equal(stats?.refused, 4, 'no header, two bad headers and a late one are counted');
  t.notOk(node.broker.sessions.has('no-header'));
  await eventually(() => stats?.live === 3, 2000, 'the three good connections to be all that is left');
  t.pass('refused connections left the listener count');
});

t.test('TLS: the header comes before the handshake', async (t) => {
  const node = await startTestNode(t, { certs, listeners: { proxy_protocol: true } });
  const port = node.port('tls');
  const socket = connect({ host: '127.0.0.1', port });
  t.teardown(() => socket.destroy());
  await new Promise((r) => socket.once('connect', r));
  socket.write('PROXY TCP6 2001:db8::7 ::1 40001 8883\r\n');
  const secure = tls.connect({ socket, ca: readFileSync(certs.caCert), servername: 'localhost' });
  await new Promise((r) => secure.once('secureConnect', r));
  secure.write(CONNECT('tls-proxied'));
  const answer = await new Promise<Buffer>((r) => secure.once('data', r));
  t.same(answer, CONNACK, 'MQTT over TLS over the socket that carried the header');
  t.equal(connectedFrom(node, 'tls-proxied'), '2001:db8::7');

  const direct = await new Promise<string>((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(certs.caCert), servername: 'localhost' });
    s.on('secureConnect', () => resolve('handshake done'));
    s.on('error', () => resolve('refused'));
    s.on('close', () => resolve('refused'));
  });
  t.equal(direct, 'refused', 'a TLS client without a header is refused before the handshake');
});

t.test('WebSocket: PROXY v2 before the upgrade', async (t) => {
  const node = await startTestNode(t, { listeners: { proxy_protocol: true } });
  const port = node.port('ws');
  const ws = await rawWs(t, port, { protocol: 'mqtt', before: V2 });
  t.match(ws.status, / 101 /);
  ws.send(CONNECT('ws-proxied'));
  t.same(await ws.read(4), CONNACK);
  t.equal(connectedFrom(node, 'ws-proxied'), '198.51.100.23');
  const bare = await rawWs(t, port, { protocol: 'mqtt' });
  t.match(bare.status, / 400 /, 'an upgrade without a header is refused');
  const garbage = await rawWs(t, port, { protocol: 'mqtt', before: Buffer.from('PROXY garbage\r\n'), answerTimeoutMs: 1000 });
  t.notMatch(garbage.status, / 101 /, 'a garbage header is no upgrade (uWS reads it as a bad request)');
  const fine = await rawWs(t, port, { protocol: 'mqtt', before: V2 });
  t.match(fine.status, / 101 /, 'the listener still serves');
});

t.test('proxy_protocol off: a header is not trusted', async (t) => {
  const node = await startTestNode(t);
  const c = await rawConnect(t, node.port('tcp'));
  c.send(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.9 127.0.0.1 51000 1883\r\n'), CONNECT('spoof')]));
  await c.closed();
  t.notOk(node.broker.sessions.has('spoof'), 'the header is garbage to MQTT');
  const ws = await rawWs(t, node.port('ws'), { protocol: 'mqtt', before: V2 });
  ws.send(CONNECT('ws-spoof'));
  t.same(await ws.read(4), CONNACK);
  t.equal(connectedFrom(node, 'ws-spoof'), '127.0.0.1', 'WebSocket keeps the socket address');
});
