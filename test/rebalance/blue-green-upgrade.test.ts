// The seed's blue-green upgrade (blue-green-upgrade), end to end on this machine: 3 old nodes
// behind HAProxy (the seed's health check on the availability check) hold HOLD clients that
// reconnect (nbench watch: persistent 5.0 and clean 3.1.1) and MQTTJS MQTT.js persistent sessions
// subscribed at QoS 1 to a topic a publisher publishes to throughout. 3 new nodes join (HAProxy
// sees them come up); `ctl cluster upgrade --from old --to new` runs. Afterwards every client and
// every persistent session is on the new nodes, the old nodes have left and stopped, no QoS 1
// message was lost, and each old node evicted at its configured rate (within 5%). A real
// Prometheus scrapes all six nodes and `npm run chart` draws connections per node: the SVG shows
// the old nodes falling to 0 and the new ones rising (the seed's picture).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runChart } from '../../src/cli/chart.js';
import { queryRange } from '../../src/metrics/prometheus-api.js';
import { sleep, startCluster, waitFor } from '../cluster/support.js';
import { v5 as api } from '../helpers/admin.js';
import { repoRoot } from '../helpers/build.js';
import { startNode, type NodeProcess } from '../helpers/node-process.js';
import { freePort } from '../../native-bench/lib/ports.js';
import { isRunning, run, startProcess } from '../helpers/process.js';
import { checkedSubscribers, numberedPublisher, haproxyConfig, haveHaproxy, holdNbenchClients, NBENCH, serverStates } from './haproxy-support.js';

const PROMETHEUS = [process.env.PROMETHEUS_BIN, '/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((p) => p !== undefined && p !== '' && existsSync(p));
/** nbench clients, half persistent 5.0, half clean 3.1.1 (the seed: 3000 with the MQTT.js ones). */
const HOLD = Number(process.env.TIDEMQ_BG_HOLD ?? 2900);
const MQTTJS = 100;
const TOTAL = HOLD + MQTTJS;
const CONN_EVICT_RATE = 200;
const TOPIC = 'bg/all';

const live = async (n: Pick<NodeProcess, 'mgmtPort'>): Promise<number> => ((await api(n, 'GET', '/stats')) as Array<Record<string, number>>)[0]?.['live_connections.count'] ?? 0;
const sessions = async (n: Pick<NodeProcess, 'mgmtPort'>): Promise<number> => ((await api(n, 'GET', '/stats')) as Array<Record<string, number>>)[0]?.['sessions.count'] ?? 0;

/** Series values of one `<path>` of the chart, read back through the y axis ticks. */
function chartValues(svg: string, name: string): number[] {
  const ticks = [...svg.matchAll(/<text x="[\d.]+" y="([\d.]+)" text-anchor="end">([\d.]+)(k?)<\/text>/g)].map((m) => [Number(m[1]) - 4, Number(m[2]) * (m[3] === 'k' ? 1000 : 1)] as const);
  const [y0, v0] = ticks[0] as readonly [number, number];
  const [y1, v1] = ticks.at(-1) as readonly [number, number];
  const path = new RegExp(`<path d="([^"]*)"[^>]*><title>${name.replace(/[.@]/g, '\\$&')}</title>`).exec(svg);
  if (path === null) return [];
  return [...(path[1] as string).matchAll(/[ML][\d.]+,([\d.]+)/g)].map((m) => v0 + ((Number(m[1]) - y0) * (v1 - v0)) / (y1 - y0));
}

const nbenchBuilt = (await run('test', ['-x', NBENCH])).code === 0;
if (!(await haveHaproxy()) || !nbenchBuilt || PROMETHEUS === undefined) {
  t.plan(0, 'needs haproxy, prometheus and native-bench/build/nbench (make -C native-bench)');
} else {
  t.test(`blue-green: 3 old nodes with ${TOTAL} clients behind HAProxy, 3 new join, cluster upgrade`, async (t) => {
    const old = await startCluster(t, 3);
    const seed = `${(old[0] as NodeProcess).name}:${(old[0] as NodeProcess).clusterPort}`;
    const fresh = await Promise.all([1, 2, 3].map(async (i) => ({ i, mqttPort: await freePort(), mgmtPort: await freePort(), clusterPort: await freePort() })));

    // HAProxy with all six servers (the seed's health check); the new ones are down until they start.
    const dir = mkdtempSync(join(tmpdir(), 'tidemq-bluegreen-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const front = await freePort();
    const sock = join(dir, 'haproxy.sock');
    writeFileSync(join(dir, 'haproxy.cfg'), haproxyConfig(front, sock, [...old, ...fresh], { maxconn: 8000, serverMaxconn: 5000 }));
    await startProcess(t, { name: 'haproxy', command: 'haproxy', args: ['-f', join(dir, 'haproxy.cfg'), '-db'], port: front });
    const upIn = async (): Promise<string[]> => [...(await serverStates(sock))].filter(([, s]) => s === 'UP').map(([n]) => n).sort();
    await waitFor('HAProxy sees the 3 old nodes up', async () => (await upIn()).join() === 'tidemq1,tidemq2,tidemq3', 10_000);

    // Prometheus scrapes all six management ports every second.
    const promPort = await freePort();
    writeFileSync(
      join(dir, 'prometheus.yml'),
      ['global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }', 'scrape_configs:', '  - job_name: tidemq', `    static_configs: [{ targets: [${[...old, ...fresh].map((n) => `'127.0.0.1:${n.mgmtPort}'`).join(', ')}] }]`, ''].join('\n'),
    );
    await startProcess(t, {
      name: 'prometheus',
      command: PROMETHEUS,
      args: [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'prom')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
      port: promPort,
    });
    const prom = `http://127.0.0.1:${promPort}`;
    const t0 = Math.floor(Date.now() / 1000);

    // The bulk: nbench watch through HAProxy, reconnecting when evicted; then the checked clients.
    holdNbenchClients(t, front, 'bg', HOLD / 2);
    const got = await checkedSubscribers(t, front, 'bg', MQTTJS, TOPIC);
    const onOld = async (): Promise<number> => (await Promise.all(old.map(live))).reduce((a, b) => a + b, 0);
    await waitFor(`${TOTAL} clients on the old nodes`, async () => (await onOld()) === TOTAL, 90_000);
    t.pass(`before: ${(await Promise.all(old.map(live))).join(' / ')} on the old nodes`);

    // The new nodes join; HAProxy sees them come up.
    const news: NodeProcess[] = [];
    for (const f of fresh) news.push(await startNode(t, { name: `bg${process.pid}new${f.i}@127.0.0.1`, mqttPort: f.mqttPort, mgmtPort: f.mgmtPort, clusterPort: f.clusterPort, args: ['--join', seed] }));
    const [n1] = news as [NodeProcess];
    await waitFor('a cluster of 6', async () => ((await api(n1, 'GET', '/cluster')) as { running_nodes: string[] }).running_nodes.length === 6, 20_000);
    await waitFor('HAProxy sees all 6 up', async () => (await upIn()).length === 6, 10_000);

    const publisher = await numberedPublisher(t, n1.mqttPort, 'bg-pub', TOPIC, 20_000);
    await sleep(1000);

    const startedAt = performance.now();
    const upgrade = await run(
      process.execPath,
      [join(repoRoot, 'bin', 'tidemq'), 'ctl', '--api', `http://127.0.0.1:${n1.mgmtPort}`, 'cluster', 'upgrade', '--from', old.map((n) => n.name).join(' '), '--to', news.map((n) => n.name).join(' '),
        '--conn-evict-rate', String(CONN_EVICT_RATE), '--sess-evict-rate', '500', '--wait-health-check', '2', '--wait-takeover', '3', '--json'],
      { timeoutMs: 150_000 },
    );
    t.equal(upgrade.code, 0, `cluster upgrade exit 0 after ${((performance.now() - startedAt) / 1000).toFixed(1)} s: ${upgrade.stderr}`);
    const steps = upgrade.stdout.trim().split('\n').map((l) => JSON.parse(l) as { step: string; node?: string; stopped?: boolean });
    t.same(steps.filter((s) => s.step === 'left').map((s) => [s.node, s.stopped]), old.map((n) => [n.name, true]), 'each old node in turn left and was stopped');
    t.equal(steps.at(-1)?.step, 'done');

    await waitFor('the old processes exited', () => old.every((n) => !isRunning(n.pid)), 20_000);
    t.same(await Promise.all(old.map((n) => n.stop())), [0, 0, 0], 'the old nodes stopped gracefully (exit 0)');
    t.same(((await api(n1, 'GET', '/cluster')) as { running_nodes: string[]; stopped_nodes: string[] }), { name: n1.name, running_nodes: news.map((n) => n.name).sort(), stopped_nodes: [] }, 'the cluster is the new nodes');
    const onNew = async (): Promise<number[]> => Promise.all(news.map(live));
    await waitFor(`all ${TOTAL} clients (and the publisher) on the new nodes`, async () => (await onNew()).reduce((a, b) => a + b, 0) === TOTAL + 1, 60_000).catch(() => undefined);
    const after = await onNew();
    t.equal(after.reduce((a, b) => a + b, 0), TOTAL + 1, `every client is on the new nodes: ${after.join(' / ')}`);
    const persistentOnNew = (await Promise.all(news.map(sessions))).reduce((a, b) => a + b, 0);
    // Persistent: nbench's 5.0 half and the MQTT.js clients; the 3.1.1 nbench half and the publisher are clean and connected.
    t.equal(persistentOnNew, TOTAL + 1, 'every session (persistent or live) is on the new nodes');
    const holders = await Promise.all(Array.from({ length: MQTTJS }, async (_, i) => (await Promise.all(news.map((n) => api(n, 'GET', `/clients/bg-q-${i}`).then(() => 1, () => 0)))).reduce((a: number, b) => a + b, 0)));
    t.same(holders.filter((h) => h !== 1), [], 'each MQTT.js session is on exactly one new node');

    // Eviction rate of each old node: the connections it evicted (its counter in Prometheus) over
    // the time it spent in evicting_conns (its own log).
    const tEnd = Math.ceil(Date.now() / 1000);
    for (const n of old) {
      const log = n.output().split('\n').filter((l) => l.includes('"msg":"evacuation state"')).map((l) => JSON.parse(l) as { time: number; state: string });
      const from = log.find((l) => l.state === 'evicting_conns')?.time ?? 0;
      const to = log.find((l) => l.state === 'waiting_takeover')?.time ?? 0;
      const evicted = await queryRange(prom, `max_over_time(tidemq_connections_evicted_total{kind="evacuation",instance="127.0.0.1:${n.mgmtPort}"}[5m])`, tEnd, tEnd, 1);
      const count = evicted[0]?.points[0]?.[1] ?? 0;
      const rate = (count * 1000) / (to - from);
      t.ok(count > 0 && Math.abs(rate - CONN_EVICT_RATE) <= CONN_EVICT_RATE * 0.05, `${n.name} evicted ${count} at ${rate.toFixed(1)}/s over ${to - from} ms (${CONN_EVICT_RATE}/s configured)`);
    }

    const last = await publisher.stop();
    await waitFor('every checked client got every message', () => got.every((s) => s.size === last), 30_000).catch(() => undefined);
    const lossy = got.map((s, i) => [i, last - s.size] as const).filter(([, missing]) => missing > 0);
    t.same(lossy, [], `no QoS 1 message lost by any of ${MQTTJS} persistent sessions (${last} messages each)`);

    // The seed's picture: connections per node over the upgrade.
    const out = join(dir, 'upgrade.svg');
    const code = await runChart(['--prometheus', prom, '--from', String(t0), '--to', String(tEnd), '--step', '1', '--out', out], () => {});
    t.equal(code, 0, 'npm run chart wrote the SVG');
    const svg = readFileSync(out, 'utf8');
    for (const n of old) {
      const v = chartValues(svg, n.name);
      t.ok(v.length > 0 && Math.max(...v) > (TOTAL / 3) * 0.8 && Math.abs(v.at(-1) as number) < 1, `${n.name} falls to 0 (peak ${Math.round(Math.max(...v))}, last ${Math.round(v.at(-1) as number)})`);
    }
    for (const n of news) {
      const v = chartValues(svg, n.name);
      t.ok(v.length > 0 && (v[0] as number) < 5 && (v.at(-1) as number) > (TOTAL / 3) * 0.6, `${n.name} rises (first ${Math.round(v[0] as number)}, last ${Math.round(v.at(-1) as number)})`);
    }
    if (process.env.TIDEMQ_KEEP_CHART !== undefined) writeFileSync(process.env.TIDEMQ_KEEP_CHART, svg);
  });
}
