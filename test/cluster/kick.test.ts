// Kicking a client from any node of a cluster (DELETE /api/v4|v5/clients/:id), two real nodes and
// MQTT.js clients: the node holding the session ends the connection (DISCONNECT 0x98) or, for a
// disconnected persistent session, discards it and publishes its pending will, as EMQX 4.4 does;
// every node and both API versions answer alike.
import t from 'tap';
import { adminRequest } from '../helpers/admin.js';
import type { NodeProcess } from '../helpers/node-process.js';
import { connectClient, messageCollector } from '../helpers/clients.js';
import { routeNodes, startCluster, waitFor } from './support.js';

const [n1, n2] = await startCluster(t, 2);
if (n1 === undefined || n2 === undefined) throw new Error('cluster did not start');

/**
 * DELETE on `node`, repeated while it answers "not found" (5 s at most): the registry entry of a
 * session that just opened on the other node travels asynchronously, and a kick of an unknown id
 * changes nothing.
 */
async function kick(node: NodeProcess, path: string): Promise<{ status: number; json: unknown }> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const res = await adminRequest(node, 'DELETE', path);
    const notFound = res.status === 404 || (res.json as { code?: unknown } | undefined)?.code === 112;
    if (!notFound || Date.now() > deadline) return res;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function shown(node: NodeProcess, clientId: string): Promise<Array<Record<string, unknown>>> {
  return ((await adminRequest(node, 'GET', `/api/v4/clients/${encodeURIComponent(clientId)}`)).json as { data: Array<Record<string, unknown>> }).data;
}

t.test('a disconnected persistent session on another node: discarded, its pending will published', async (t) => {
  // The watcher is on node 2, the session on node 1: the will crosses the cluster too.
  const watcher = await connectClient(t, n2.mqttPort, { protocolVersion: 5, clientId: 'kick-watch' });
  const wills = messageCollector(watcher);
  await watcher.subscribeAsync('wills/#', { qos: 1 });
  await waitFor("node 2's route on node 1", async () => (await routeNodes(n1)).includes(n2.name));

  const dev = await connectClient(t, n1.mqttPort, {
    clientId: 'kick-dev', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 },
    will: { topic: 'wills/kick-dev', payload: Buffer.from('bye'), qos: 1, retain: false, properties: { willDelayInterval: 300 } },
  });
  dev.stream.destroy(); // an abnormal end: the will waits for its delay
  await waitFor('the session disconnected on node 1', async () => (await shown(n1, 'kick-dev'))[0]?.connected === false);
  t.same(await shown(n2, 'kick-dev'), [], 'node 2 does not hold the session');

  t.same((await kick(n2, '/api/v4/clients/kick-dev')).json, { code: 0 }, 'kicked from node 2 (v4)');
  const [will] = await wills.next(1);
  t.equal(will?.topic, 'wills/kick-dev', 'the pending will is published');
  t.equal(will?.payload.toString(), 'bye');
  t.same(await shown(n1, 'kick-dev'), [], 'the session is gone from node 1');

  // Nothing left to kick: the same answer on both nodes.
  for (const node of [n1, n2]) {
    t.same((await adminRequest(node, 'DELETE', '/api/v4/clients/kick-dev')).json, { code: 112, message: 'not_found' });
    const v5 = await adminRequest(node, 'DELETE', '/api/v5/clients/kick-dev');
    t.equal(v5.status, 404);
    t.match(v5.json, { code: 'CLIENTID_NOT_FOUND' });
  }
});

t.test('v5, the other way round: a 3.1.1 session on node 2 kicked from node 1', async (t) => {
  const dev = await connectClient(t, n2.mqttPort, { clientId: 'kick-v4', protocolVersion: 4, clean: false });
  await dev.endAsync();
  await waitFor('the session disconnected on node 2', async () => (await shown(n2, 'kick-v4'))[0]?.connected === false);
  t.equal((await kick(n1, '/api/v5/clients/kick-v4')).status, 204, 'kicked from node 1 (v5)');
  t.same(await shown(n2, 'kick-v4'), [], 'discarded on node 2');
});

t.test('a connected client on another node: DISCONNECT 0x98, the will published', async (t) => {
  const watcher = await connectClient(t, n1.mqttPort, { protocolVersion: 5, clientId: 'kick-watch-2' });
  const wills = messageCollector(watcher);
  await watcher.subscribeAsync('wills/#', { qos: 1 });
  await waitFor("node 1's route on node 2", async () => (await routeNodes(n2)).includes(n1.name));
  const live = await connectClient(t, n2.mqttPort, {
    clientId: 'kick-live', protocolVersion: 5, will: { topic: 'wills/kick-live', payload: Buffer.from('kicked'), qos: 1, retain: false },
  });
  const reason = new Promise<number | undefined>((resolve) => {
    live.once('disconnect', (p) => resolve(p.reasonCode));
    setTimeout(() => resolve(undefined), 5000);
  });
  t.equal((await kick(n1, '/api/v5/clients/kick-live')).status, 204, 'kicked from node 1 (v5)');
  t.equal(await reason, 0x98, 'Administrative action');
  const [will] = await wills.next(1);
  t.equal(will?.topic, 'wills/kick-live');
});
