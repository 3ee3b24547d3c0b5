// While a CONNECT waits for its session to come over from another node, the node stops reading
// the connection (DESIGN principle 4: backpressure, not buffering); what was pipelined behind the
// CONNECT is handled after CONNACK, and reading resumes.

import t from 'tap';
import { rawConnect } from '../helpers/clients.js';
import { bytes, connectBytes, readPacket } from '../broker/support.js';
import { startCluster, waitFor } from './support.js';

const [n1, n2] = await startCluster(t, 2);
if (n1 === undefined || n2 === undefined) throw new Error('cluster did not start');

t.test('packets pipelined behind a CONNECT whose session is pulled from another node', async (t) => {
  const first = await rawConnect(t, n1.mqttPort);
  first.send(connectBytes('puller', 4, { clean: false }));
  t.match(await readPacket(first), { cmd: 'connack', returnCode: 0 });
  first.send(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'pp/#', qos: 1 }] }));
  t.match(await readPacket(first), { cmd: 'suback', granted: [1] });
  first.send(bytes({ cmd: 'disconnect' }));
  await first.closed();
  await waitFor('the session to be known cluster-wide', async () => {
    const res = await fetch(`http://127.0.0.1:${n2.mgmtPort}/api/v5/clients/puller`, { headers: { authorization: `Basic ${Buffer.from('admin:public').toString('base64')}` } });
    return res.status === 404; // not local on node 2: it will be pulled from node 1
  });

  const again = await rawConnect(t, n2.mqttPort);
  again.send(Buffer.concat([
    connectBytes('puller', 4, { clean: false }),
    bytes({ cmd: 'publish', topic: 'pp/x', payload: Buffer.from('behind'), qos: 1, messageId: 7, retain: false, dup: false }),
  ]));
  t.match(await readPacket(again), { cmd: 'connack', returnCode: 0, sessionPresent: true }, 'the session came over');
  const got: string[] = [];
  for (let i = 0; i < 2; i++) {
    const p = await readPacket(again);
    got.push(p?.cmd === 'puback' ? `puback ${p.messageId}` : p?.cmd === 'publish' ? `publish ${p.topic}` : String(p?.cmd));
  }
  t.same(got.sort(), ['puback 7', 'publish pp/x'], 'the pipelined PUBLISH was handled after CONNACK, and delivered to the moved subscription');
  again.send(bytes({ cmd: 'pingreq' }));
  t.match(await readPacket(again), { cmd: 'pingresp' }, 'reading resumed');
});
