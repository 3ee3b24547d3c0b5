// A TCP connection holds its listener's gate (the per-listener count and max_connections) until it
// closes, released exactly once by whoever owns the socket then: the connection's own 'close'
// handler (one listener set per socket), the listener while a PROXY header is awaited, the raw
// socket under TLS. A missed release leaks a slot; a double one lets the cap be passed.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import t, { type Test } from 'tap';
import { rawConnect, type RawClient } from '../helpers/clients.js';
import { eventually, makeCerts, startTestNode, type TestNode } from './support.js';

const CONNECT = (id: string): Buffer => {
  const idBytes = Buffer.from(id);
  const body = Buffer.concat([Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, idBytes.length]), idBytes]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
};
const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
const PROXY = Buffer.from('PROXY TCP4 203.0.113.9 127.0.0.1 51000 1883\r\n');

function live(node: TestNode, name: 'tcp' | 'tls'): number {
  const stats = node.listeners.find((l) => l.name === name)?.stats;
  if (stats === undefined) throw new Error(`no ${name} listener`);
  return stats.live;
}

/** Connected clients, a client closed before its CONNECT and one refused by the cap: counted once each. */
async function exercise(t: Test, node: TestNode, header: Buffer): Promise<void> {
  const port = node.port('tcp');
  const clients: RawClient[] = [];
  for (let i = 0; i < 3; i++) {
    const c = await rawConnect(t, port);
    c.send(Buffer.concat([header, CONNECT(`gate-${i}`)]));
    t.same(await c.read(4), CONNACK, `client ${i} connected`);
    clients.push(c);
  }
  t.equal(live(node, 'tcp'), 3, 'three open connections held by the listener');
  const over = await rawConnect(t, port);
  await over.closed();
  t.pass('a fourth connection is refused at the listener cap of 3');
  const quiet = clients.pop() as RawClient;
  quiet.socket.destroy(); // closed by the client, no DISCONNECT
  await eventually(() => live(node, 'tcp') === 2, 5000, 'the closed connection to leave the count');
  const again = await rawConnect(t, port);
  again.send(Buffer.concat([header, CONNECT('gate-again')]));
  t.same(await again.read(4), CONNACK, 'its slot is free again');
  for (const c of [...clients, again]) c.socket.destroy();
  await eventually(() => live(node, 'tcp') === 0, 5000, 'every connection to leave the count');
  // A second release would take the count below zero (and let the cap be passed).
  await new Promise((r) => setTimeout(r, 100));
  t.equal(live(node, 'tcp'), 0, 'released once each, never twice');
}

t.test('plain TCP: the connection releases the gate when it closes', async (t) => {
  const node = await startTestNode(t, { listeners: { tcp_max_connections: 3 } });
  await exercise(t, node, Buffer.alloc(0));
});

t.test('TCP behind a PROXY header: released once, by the listener before the header and the connection after', async (t) => {
  const node = await startTestNode(t, { listeners: { tcp_max_connections: 3, proxy_protocol: true } });
  const early = await rawConnect(t, node.port('tcp'));
  early.socket.destroy(); // gone before its header
  await eventually(() => live(node, 'tcp') === 0, 5000, 'a socket closed before its PROXY header to leave the count');
  await exercise(t, node, PROXY);
});

t.test('TLS: the raw socket releases the gate', async (t) => {
  const certs = await makeCerts(t);
  const node = await startTestNode(t, { certs });
  for (let i = 0; i < 2; i++) {
    const s = tls.connect({ host: '127.0.0.1', port: node.port('tls'), ca: readFileSync(certs.caCert) });
    await new Promise<void>((resolve, reject) => {
      s.once('secureConnect', resolve);
      s.once('error', reject);
    });
    s.write(CONNECT(`tls-gate-${i}`));
    await new Promise<void>((resolve) => s.once('data', () => resolve()));
    s.destroy();
  }
  await eventually(() => live(node, 'tls') === 0, 5000, 'closed TLS connections to leave the count');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(live(node, 'tls'), 0, 'released once each');
});
