// End to end with a real Prometheus (Debian package `prometheus`) scraping a 3-node cluster every
// second while node 1 is evacuated: every PromQL expression of every dashboard returns data through
// Prometheus's HTTP API, node 1's connection series drains to 0 while the others rise with the
// total unchanged, and `npm run chart` draws it.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import t from 'tap';
import { runChart } from '../../src/cli/chart.js';
import { queryRange, type RangeSeries } from '../../src/metrics/prometheus-api.js';
import { sleep, startCluster, waitFor } from '../cluster/support.js';
import { rawHandshake } from '../broker/support.js';
import { adminRequest, v5 } from '../helpers/admin.js';
import { connectClient, rawConnect } from '../helpers/clients.js';
import type { NodeProcess } from '../helpers/node-process.js';
import { freePort } from '../../native-bench/lib/ports.js';
import { startProcess } from '../helpers/process.js';
import { dashboardQueries } from './dashboards.js';

const PROMETHEUS = [process.env.PROMETHEUS_BIN, '/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((p) => p !== undefined && p !== '' && existsSync(p));
/** Clients per node before the evacuation; node 1 also holds disconnected persistent sessions. */
const ON_NODE1 = 60;
const ON_OTHERS = 20;
const PARKED = 10;
const TOTAL = ON_NODE1 + 2 * ON_OTHERS;
const CONN_EVICT_RATE = 15;

/** Dashboard variables as Grafana would fill them for "all nodes". */
function substitute(expr: string): string {
  return expr.replaceAll('$__rate_interval', '5s').replaceAll('${instance}', '.*').replaceAll('$instance', '.*');
}

async function promGet(base: string, path: string): Promise<unknown> {
  const res = await fetch(new URL(path, base));
  const body = (await res.json()) as { status: string; data: unknown; error?: string };
  if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? res.status}`);
  return body.data;
}

/** One series per node, by tidemq_node_info's `node` label. */
function byNode(series: RangeSeries[]): Map<string, number[]> {
  return new Map(series.map((s) => [s.labels.node ?? '?', s.points.map((p) => p[1])]));
}

t.test('dashboards against a real Prometheus during an evacuation', { skip: PROMETHEUS === undefined ? 'prometheus is not installed (Debian: apt-get install prometheus)' : false }, async (t) => {
  const nodes = await startCluster(t, 3);
  const [n1, n2, n3] = nodes as [NodeProcess, NodeProcess, NodeProcess];

  const dir = mkdtempSync(join(tmpdir(), 'tidemq-prom-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const promPort = await freePort();
  const config = join(dir, 'prometheus.yml');
  writeFileSync(
    config,
    [
      'global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }',
      'scrape_configs:',
      '  - job_name: tidemq',
      `    static_configs: [{ targets: [${nodes.map((n) => `'127.0.0.1:${n.mgmtPort}'`).join(', ')}] }]`,
      '',
    ].join('\n'),
  );
  const prom = await startProcess(t, {
    name: 'prometheus',
    command: PROMETHEUS as string,
    args: [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
    port: promPort,
  });
  const base = `http://127.0.0.1:${promPort}`;
  await waitFor('3 targets scraped', async () => {
    const data = (await promGet(base, '/api/v1/query?query=tidemq_node_info')) as { result: unknown[] };
    return data.result.length === 3;
  }, 20_000).catch((err: unknown) => {
    t.comment(prom.output());
    throw err;
  });

  // Persistent sessions left on node 1 for evicting_sessions to move.
  for (let i = 0; i < PARKED; i++) {
    const c = await connectClient(t, n1.mqttPort, { clientId: `parked-${i}`, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 600 } });
    await c.subscribeAsync(`parked/${i}`, { qos: 1 });
    await c.endAsync();
  }
  // Node 1's clients: persistent, so a client evicted there and reconnecting elsewhere takes its
  // session along (what a load balancer in front would make them do).
  const clients: MqttClient[] = [];
  t.teardown(() => Promise.all(clients.map((c) => c.endAsync(true))));
  let moved = 0;
  const open = (port: number, clientId: string, persistent: boolean): Promise<MqttClient> =>
    new Promise((resolve, reject) => {
      const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
        clientId,
        protocolVersion: 5,
        clean: !persistent,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        ...(persistent ? { properties: { sessionExpiryInterval: 600 } } : {}),
      });
      clients.push(c);
      c.once('connect', () => resolve(c));
      c.once('error', reject);
    });
  const connected = await Promise.all([
    ...Array.from({ length: ON_NODE1 }, (_, i) => open(n1.mqttPort, `evac-${i}`, true)),
    ...Array.from({ length: ON_OTHERS }, (_, i) => open(n2.mqttPort, `stay2-${i}`, false)),
    ...Array.from({ length: ON_OTHERS }, (_, i) => open(n3.mqttPort, `stay3-${i}`, false)),
  ]);
  connected.slice(0, ON_NODE1).forEach((c, i) => {
    c.once('close', () => {
      void open((i % 2 === 0 ? n2 : n3).mqttPort, `evac-${i}`, true).then(() => moved++, (err: unknown) => t.comment(`evac-${i}: ${String(err)}`));
    });
  });
  // A trickle of messages across nodes, for the message and forwarding panels.
  const pub = connected[ON_NODE1] as MqttClient;
  await (connected[ON_NODE1 + ON_OTHERS] as MqttClient).subscribeAsync('trickle', { qos: 0 });
  const trickle = setInterval(() => pub.publish('trickle', 'x'), 100);
  t.teardown(() => clearInterval(trickle));

  await sleep(4000); // the level before: 60 / 20 / 20
  const t0 = Math.floor(Date.now() / 1000) - 2;
  const started = await adminRequest(n2, 'POST', `/api/v5/load_rebalance/${n1.name}/evacuation/start`, {
    conn_evict_rate: CONN_EVICT_RATE,
    sess_evict_rate: 20,
    wait_takeover: 2,
    wait_health_check: 0,
  });
  t.equal(started.status, 200, `evacuation started: ${JSON.stringify(started.json)}`);
  // What the refusal panels show: a CONNECT to the evacuated node (0x9C), one refused for its
  // client id (3.1.1, empty id with Clean Session 0 [MQTT-3.1.3-8]), a malformed packet.
  const refused = await open(n1.mqttPort, 'latecomer', false).then(
    () => 'connected',
    (err: unknown) => String(err),
  );
  t.match(refused, /Use another server/, `a new client of node 1 is refused: ${refused}`);
  const badId = await rawConnect(t, n2.mqttPort);
  badId.send([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 60, 0, 0]);
  await badId.closed();
  const malformed = await rawConnect(t, n3.mqttPort);
  await rawHandshake(malformed, 'malformed', 4);
  malformed.send([0x80, 0x00]); // SUBSCRIBE with reserved flags 0000 [MQTT-3.8.1-1]
  await malformed.closed();
  await waitFor('node 1 evacuated: prohibiting with no connection and no session', async () => {
    const s = (await v5(n1, 'GET', '/load_rebalance/status')) as { state?: string; stats?: { current_connected: number; current_sessions: number } };
    return s.state === 'prohibiting' && s.stats?.current_connected === 0 && s.stats.current_sessions === 0;
  }, 40_000);
  await waitFor('every evicted client reconnected elsewhere', () => moved === ON_NODE1, 10_000);
  await sleep(3000); // the level after, scraped
  const t1 = Math.floor(Date.now() / 1000);

  t.test('node 1 drains to 0, the others rise, the total stays', async (t) => {
    const perNode = byNode(await queryRange(base, 'sum by (instance) (tidemq_connections) * on (instance) group_left (node) tidemq_node_info', t0, t1, 1));
    const s1 = perNode.get(n1.name) ?? [];
    const s2 = perNode.get(n2.name) ?? [];
    const s3 = perNode.get(n3.name) ?? [];
    t.comment(`node 1: ${s1.join(' ')}`);
    t.comment(`node 2: ${s2.join(' ')}`);
    t.comment(`node 3: ${s3.join(' ')}`);
    t.equal(s1[0], ON_NODE1, 'node 1 starts with its clients');
    t.equal(s1.at(-1), 0, 'and ends with none');
    t.ok(s1.every((v, i) => i === 0 || v <= (s1[i - 1] as number)), 'never rising while it drains');
    t.ok(s1.filter((v) => v > 0 && v < ON_NODE1).length >= 2, 'drained over several scrapes (at the eviction rate), not at once');
    for (const [name, s] of [[n2.name, s2], [n3.name, s3]] as const) {
      t.equal(s[0], ON_OTHERS, `${name} starts with ${ON_OTHERS}`);
      t.equal(s.at(-1), ON_OTHERS + ON_NODE1 / 2, `${name} ends with half of node 1's clients added`);
      t.ok(s.every((v, i) => i === 0 || v >= (s[i - 1] as number)), `${name} never falls`);
    }
    const total = (await queryRange(base, 'sum(tidemq_connections)', t0, t1, 1))[0]?.points.map((p) => p[1]) ?? [];
    t.comment(`total: ${total.join(' ')}`);
    t.equal(total[0], TOTAL);
    t.equal(total.at(-1), TOTAL, 'the same total after');
    // The nodes are scraped at different offsets within the second, so a client that moved in
    // between can be seen on both nodes or on neither: at most a second of evictions apart.
    const off = Math.max(...total.map((v) => Math.abs(v - TOTAL)));
    t.ok(off <= CONN_EVICT_RATE, `the total never strays more than a second of evictions (at most ${off} off)`);
  });

  t.test('every dashboard query returns data through the HTTP API', async (t) => {
    const instances = (await promGet(base, '/api/v1/label/instance/values?match[]=tidemq_node_info')) as string[];
    t.equal(instances.length, 3, 'the instance variable lists the 3 nodes');
    for (const { file, exprs } of dashboardQueries()) {
      for (const expr of exprs) {
        if (expr.startsWith('label_values(')) continue; // a Grafana variable query, checked above
        const q = substitute(expr);
        const result = await queryRange(base, q, t0, t1, 1);
        const finite = result.reduce((n, s) => n + s.points.filter((p) => Number.isFinite(p[1])).length, 0);
        t.ok(result.length > 0 && finite > 0, `${file.split('/').pop()}: ${result.length} series, ${finite} values: ${q}`);
      }
    }
    const migrated = await queryRange(base, 'sum(tidemq_sessions_migrated_total{direction="in"})', t1, t1, 1);
    t.ok((migrated[0]?.points[0]?.[1] ?? 0) >= ON_NODE1 + PARKED, 'every session of node 1 migrated in somewhere');
    const evicted = await queryRange(base, `sum(tidemq_connections_evicted_total{instance="127.0.0.1:${n1.mgmtPort}"})`, t1, t1, 1);
    t.equal(evicted[0]?.points[0]?.[1], ON_NODE1, 'node 1 evicted each of its connections once');
    const state = await queryRange(base, `max by (state) (tidemq_evacuation_state{instance="127.0.0.1:${n1.mgmtPort}"}) == 1`, t0, t1, 1);
    t.ok(state.some((s) => s.labels.state === 'evicting_conns') && state.some((s) => s.labels.state === 'prohibiting'), `states seen: ${state.map((s) => s.labels.state).join(', ')}`);
  });

  t.test('npm run chart draws the evacuation', async (t) => {
    const out = join(dir, 'evacuation.svg');
    const code = await runChart(['--prometheus', base, '--from', String(t0), '--to', String(t1), '--total', '--out', out], () => {});
    t.equal(code, 0);
    const svg = readFileSync(out, 'utf8');
    t.equal([...svg.matchAll(/<path /g)].length, 4, 'three nodes and the total');
    for (const n of nodes) t.match(svg, n.name, `legend names ${n.name}`);
  });
});
