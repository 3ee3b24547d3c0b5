// Client keepalive on one real node. It stays spawned because the protocol stamps each received
// packet with the wall clock (Date.now()), not the timer wheel's clock, so a test clock cannot
// move a client's idle time; the rest of flow control is in process in flow-control.test.ts.

import t from 'tap';
import { rawConnect } from '../helpers/clients.js';
import { bytes, rawHandshake, readPacket, sleep } from './support.js';
import { startNode } from '../helpers/node-process.js';

const node = await startNode(t);
const port = node.mqttPort;

t.test('keepalive: a silent client is dropped after 1.5x its keepalive; 5.0 gets 0x8D', async (t) => {
  const v5 = await rawConnect(t, port);
  await rawHandshake(v5, 'ka5', 5, { keepalive: 1 });
  const v4 = await rawConnect(t, port);
  await rawHandshake(v4, 'ka4', 4, { keepalive: 1 });
  const start = Date.now();
  t.match(await readPacket(v5, 5, 4000), { cmd: 'disconnect', reasonCode: 0x8d });
  const elapsed = Date.now() - start;
  t.ok(elapsed >= 1300 && elapsed < 3000, `dropped after ${elapsed} ms`);
  t.equal(await readPacket(v4, 4, 2000), null, '3.1.1 is closed without a packet');
  const pinger = await rawConnect(t, port);
  await rawHandshake(pinger, 'ka-ping', 4, { keepalive: 1 });
  for (let i = 0; i < 5; i++) {
    pinger.send(bytes({ cmd: 'pingreq' }));
    t.match(await readPacket(pinger, 4), { cmd: 'pingresp' });
    await sleep(500);
  }
  t.notOk(pinger.isClosed, 'a client that keeps talking stays');
});
