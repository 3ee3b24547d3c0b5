// The client registry on a connect burst: a node announces the sessions opened meanwhile together
// (coalesced per client id, at most once per window), and the peer still learns every one (a
// client id it holds is taken over from there) and every discard. A client does not hear its
// CONNACK before the peers have been sent its session's claim.
import mqtt, { type MqttClient } from 'mqtt';
import t from 'tap';
import { freePort } from '../../native-bench/lib/ports.js';
import { connectListening, metric, startCluster, waitFor } from './support.js';

const BURST = 200;

t.test('a burst of connects on node 1 reaches node 2, announced together', async (t) => {
  const [n1, n2] = await startCluster(t, 2);
  if (n1 === undefined || n2 === undefined) throw new Error('no cluster');
  const clients: MqttClient[] = [];
  t.teardown(() => Promise.all(clients.map((c) => c.endAsync(true))));
  // All at once: the node reads many CONNECTs per turn, as under real connect load.
  await Promise.all(
    Array.from({ length: BURST }, (_, i) =>
      mqtt.connectAsync(`mqtt://127.0.0.1:${n1.mqttPort}`, { clientId: `burst${i}`, clean: false, reconnectPeriod: 0, connectTimeout: 10_000 }).then((c) => void clients.push(c)),
    ),
  );
  await waitFor('every change announced', async () => (await metric(n1, 'tidemq_cluster_registry_changes_total')) >= BURST);
  const changes = await metric(n1, 'tidemq_cluster_registry_changes_total');
  const batches = await metric(n1, 'tidemq_cluster_registry_batches_total');
  t.equal(changes, BURST, 'one change per session opened');
  t.ok(batches >= 1 && batches < changes, `coalesced: ${changes} changes in ${batches} batches`);
  // Node 2 knows where each session is: the same client id there takes the session over.
  for (const i of [0, BURST / 2, BURST - 1]) {
    const { connack } = await connectListening(t, n2.mqttPort, { clientId: `burst${i}`, clean: false }, () => {});
    t.equal(connack.sessionPresent, true, `burst${i}: taken over from node 1`);
  }
  await waitFor('the takeovers announced back', async () => (await metric(n2, 'tidemq_cluster_registry_changes_total')) >= 3);
});

// Each round connects its clients to node 1 at once, so that their claims wait for the registry's
// window there, and each client goes to node 2 the moment it has its CONNACK.
for (const via of ['mqtt', 'ws'] as const) {
  t.test(`a client that reconnects to node 2 as soon as node 1 (${via}) sent CONNACK finds its session there`, async (t) => {
    const wsPort = await freePort();
    const [n1, n2] = await startCluster(t, 2, { each: [{ wsPort }] });
    if (n1 === undefined || n2 === undefined) throw new Error('no cluster');
    const first = via === 'mqtt' ? `mqtt://127.0.0.1:${n1.mqttPort}` : `ws://127.0.0.1:${wsPort}/mqtt`;
    const options = { clean: false, reconnectPeriod: 0, connectTimeout: 10_000 };
    const ROUNDS = 10;
    const AT_ONCE = 20;
    const unknown: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      await Promise.all(
        Array.from({ length: AT_ONCE }, async (_, i) => {
          const clientId = `quick-${via}-${round}-${i}`;
          const a = await mqtt.connectAsync(first, { ...options, clientId });
          a.end(true);
          const { client: b, connack } = await connectListening(t, n2.mqttPort, { ...options, clientId }, () => {});
          if (!connack.sessionPresent) unknown.push(clientId);
          await b.endAsync(true);
        }),
      );
    }
    t.same(unknown, [], `all ${ROUNDS * AT_ONCE} sessions were known on node 2 (taken over from node 1)`);
    const batches = await metric(n1, 'tidemq_cluster_registry_batches_total');
    const changes = await metric(n1, 'tidemq_cluster_registry_changes_total');
    t.ok(batches < changes, `node 1's changes were gathered: ${changes} in ${batches} batches`);
  });
}

t.test('a discard is announced too: a session ended on node 1 is forgotten on node 2', async (t) => {
  const [n1, n2] = await startCluster(t, 2);
  if (n1 === undefined || n2 === undefined) throw new Error('no cluster');
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${n1.mqttPort}`, { clientId: 'gone', clean: true, reconnectPeriod: 0 });
  await waitFor('the open announced', async () => (await metric(n1, 'tidemq_cluster_registry_changes_total')) >= 1);
  await c.endAsync();
  await waitFor('the discard announced', async () => (await metric(n1, 'tidemq_cluster_registry_changes_total')) >= 2);
  t.equal(await metric(n1, 'tidemq_cluster_registry_changes_total'), 2, 'the open and the discard');
  const { connack } = await connectListening(t, n2.mqttPort, { clientId: 'gone', clean: false }, () => {});
  t.equal(connack.sessionPresent, false, 'no session to take over: node 2 forgot the discarded one');
});
