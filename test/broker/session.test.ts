// Message expiry on one real node: it reads the wall clock, so it is tested with a real one. The
// other session behaviours (wills, will delay, takeover, the offline queue, session expiry) are
// tested in process on the test's clock: session-lifecycle.test.ts.

import t from 'tap';
import { connectClient, rawConnect } from '../helpers/clients.js';
import { bytes, rawHandshake, readPacket, sleep } from './support.js';
import { startNode } from '../helpers/node-process.js';

const node = await startNode(t);
const port = node.mqttPort;

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
