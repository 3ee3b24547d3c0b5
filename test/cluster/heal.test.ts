// Failure and recovery on real nodes: a frozen node (SIGSTOP, a partition from the others' view)
// is detected by heartbeats; when it comes back the two sides merge routes, retained messages
// and the registry (one holder per client id). A node down longer than autoclean is removed.

import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { adminRequest, v5 } from '../helpers/admin.js';
import { connectClient, messageCollector } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';
import { connectListening, routeNodes, sleep, startCluster, waitFor } from './support.js';

async function view(node: { mgmtPort: number }): Promise<{ running_nodes: string[]; stopped_nodes: string[] }> {
  return (await v5(node, 'GET', '/cluster')) as { running_nodes: string[]; stopped_nodes: string[] };
}

async function holds(node: { mgmtPort: number }, clientId: string): Promise<boolean> {
  return (await adminRequest(node, 'GET', `/api/v5/clients/${clientId}`)).status === 200;
}

const persistent = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } };

t.test('a partition heals: heartbeats detect it, then routes, retained and registry merge', async (t) => {
  const [n1, n2] = await startCluster(t, 2);
  if (n1 === undefined || n2 === undefined) throw new Error('cluster did not start');
  // A persistent session on n2, disconnected.
  const c = await connectClient(t, n2.mqttPort, { ...persistent, clientId: 'split' });
  await c.subscribeAsync('split/#', { qos: 1 });
  await c.endAsync();
  await waitFor("n2's route on n1", async () => (await routeNodes(n1)).includes(n2.name));

  process.kill(n2.pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(n2.pid, 'SIGCONT');
    } catch {
      // already stopped by its teardown
    }
  });
  const frozenAt = Date.now();
  // Its holder does not answer the takeover: the connect fails cleanly (CONNACK 0x88), no hang.
  const refused = await connectClient(t, n1.mqttPort, { ...persistent, clientId: 'split', connectTimeout: 20_000 }).then(
    () => 'connected',
    (err: { code?: number }) => err.code,
  );
  t.equal(refused, 0x88, 'server unavailable while the holder does not answer');
  await waitFor('n1 to see n2 down', async () => (await view(n1)).stopped_nodes.includes(n2.name), 10_000);
  t.ok(Date.now() - frozenAt < 7000, `a silent node is detected by heartbeats (${Date.now() - frozenAt} ms)`);
  t.notOk((await routeNodes(n1)).includes(n2.name), "n2's routes are purged");

  // Meanwhile on n1's side: a retained message, a subscriber, and the same client id reconnecting.
  const pub = await connectClient(t, n1.mqttPort, { protocolVersion: 5, clientId: 'split-pub' });
  await pub.publishAsync('heal/r', 'while split', { qos: 1, retain: true });
  const s1 = await connectClient(t, n1.mqttPort, { protocolVersion: 5, clientId: 'split-sub' });
  await s1.subscribeAsync('heal/live', { qos: 1 });
  const again = await connectClient(t, n1.mqttPort, { ...persistent, clientId: 'split' });
  t.equal((again as unknown as { connackPacket?: { sessionPresent?: boolean } }).connackPacket?.sessionPresent, false, 'its holder is unreachable: a fresh session');

  process.kill(n2.pid, 'SIGCONT');
  await waitFor('the two sides to merge', async () => (await view(n1)).running_nodes.length === 2 && (await view(n2)).running_nodes.length === 2, 15_000);
  await waitFor("n1's routes on n2", async () => (await routeNodes(n2)).includes(n1.name));
  await waitFor('one holder of the client id', async () => !(await holds(n2, 'split')), 5000);
  t.ok(await holds(n1, 'split'), 'the later session (on n1) is the one kept');

  const got: string[] = [];
  await connectListening(t, n2.mqttPort, { protocolVersion: 5, clientId: 'heal-ret' }, (_t, p) => got.push(p.toString())).then(({ client }) =>
    client.subscribeAsync('heal/#', { qos: 1 }),
  );
  await waitFor('the retained message on n2', () => got.includes('while split'), 5000);
  const sGot = messageCollector(s1);
  const p2 = await connectClient(t, n2.mqttPort, { protocolVersion: 5, clientId: 'heal-pub2' });
  await p2.publishAsync('heal/live', 'across again', { qos: 1 });
  const [m] = await sGot.next(1);
  t.equal(m?.payload.toString(), 'across again', 'forwarding works again');
});

t.test('a node down longer than autoclean is removed; restarted, it rejoins', async (t) => {
  const [n1, n2] = await startCluster(t, 2, { each: [{ env: { TIDEMQ_CLUSTER__AUTOCLEAN: '2' } }, { keepDataDir: true }] });
  if (n1 === undefined || n2 === undefined) throw new Error('cluster did not start');
  t.teardown(() => rmSync(n2.dataDir, { recursive: true, force: true }));
  // Membership is written to the data dir just after the join: a kill before that write would
  // restart n2 knowing no cluster (a node killed within milliseconds of joining must join again).
  const saved = join(n2.dataDir, 'cluster.json');
  await waitFor('n2 to have saved its membership', async () => existsSync(saved) && readFileSync(saved, 'utf8').includes(n1.name));
  await n2.stop('SIGKILL');
  await waitFor('n2 listed as stopped', async () => (await view(n1)).stopped_nodes.includes(n2.name));
  await waitFor('n2 removed by autoclean', async () => !(await view(n1)).stopped_nodes.includes(n2.name), 6000);
  t.same((await view(n1)).running_nodes, [n1.name]);
  await sleep(200);
  const back = await startNode(t, { name: n2.name, dataDir: n2.dataDir, mqttPort: n2.mqttPort, mgmtPort: n2.mgmtPort, clusterPort: n2.clusterPort });
  await waitFor('n2 back in the cluster', async () => (await view(n1)).running_nodes.length === 2 && (await view(back)).running_nodes.length === 2, 10_000);
  t.pass('rejoined by itself');
  await back.stop();
  await t.rejects(
    startNode(t, { name: n2.name.replace('@', 'renamed@'), dataDir: n2.dataDir, keepDataDir: true }),
    /its name cannot change/,
    "a node's name is fixed once it has joined a cluster",
  );
});
