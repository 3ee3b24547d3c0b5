// Membership on real nodes: `ctl cluster join/status/force-leave/leave`, a kill -9'd node's routes
// vanish and it rejoins by itself with its persistent sessions, a wrong cookie joins nothing.

import t from 'tap';
import { v5 } from '../helpers/admin.js';
import { connectClient } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';
import { freePort } from '../../native-bench/lib/ports.js';
import { address, connectListening, ctl, linksUp, routeNodes, sleep, startCluster, waitFor } from './support.js';

/** Socket close is seen at once; a silent peer within the heartbeat failure time (5 s). */
const FAILURE_DETECTION_MS = 6000;

async function running(node: { mgmtPort: number }): Promise<string[]> {
  return ((await v5(node, 'GET', '/cluster')) as { running_nodes: string[] }).running_nodes;
}

t.test('join, status, kill -9 and rejoin, force-leave, leave', async (t) => {
  const [n1, n2] = await startCluster(t, 2);
  if (n1 === undefined || n2 === undefined) throw new Error('cluster did not start');
  const n3port = await freePort();
  const n3name = n1.name.replace('n1@', 'n3@');
  const n3opts = { name: n3name, clusterPort: n3port, mqttPort: await freePort(), mgmtPort: await freePort(), keepDataDir: true };
  let n3 = await startNode(t, n3opts);
  t.teardown(async () => {
    const { rmSync } = await import('node:fs');
    rmSync(n3.dataDir, { recursive: true, force: true });
  });

  const before = await connectClient(t, n1.mqttPort, { protocolVersion: 5, clientId: 'ret-before-join' });
  await before.publishAsync('joined/retained', 'taken by the joiner', { qos: 1, retain: true });
  const joined = await ctl(n3, ['cluster', 'join', address(n1)]);
  t.equal(joined.code, 0, joined.stderr);
  const all = [n1.name, n2.name, n3name].sort();
  t.equal(joined.stdout, `Join the cluster successfully.\nCluster status: [{running_nodes,[${all.map((n) => `'${n}'`).join(',')}]}]\n`);
  await waitFor('n2 to link to n3', async () => (await running(n2)).length === 3);
  const status = await ctl(n1, ['cluster', 'status']);
  t.equal(status.stdout, `Cluster status: [{running_nodes,[${all.map((n) => `'${n}'`).join(',')}]}]\n`);
  const json = await ctl(n1, ['cluster', 'status', '--json']);
  t.same(JSON.parse(json.stdout), { name: n1.name, running_nodes: all, stopped_nodes: [] });

  const retained: string[] = [];
  const { client: late } = await connectListening(t, n3.mqttPort, { protocolVersion: 5, clientId: 'ret-after-join' }, (_t, p) => retained.push(p.toString()));
  await late.subscribeAsync('joined/#', { qos: 1 });
  await waitFor('the retained message on the joiner', () => retained.length > 0, 5000);
  t.same(retained, ['taken by the joiner'], "a joining node takes the cluster's retained messages");

  const again = await ctl(n3, ['cluster', 'join', address(n1)]);
  t.not(again.code, 0, 'joining a cluster it is in fails');
  t.match(again.stdout, /^Failed to join the cluster: already in a cluster with /);

  // A persistent subscriber on node 3, its route on the others.
  const sub = await connectClient(t, n3.mqttPort, { protocolVersion: 5, clean: false, clientId: 'survivor', properties: { sessionExpiryInterval: 3600 } });
  await sub.subscribeAsync('k/#', { qos: 1 });
  await sub.endAsync();
  await waitFor("n3's route on n1", async () => (await routeNodes(n1)).includes(n3name));

  await sleep(500); // the store commits asynchronously: let the session reach the disk before the kill
  const killedAt = Date.now();
  await n3.stop('SIGKILL');
  await waitFor("n3's routes to vanish from n1 and n2", async () => !(await routeNodes(n1)).includes(n3name) && !(await routeNodes(n2)).includes(n3name), FAILURE_DETECTION_MS);
  t.ok(Date.now() - killedAt < FAILURE_DETECTION_MS, `routes gone within ${Date.now() - killedAt} ms`);
  const down = await ctl(n1, ['cluster', 'status']);
  t.match(down.stdout, `{stopped_nodes,['${n3name}']}`, 'the killed node is listed as stopped');

  // Restarted on its data dir, without --join: it rejoins by itself.
  n3 = await startNode(t, { ...n3opts, dataDir: n3.dataDir });
  await waitFor('n3 to rejoin', async () => (await running(n1)).length === 3 && (await running(n2)).length === 3, 10_000);
  await waitFor("n3's restored route on n1", async () => (await routeNodes(n1)).includes(n3name)).catch((err: unknown) => {
    t.comment(n3.output().split('\n').slice(-12).join('\n'));
    throw err;
  });
  const pub = await connectClient(t, n1.mqttPort, { protocolVersion: 5, clientId: 'k-pub' });
  await pub.publishAsync('k/x', 'after restart', { qos: 1 });
  await sleep(200);
  // The session is reachable again: a reconnect on node 2 pulls it from node 3.
  const got: string[] = [];
  const { connack } = await connectListening(t, n2.mqttPort, { protocolVersion: 5, clean: false, clientId: 'survivor', properties: { sessionExpiryInterval: 3600 } }, (_t, p) =>
    got.push(p.toString()),
  );
  t.equal(connack.sessionPresent, true);
  await waitFor('the queued message', () => got.length > 0, 5000);
  t.same(got, ['after restart']);

  const removed = await ctl(n1, ['cluster', 'force-leave', n2.name]);
  t.equal(removed.code, 0, removed.stderr);
  t.match(removed.stdout, /^Remove the node from cluster successfully\.\n/);
  await waitFor('n2 to be alone', async () => (await running(n2)).length === 1);
  t.same((await running(n1)).sort(), [n1.name, n3name].sort());
  await sleep(1000);
  t.same((await running(n1)).sort(), [n1.name, n3name].sort(), 'a removed node does not come back by itself');

  const left = await ctl(n3, ['cluster', 'leave']);
  t.equal(left.code, 0, left.stderr);
  t.equal(left.stdout, `Leave the cluster successfully.\nCluster status: [{running_nodes,['${n3name}']}]\n`);
  await waitFor('n1 alone', async () => (await running(n1)).length === 1);
  await sleep(1000);
  t.same(await running(n1), [n1.name], 'the node that left stays out');
  t.equal(linksUp(n1) >= 0, true);
});

t.test('a wrong cluster cookie: the link is refused and logged, nothing joins', async (t) => {
  const n1 = await startNode(t, { name: `cookie${process.pid}a@127.0.0.1`, args: ['--cookie', 'right-secret'] });
  const n2 = await startNode(t, {
    name: `cookie${process.pid}b@127.0.0.1`,
    args: ['--cookie', 'wrong-secret', '--join', address(n1)],
  });
  // The dialer that holds the wrong cookie is told (an error); the acceptor counts a stranger's refusal (a warning).
  await waitFor('the refusal in both logs', () => /"reason":"bad_cookie".*before authentication/.test(n1.output()) && /wrong cluster cookie/.test(n2.output()), 10_000);
  t.notMatch(n1.output(), /"level":50/, 'the acceptor logs no error for a peer that proved nothing');
  t.same(await running(n1), [n1.name]);
  t.same(await running(n2), [n2.name]);
  t.notMatch(n1.output() + n2.output(), /cluster node up/, 'no link came up');
  t.notMatch(n1.output() + n2.output(), /wrong-secret|right-secret/, 'the secret is not logged');
  const byCtl = await ctl(n2, ['cluster', 'join', address(n1)]);
  t.equal(byCtl.code, 1);
  t.equal(byCtl.stdout, `Failed to join the cluster: cannot join ${n1.name}: bad_cookie\n`);
  const ghost = await ctl(n2, ['cluster', 'join', `ghost@127.0.0.1:${await freePort()}`]);
  t.equal(ghost.code, 1);
  t.match(ghost.stdout, /^Failed to join the cluster: cannot join ghost@127\.0\.0\.1: connect ECONNREFUSED/);
  t.same(await running(n2), [n2.name]);
});

t.test('dns discovery: a node finds its peer through the A records of a name', async (t) => {
  // Two loopback addresses share one cluster port, as hosts behind one DNS name would.
  const clusterPort = await freePort();
  const n1 = await startNode(t, { name: `dns${process.pid}a@127.0.0.1`, clusterPort });
  const n2 = await startNode(t, {
    name: `dns${process.pid}b@127.0.0.2`,
    clusterPort,
    env: { TIDEMQ_CLUSTER__DISCOVERY: 'dns', TIDEMQ_CLUSTER__DNS_NAME: 'localhost' },
  });
  await waitFor('the two nodes to find each other', async () => (await running(n1)).length === 2 && (await running(n2)).length === 2, 10_000);
  t.same((await running(n2)).sort(), [n1.name, n2.name].sort());
});
