// A subscriber that stops reading: QoS 0 is dropped while its socket backlog is over the bound,
// QoS 1 waits, and what waited is sent once the socket drains.

import t from 'tap';
import { connectClient, rawConnect } from '../helpers/clients.js';
import { bytes, rawHandshake, readPacket, sleep } from './support.js';
import { startNode } from '../helpers/node-process.js';

const node = await startNode(t, { env: { TIDEMQ_MQTT__MAX_PACKET_SIZE: '2MB' } });

t.test('queued QoS 1 is delivered when a congested socket drains', async (t) => {
  const sub = await rawConnect(t, node.mqttPort);
  await rawHandshake(sub, 'slow-sub', 4);
  sub.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'slow/#', qos: 1 }] }));
  t.match(await readPacket(sub, 4), { cmd: 'suback', granted: [1] });
  sub.socket.pause();

  const pub = await connectClient(t, node.mqttPort, { protocolVersion: 4 });
  const big = Buffer.alloc(1_500_000, 0x61);
  for (let i = 0; i < 30; i++) await pub.publishAsync('slow/bulk', big, { qos: 0 });
  await sleep(300);
  await pub.publishAsync('slow/last', 'after the jam', { qos: 1 });
  await sleep(300);

  sub.socket.resume();
  let bulk = 0;
  for (;;) {
    const p = await readPacket(sub, 4, 10_000).catch((e: unknown) => ({ cmd: String(e) }) as never);
    if (p?.cmd !== 'publish') {
      t.fail(`expected the QoS 1 message, got ${JSON.stringify(p)}`);
      break;
    }
    if (p.topic === 'slow/last') {
      t.equal(p.qos, 1);
      break;
    }
    bulk++;
  }
  t.ok(bulk < 30, `QoS 0 was dropped while congested (${bulk} of 30 arrived)`);
});
