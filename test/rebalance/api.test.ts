// Evacuation through the management API (v4 and v5) and `tidemq ctl rebalance` on a real 2-node
// cluster: validation errors in both versions and the CLI, status and global status shapes,
// refusal of new connects (raw CONNACK bytes), stop, and a kill -9 mid-evacuation.
import { join } from 'node:path';
import mqtt from 'mqtt';
import t from 'tap';
import { repoRoot } from '../helpers/build.js';
import { rawConnect } from '../helpers/clients.js';
import { startNode, type NodeProcess } from '../helpers/node-process.js';
import { run } from '../helpers/process.js';
import { address, startCluster, waitFor } from '../cluster/support.js';
import { adminRequest as call } from '../helpers/admin.js';


async function ctl(node: NodeProcess, ...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const r = await run(process.execPath, [join(repoRoot, 'bin', 'tidemq'), 'ctl', '--api', `http://127.0.0.1:${node.mgmtPort}`, ...args], { timeoutMs: 20_000 });
  return { code: r.code, out: r.stdout, err: r.stderr };
}

const [n1, n2] = await startCluster(t, 2, { each: [{ keepDataDir: true }] });
if (n1 === undefined || n2 === undefined) throw new Error('cluster did not start');

t.test('validation errors: v4 envelope, v5 status codes, CLI lines', async (t) => {
  const start = (v: string, node: string, body: unknown) => call(n1, 'POST', `/api/${v}/load_rebalance/${node}/evacuation/start`, body);
  const cases: Array<[unknown, string]> = [
    [{ conn_evict_rate: 0 }, 'invalid conn_evict_rate value'],
    [{ sess_evict_rate: 'x' }, 'invalid sess_evict_rate value'],
    [{ wait_takeover: -1 }, 'invalid wait_takeover value'],
    [{ redirect_to: 1 }, 'invalid string in server_reference'],
    [{ foo: 1 }, 'Unknown evacuation param: foo'],
    [{ migrate_to: ['nope@127.0.0.1'] }, "unavailable nodes in migrate_to: ['nope@127.0.0.1']"],
    [{ migrate_to: [n1.name] }, `unavailable nodes in migrate_to: ['${n1.name}']`],
    [{ migrate_to: [] }, 'no available nodes list in migrate_to: []'],
  ];
  for (const [body, message] of cases) {
    t.same(await start('v4', n1.name, body), { status: 200, json: { code: 400, message } }, `v4 ${message}`);
    t.same(await start('v5', n1.name, body), { status: 400, json: { code: 'BAD_REQUEST', message } }, `v5 ${message}`);
  }
  t.same(await start('v4', 'ghost@127.0.0.1', {}), { status: 200, json: { code: 400, message: 'invalid node: ghost@127.0.0.1' } });
  t.same(await start('v5', 'ghost@127.0.0.1', {}), { status: 404, json: { code: 'NOT_FOUND', message: 'invalid node: ghost@127.0.0.1' } });
  t.same(await call(n1, 'POST', `/api/v4/load_rebalance/${n1.name}/evacuation/stop`), { status: 200, json: { code: 400, message: 'not_started' } });
  t.same(await call(n1, 'POST', `/api/v5/load_rebalance/${n1.name}/evacuation/stop`), { status: 400, json: { code: 'BAD_REQUEST', message: 'not_started' } });
  const unauth = await fetch(`http://127.0.0.1:${n1.mgmtPort}/api/v5/load_rebalance/status`);
  t.equal(unauth.status, 401, 'wrong auth: 401');

  for (const [args, line] of [
    [['--conn-evict-rate', 'x'], 'Rebalance start error: invalid --conn-evict-rate value'],
    [['--foo'], 'Rebalance start error: unknown arguments: ["--foo"]'],
    [['--nodes', 'a@h'], 'Rebalance start error: unknown evacuation arguments: ["--nodes"]'],
    [['--migrate-to', 'nope@127.0.0.1'], "Rebalance start error: invalid --migrate-to, unavailable nodes: ['nope@127.0.0.1']"],
  ] as const) {
    const r = await ctl(n1, 'rebalance', 'start', '--evacuation', ...args);
    t.equal(r.out.trim(), line, line);
    t.equal(r.code, 1, 'non-zero exit');
  }
  const stop = await ctl(n1, 'rebalance', 'stop');
  t.same([stop.out.trim(), stop.code], ['Rebalance is already disabled', 0]);
  t.equal((await ctl(n1, 'rebalance', 'node-status')).out.trim(), 'Rebalance disabled');
  t.same((await call(n1, 'GET', '/api/v4/load_rebalance/global_status')).json, { evacuations: [], rebalances: [] });
});

t.test('evacuate node 1 from node 2 (API), status shapes, refusal, global status, stop', async (t) => {
  const clients: mqtt.MqttClient[] = [];
  for (let i = 0; i < 4; i++) {
    clients.push(await mqtt.connectAsync(`mqtt://127.0.0.1:${n1.mqttPort}`, { clientId: `api-${i}`, protocolVersion: 5, properties: { sessionExpiryInterval: 600 }, clean: false, reconnectPeriod: 0 }));
  }
  t.teardown(() => Promise.all(clients.map((c) => c.endAsync(true))));
  const disconnects: number[] = [];
  for (const c of clients) c.on('disconnect', (p) => disconnects.push(p.reasonCode ?? -1));
  const r = await call(n2, 'POST', `/api/v4/load_rebalance/${n1.name}/evacuation/start`, { conn_evict_rate: 10, wait_takeover: 60, redirect_to: 'other:1883', migrate_to: [n2.name] });
  t.same(r, { status: 200, json: { code: 0, data: [] } }, 'v4 success envelope');
  t.same(await call(n2, 'POST', `/api/v5/load_rebalance/${n1.name}/evacuation/start`, {}), { status: 400, json: { code: 'BAD_REQUEST', message: 'already_started' } });
  const v4 = await call(n1, 'GET', '/api/v4/load_rebalance/status');
  const status = v4.json as Record<string, unknown>;
  t.match(status, {
    status: 'enabled',
    process: 'evacuation',
    connection_eviction_rate: 10,
    session_eviction_rate: 500,
    connection_goal: 0,
    session_goal: 0,
    session_recipients: [n2.name],
    stats: { initial_connected: 4, initial_sessions: 4 },
  });
  t.same(Object.keys(status).sort(), ['connection_eviction_rate', 'connection_goal', 'process', 'session_eviction_rate', 'session_goal', 'session_recipients', 'state', 'stats', 'status']);
  t.same((await call(n1, 'GET', '/api/v5/load_rebalance/status')).json, (await call(n1, 'GET', '/api/v5/load_rebalance/status')).json, 'v5 same raw object');
  const avail = await fetch(`http://127.0.0.1:${n1.mgmtPort}/api/v5/load_rebalance/availability_check`);
  t.same([avail.status, await avail.json()], [503, { code: 'NODE_EVACUATING', message: 'Node Evacuating' }]);

  // A new connect: 5.0 CONNACK 0x9C with the Server Reference, 3.1.1 return code 3, before auth.
  const raw5 = await rawConnect(t, n1.mqttPort);
  raw5.send([0x10, 0x10, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x03, 0x72, 0x35, 0x35]);
  const ack5 = await raw5.read(64);
  t.equal(ack5[0], 0x20, 'CONNACK');
  t.equal(ack5[3], 0x9c, '0x9C Use another server');
  t.ok(ack5.includes(Buffer.from('other:1883')), 'with the Server Reference');
  const raw4 = await rawConnect(t, n1.mqttPort);
  raw4.send([0x10, 0x0f, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x03, 0x72, 0x34, 0x34]);
  t.same([...(await raw4.read(4))], [0x20, 0x02, 0x00, 0x03], '3.1.1: return code 3');

  await waitFor('evicted clients', () => disconnects.length === 4, 5000);
  t.same(disconnects, [0x9c, 0x9c, 0x9c, 0x9c], 'evicted with 0x9C');
  type Global = { evacuations: Array<Record<string, unknown>>; rebalances: unknown[] };
  let g: Global = { evacuations: [], rebalances: [] };
  await waitFor('waiting_takeover in global status', async () => {
    g = (await call(n2, 'GET', '/api/v4/load_rebalance/global_status')).json as Global;
    return g.evacuations[0]?.state === 'waiting_takeover';
  }, 5000);
  t.equal(g.evacuations.length, 1, 'node 2 lists node 1');
  t.match(g.evacuations[0], { node: n1.name, state: 'waiting_takeover', stats: { current_connected: 0 } });
  t.notOk('status' in (g.evacuations[0] as object), 'global entries carry node, not status/process');
  const text = (await ctl(n2, 'rebalance', 'status')).out;
  t.match(text, `${'-'.repeat(68)}\nNode '${n1.name}': evacuation\nRebalance state: waiting_takeover\n`);
  const ns = await ctl(n2, 'rebalance', 'node-status', n1.name);
  t.match(ns.out, /^Rebalance type: evacuation\nRebalance state: waiting_takeover\n/);
  t.match((await ctl(n1, 'rebalance', 'node-status', '--json')).out, /"process": "evacuation"/);

  // kill -9 mid-evacuation: the restarted node refuses from its first accept, and goes on.
  await n1.stop('SIGKILL');
  const again = await startNode(t, { name: n1.name, dataDir: n1.dataDir, mqttPort: n1.mqttPort, mgmtPort: n1.mgmtPort, clusterPort: n1.clusterPort, args: ['--join', address(n2)] });
  // The line is written before the listeners open, but reaches this process through a pipe.
  await waitFor('the evacuation-is-on log line', () => /evacuation is on/.test(again.output()), 5000);
  t.pass('logs that evacuation is on');
  const first = await rawConnect(t, again.mqttPort);
  first.send([0x10, 0x0f, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x03, 0x72, 0x34, 0x34]);
  t.same([...(await first.read(4))], [0x20, 0x02, 0x00, 0x03], 'first connect after restart refused');
  const resumed = (await call(again, 'GET', '/api/v5/load_rebalance/status')).json as Record<string, unknown>;
  t.match(resumed, { status: 'enabled', process: 'evacuation', connection_eviction_rate: 10 });
  t.ok(['evicting_conns', 'waiting_takeover'].includes(resumed.state as string), `resumed at evicting_conns (${String(resumed.state)})`);
  const stopped = await ctl(again, 'rebalance', 'stop');
  t.same([stopped.out.trim(), stopped.code], ['Rebalance(evacuation) stopped', 0]);
  t.equal((await fetch(`http://127.0.0.1:${again.mgmtPort}/api/v4/load_rebalance/availability_check`)).status, 200, 'available again');
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${again.mqttPort}`, { clientId: 'after-stop', reconnectPeriod: 0 });
  t.ok(c.connected, 'connections accepted again');
  await c.endAsync();
  await again.stop('SIGTERM');
  const third = await startNode(t, { name: n1.name, dataDir: n1.dataDir, args: ['--join', address(n2)] });
  t.notMatch(third.output(), /evacuation is on/, 'a stopped evacuation is not resumed');
});
