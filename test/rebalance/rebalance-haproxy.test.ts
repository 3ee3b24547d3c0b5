// The seed's rebalance scenario (rebalance-on-kubernetes) scaled to this machine: 4 real nodes
// behind HAProxy (balance leastconn, httpchk on the availability check); 3000 connections with
// auto-reconnect on nodes 1-3 while node 4 is held out of HAProxy (a node that just joined):
// 2800 held by nbench watch (1400 5.0 persistent, 1400 3.1.1 clean) and 200 MQTT.js clients with
// persistent sessions (half 5.0, half 3.1.1) subscribed at QoS 1 to a topic published throughout.
// `ctl rebalance start --abs-conn-threshold 100 --conn-evict-rate 500` on node 1 must end with
// every node near 750, the same 3000 connected, no QoS 1 message lost, the rebalance gone from
// global status. Prints the time to balanced and the peak reconnect rate seen by node 4.
import t from 'tap';
import type { NodeProcess } from '../helpers/node-process.js';
import { run } from '../helpers/process.js';
import { ctl, sleep, startCluster, waitFor } from '../cluster/support.js';
import { checkedSubscribers, numberedPublisher, haproxyCommand, haveHaproxy, holdNbenchClients, NBENCH, serverStates, startHaproxy } from './haproxy-support.js';
import { v5 as api } from '../helpers/admin.js';

const PER_NBENCH = 1400;
const MQTTJS = 200;
const TOTAL = 2 * PER_NBENCH + MQTTJS;
const TOPIC = 'rb/all';

const live = async (n: NodeProcess): Promise<number> => ((await api(n, 'GET', '/stats')) as Array<Record<string, number>>)[0]?.['live_connections.count'] ?? 0;

const nbenchBuilt = (await run('test', ['-x', NBENCH])).code === 0;
if (!(await haveHaproxy()) || !nbenchBuilt) {
  t.plan(0, 'needs haproxy and native-bench/build/nbench (make -C native-bench)');
} else {
  t.test('4 nodes, 1000/1000/1000/0 behind HAProxy: rebalance at 500/s, abs 100', async (t) => {
    const nodes = await startCluster(t, 4);
    const [n1, n2, n3, n4] = nodes as [NodeProcess, NodeProcess, NodeProcess, NodeProcess];
    const { front, socket } = await startHaproxy(t, nodes, { maxconn: 6000, serverMaxconn: 5000 });
    await haproxyCommand(socket, 'disable server tidemq/tidemq4');
    await waitFor('node 4 out of HAProxy', async () => (await serverStates(socket)).get('tidemq4') === 'MAINT', 5000);

    // The bulk: two nbench watch processes, stopped by PID; then the checked clients.
    holdNbenchClients(t, front, 'rb', PER_NBENCH);
    const got = await checkedSubscribers(t, front, 'rb', MQTTJS, TOPIC);
    const counts = async (): Promise<number[]> => Promise.all(nodes.map(live));
    await waitFor(`${TOTAL} connections on nodes 1-3`, async () => (await counts()).slice(0, 3).reduce((a, b) => a + b, 0) === TOTAL, 60_000);
    const before = await counts();
    t.pass(`before: ${before.join(' / ')}`);
    t.equal(before[3], 0, 'node 4 empty');

    await haproxyCommand(socket, 'enable server tidemq/tidemq4');
    await waitFor('node 4 up in HAProxy', async () => (await serverStates(socket)).get('tidemq4') === 'UP', 10_000);
    const publisher = await numberedPublisher(t, n4.mqttPort, 'rb-pub', TOPIC, 5000);

    // Node 4's connection count sampled every 100 ms: the reconnect rate it sees.
    const samples: Array<[number, number]> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling && samples.length < 3000) {
        samples.push([performance.now(), await live(n4)]);
        await sleep(100);
      }
    })();
    const startedAt = performance.now();
    const start = await ctl(n1, ['rebalance', 'start', '--abs-conn-threshold', '100', '--conn-evict-rate', '500', '--wait-health-check', '2', '--wait-takeover', '3', '--abs-sess-threshold', '100']);
    t.same([start.stdout.trim(), start.code], ['Rebalance started', 0]);
    // The CLI's progress view runs beside it and must end by itself when the rebalance is done.
    const watch = ctl(n2, ['rebalance', 'status', '--watch']);
    const g0 = (await api(n3, 'GET', '/load_rebalance/global_status')) as { rebalances: Array<Record<string, unknown>> };
    t.match(g0.rebalances, [{ node: n1.name, coordinator_node: n1.name, recipients: [n4.name], connection_eviction_rate: 500 }]);
    t.same([...(g0.rebalances[0]?.donors as string[])].sort(), [n1.name, n2.name, n3.name].sort(), 'nodes 1-3 are donors');

    let balancedAt = 0;
    await waitFor(
      'the rebalance gone from global status',
      async () => {
        const g = (await api(n3, 'GET', '/load_rebalance/global_status')) as { rebalances: Array<{ state: string }> };
        if (balancedAt === 0 && (g.rebalances.length === 0 || g.rebalances[0]?.state === 'wait_takeover')) balancedAt = performance.now();
        return g.rebalances.length === 0;
      },
      60_000,
    );
    const doneAt = performance.now();
    t.pass(`connections balanced ${((balancedAt - startedAt) / 1000).toFixed(1)} s after start (wait_health_check 2 s included), done ${((doneAt - startedAt) / 1000).toFixed(1)} s after (wait_takeover 3 s)`);
    const w = await watch;
    t.equal(w.code, 0, 'rebalance status --watch ended when the rebalance was done');
    t.match(w.stdout, /rebalance (wait_health_check|evicting_conns)/, 'and showed its progress');

    await waitFor(`all ${TOTAL} clients back`, async () => (await counts()).reduce((a, b) => a + b, 0) === TOTAL + 1, 30_000);
    const after = await counts();
    after[3] = (after[3] as number) - 1; // the publisher
    t.pass(`after: ${after.join(' / ')}`);
    t.equal(after.reduce((a, b) => a + b, 0), TOTAL, 'the total number of connected clients is unchanged');
    for (const [i, c] of after.entries()) t.ok(c >= 600 && c <= 900, `node ${i + 1} near 750: ${c}`);
    const donorAvg = ((after[0] as number) + (after[1] as number) + (after[2] as number)) / 3;
    t.ok(donorAvg <= (after[3] as number) + 100, `within the threshold: donor average ${donorAvg.toFixed(1)} <= ${after[3]} + 100`);
    for (const n of [n1, n2, n3]) t.equal((await api(n, 'GET', '/load_rebalance/availability_check').catch(() => 'down')) === 'down', false, `${n.name} serves again`);

    sampling = false;
    await sampler;
    let peak = 0;
    for (let i = 0, j = 0; i < samples.length; i++) {
      const [at, c] = samples[i] as [number, number];
      while (j < i && (samples[j] as [number, number])[0] < at - 1000) j++;
      const [at0, c0] = samples[j] as [number, number];
      if (at - at0 >= 900) peak = Math.max(peak, ((c - c0) * 1000) / (at - at0));
    }
    t.pass(`peak reconnect rate seen by node 4: ${peak.toFixed(0)}/s over 1 s (configured 500/s per donor, 3 donors: 1500/s)`);

    const last = await publisher.stop();
    await waitFor('every checked client got every message', () => got.every((s) => s.size === last), 30_000).catch(() => undefined);
    const lossy = got.map((s, i) => [i, last - s.size] as const).filter(([, missing]) => missing > 0);
    t.same(lossy, [], `no QoS 1 message lost by any of ${MQTTJS} persistent sessions (${last} messages each)`);
  });
}
