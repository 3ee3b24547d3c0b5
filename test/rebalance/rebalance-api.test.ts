// Cluster rebalance through the management API (v4 and v5) and `tidemq ctl rebalance` on a real
// 3-node cluster: validation messages, nothing_to_balance (balanced, single node, 50 vs 0 with abs
// 50), the plan preview, donor and coordinator status shapes, 503 on donors only, refusal after
// the health-check wait, eviction_agent_busy / already_started / not_started, stop, a kill -9 of
// the recipient mid-rebalance aborting it everywhere, and of the coordinator (the donor gives up).
import mqtt, { type MqttClient } from 'mqtt';
import t from 'tap';
import type { NodeProcess } from '../helpers/node-process.js';
import { ctl, startCluster, waitFor } from '../cluster/support.js';
import { SEPARATOR } from '../../src/rebalance/status-format.js';
import { adminRequest as call } from '../helpers/admin.js';


/** One 5.0 CONNECT: the CONNACK's reason code and Server Reference. */
async function tryConnect(port: number, clientId: string): Promise<{ reasonCode: number; serverReference: string | undefined }> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 });
  c.on('error', () => undefined);
  try {
    return await new Promise((resolve, reject) => {
      c.on('packetreceive', (p) => {
        if (p.cmd === 'connack') resolve({ reasonCode: p.reasonCode ?? 0, serverReference: p.properties?.serverReference });
      });
      c.on('close', () => reject(new Error('closed without CONNACK')));
    });
  } finally {
    await c.endAsync(true);
  }
}

const lines = async (node: NodeProcess, ...args: string[]): Promise<{ code: number | null; out: string[] }> => {
  const r = await ctl(node, args);
  return { code: r.code, out: r.stdout.trim().split('\n') };
};

const nodes = await startCluster(t, 3);
const [n1, n2, n3] = nodes as [NodeProcess, NodeProcess, NodeProcess];
const clients: MqttClient[] = [];
t.teardown(() => Promise.all(clients.map((c) => c.endAsync(true))));

t.test('validation messages in v4, v5 and the CLI; stop when idle', async (t) => {
  const start = (v: string, node: string, body: unknown) => call(n1, 'POST', `/api/${v}/load_rebalance/${node}/start`, body);
  const cases: Array<[unknown, string]> = [
    [{ conn_evict_rate: 0 }, 'invalid conn_evict_rate value'],
    [{ abs_conn_threshold: 'x' }, 'invalid abs_conn_threshold value'],
    [{ rel_conn_threshold: 1.0 }, 'invalid rel_conn_threshold value'],
    [{ rel_sess_threshold: 0.5 }, 'invalid rel_sess_threshold value'],
    [{ wait_health_check: -1 }, 'invalid wait_health_check value'],
    [{ foo: 1 }, 'Unknown rebalance param: foo'],
    [{ redirect_to: 'x:1883' }, 'Unknown rebalance param: redirect_to'],
    [{ nodes: ['nope@127.0.0.1', n2.name] }, "unavailable nodes in nodes: ['nope@127.0.0.1']"],
    [{ nodes: [] }, 'no available nodes list in nodes: []'],
  ];
  for (const [body, message] of cases) {
    t.same(await start('v4', n1.name, body), { status: 200, json: { code: 400, message } }, `v4 ${message}`);
    t.same(await start('v5', n1.name, body), { status: 400, json: { code: 'BAD_REQUEST', message } }, `v5 ${message}`);
  }
  t.same(await start('v4', 'ghost@127.0.0.1', {}), { status: 200, json: { code: 400, message: 'invalid node: ghost@127.0.0.1' } });
  t.same(await start('v5', 'ghost@127.0.0.1', {}), { status: 404, json: { code: 'NOT_FOUND', message: 'invalid node: ghost@127.0.0.1' } });
  t.same(await call(n1, 'POST', `/api/v4/load_rebalance/${n2.name}/stop`), { status: 200, json: { code: 400, message: 'not_started' } }, 'stop on another node, idle');
  t.same(await call(n1, 'POST', `/api/v5/load_rebalance/${n1.name}/stop`), { status: 400, json: { code: 'BAD_REQUEST', message: 'not_started' } });
  for (const [args, line] of [
    [['--rel-conn-threshold', '1.0'], 'Rebalance start error: invalid --rel-conn-threshold value'],
    [['--abs-sess-threshold', 'x'], 'Rebalance start error: invalid --abs-sess-threshold value'],
    [['--redirect-to', 'x'], 'Rebalance start error: unknown rebalance arguments: ["--redirect-to"]'],
    [['--nodes', `ghost@127.0.0.1,${n1.name}`], "Rebalance start error: invalid --nodes, unavailable nodes: ['ghost@127.0.0.1']"],
    [['--bar'], 'Rebalance start error: unknown arguments: ["--bar"]'],
  ] as const) {
    const r = await lines(n1, 'rebalance', 'start', ...args);
    t.same(r, { code: 1, out: [line] }, line);
  }
  t.same(await lines(n1, 'rebalance', 'plan', '--conn-evict-rate', '0'), { code: 1, out: ['Rebalance plan error: invalid --conn-evict-rate value'] });
  t.same(await call(n1, 'GET', '/api/v5/load_rebalance/plan?foo=1'), { status: 400, json: { code: 'BAD_REQUEST', message: 'Unknown rebalance param: foo' } });
});

t.test('nothing_to_balance: balanced cluster, single node, 50 vs 0 with abs 50', async (t) => {
  const nothing = { status: 400, json: { code: 'BAD_REQUEST', message: 'nothing_to_balance' } };
  t.same(await call(n1, 'POST', `/api/v5/load_rebalance/${n1.name}/start`, {}), nothing, 'all nodes at 0');
  t.same(await call(n1, 'POST', `/api/v4/load_rebalance/${n1.name}/start`, { nodes: [n2.name] }), { status: 200, json: { code: 400, message: 'nothing_to_balance' } }, 'a single node');
  for (let i = 0; i < 50; i++) clients.push(await mqtt.connectAsync(`mqtt://127.0.0.1:${n1.mqttPort}`, { clientId: `rb-${i}`, protocolVersion: i % 2 === 0 ? 5 : 4, reconnectPeriod: 0 }));
  t.same(await call(n1, 'POST', `/api/v5/load_rebalance/${n1.name}/start`, { nodes: [n1.name, n2.name], abs_conn_threshold: 50, abs_sess_threshold: 50 }), nothing, '50 vs 0, abs 50');
  t.same(await lines(n2, 'rebalance', 'start', '--nodes', `${n1.name} ${n2.name}`, '--abs-conn-threshold', '50', '--abs-sess-threshold', '50'), { code: 1, out: ['Rebalance start error: nothing_to_balance'] });
  const plan = await call(n3, 'GET', `/api/v5/load_rebalance/plan?nodes=${encodeURIComponent(`${n1.name},${n2.name}`)}&abs_conn_threshold=50&abs_sess_threshold=50`);
  t.match(plan.json, { balanced: true, donors: [n1.name], recipients: [n2.name], connection_avg: 25, connections_to_move: 0, eta_seconds: 0 }, 'the plan agrees');
  t.same((await call(n1, 'GET', '/api/v4/load_rebalance/global_status')).json, { evacuations: [], rebalances: [] }, 'nothing started');
});

t.test('a rebalance of 50 vs 0 coordinated by node 3: plan, status shapes, 503 on the donor, refusal, busy, stop', async (t) => {
  const body = { nodes: [n1.name, n2.name], abs_conn_threshold: 10, abs_sess_threshold: 10, conn_evict_rate: 2, wait_health_check: 3, wait_takeover: 60 };
  const plan = await lines(n3, 'rebalance', 'plan', '--nodes', `${n1.name},${n2.name}`, '--abs-conn-threshold', '10', '--conn-evict-rate', '2', '--wait-health-check', '3', '--wait-takeover', '60');
  t.same(plan.out, [
    'Rebalance plan (nothing started):',
    `Nodes: ['${n1.name}','${n2.name}']`,
    `Donor nodes: ['${n1.name}']`,
    `Recipient nodes: ['${n2.name}']`,
    'Average node connection count: 25.0',
    'Current average donor node connection count: 50.0',
    'Current average recipient node connection count: 0.0',
    'Current average donor node session count: 50.0',
    'Current average recipient node session count: 0.0',
    'Connections to move: 25',
    'Disconnected sessions to move: 0',
    'Connection eviction rate: 2 connections/second',
    'Session eviction rate: 500 sessions/second',
    'Estimated time: 76 seconds',
  ]);
  t.same(await call(n1, 'POST', `/api/v4/load_rebalance/${n3.name}/start`, body), { status: 200, json: { code: 0, data: [] } }, 'started on node 3 through node 1');
  t.same(await call(n2, 'POST', `/api/v5/load_rebalance/${n3.name}/start`, body), { status: 400, json: { code: 'BAD_REQUEST', message: 'already_started' } });
  t.same(await call(n1, 'POST', `/api/v5/load_rebalance/${n1.name}/start`, { ...body, nodes: [n1.name, n3.name] }), { status: 400, json: { code: 'BAD_REQUEST', message: 'eviction_agent_busy' } }, 'node 1 is a donor of another rebalance');
  t.same(await call(n1, 'POST', `/api/v5/load_rebalance/${n1.name}/evacuation/start`, {}), { status: 400, json: { code: 'BAD_REQUEST', message: 'eviction_agent_busy' } }, 'a donor cannot evacuate');
  t.equal((await call(n1, 'GET', '/api/v4/load_rebalance/availability_check')).status, 503, 'the donor reports 503 from the start');
  t.equal((await call(n2, 'GET', '/api/v4/load_rebalance/availability_check')).status, 200, 'the recipient serves');
  const early = await mqtt.connectAsync(`mqtt://127.0.0.1:${n1.mqttPort}`, { clientId: 'rb-early', reconnectPeriod: 0 });
  t.ok(early.connected, 'the donor still accepts during wait_health_check');
  await early.endAsync();

  const donor = (await call(n1, 'GET', '/api/v4/load_rebalance/status')).json as Record<string, unknown>;
  t.same(donor, {
    status: 'enabled',
    process: 'rebalance',
    state: 'wait_health_check',
    coordinator_node: n3.name,
    connection_eviction_rate: 2,
    session_eviction_rate: 500,
    connection_goal: 0,
    disconnected_session_goal: 0,
    recipients: [n2.name],
    stats: { initial_connected: 50, current_connected: 50, initial_sessions: 50, current_sessions: 50, current_disconnected_sessions: 0 },
  });
  t.same((await call(n2, 'GET', '/api/v5/load_rebalance/status')).json, { status: 'disabled' }, 'a recipient has no local status');
  t.same((await call(n3, 'GET', '/api/v5/load_rebalance/status')).json, { status: 'disabled' }, 'nor has a coordinator that is not a donor');
  const global = (await call(n2, 'GET', '/api/v5/load_rebalance/global_status')).json;
  t.same(global, {
    evacuations: [],
    rebalances: [
      {
        node: n3.name,
        state: 'wait_health_check',
        coordinator_node: n3.name,
        connection_eviction_rate: 2,
        session_eviction_rate: 500,
        donors: [n1.name],
        recipients: [n2.name],
        connection_goal: 0,
        disconnected_session_goal: 0,
        donor_conn_avg: 50,
        donor_sess_avg: 0,
      },
    ],
  });
  t.same((await lines(n1, 'rebalance', 'node-status')).out, [
    'Rebalance type: rebalance',
    'Rebalance state: wait_health_check',
    `Coordinator node: '${n3.name}'`,
    'Connection eviction rate: 2 connections/second',
    'Session eviction rate: 500 sessions/second',
    'Connection goal: 0.0',
    'Disconnected session goal: 0.0',
    `Recipient nodes: ['${n2.name}']`,
    'Channel statistics:',
    '  current_connected: 50',
    '  current_disconnected_sessions: 0',
    '  current_sessions: 50',
    '  initial_connected: 50',
    '  initial_sessions: 50',
  ]);
  t.same((await lines(n1, 'rebalance', 'status')).out, [
    SEPARATOR,
    `Node '${n3.name}': rebalance coordinator`,
    'Rebalance state: wait_health_check',
    `Coordinator node: '${n3.name}'`,
    `Donor nodes: ['${n1.name}']`,
    `Recipient nodes: ['${n2.name}']`,
    'Connection eviction rate: 2 connections/second',
    'Session eviction rate: 500 sessions/second',
    'Connection goal: 0.0',
    'Disconnected session goal: 0.0',
    'Current average donor node connection count: 50.0',
    'Current average donor node disconnected session count: 0.0',
  ]);

  await waitFor('evicting_conns', async () => ((await call(n1, 'GET', '/api/v5/load_rebalance/status')).json as { state: string }).state === 'evicting_conns', 6000);
  const refused = await tryConnect(n1.mqttPort, 'rb-refused');
  t.equal(refused.reasonCode, 0x9c, '5.0 CONNACK 0x9C after the health-check wait');
  t.equal(refused.serverReference, undefined, 'no Server Reference');
  await waitFor('evictions', () => clients.filter((c) => !c.connected).length >= 2, 5000);
  t.ok(clients.filter((c) => !c.connected).length <= 6, 'evicted at 2/s');
  t.same(await lines(n3, 'rebalance', 'stop'), { code: 0, out: ['Rebalance stopped'] });
  t.same((await call(n1, 'GET', '/api/v5/load_rebalance/global_status')).json, { evacuations: [], rebalances: [] }, 'gone from global status');
  t.equal((await call(n1, 'GET', '/api/v4/load_rebalance/availability_check')).status, 200, 'the donor serves again');
  t.same((await call(n1, 'GET', '/api/v5/load_rebalance/status')).json, { status: 'disabled' });
  const after = await mqtt.connectAsync(`mqtt://127.0.0.1:${n1.mqttPort}`, { clientId: 'rb-after', reconnectPeriod: 0 });
  t.ok(after.connected, 'and accepts connections');
  await after.endAsync();
  t.same(await lines(n3, 'rebalance', 'stop'), { code: 0, out: ['Rebalance is already disabled'] });
});

t.test('kill -9 of the recipient mid-rebalance: aborted everywhere, the donor accepts again', async (t) => {
  const live = clients.filter((c) => c.connected).length;
  t.ok(live > 20, `${live} clients still on node 1`);
  t.same(await call(n2, 'POST', `/api/v5/load_rebalance/${n2.name}/start`, { nodes: [n1.name, n3.name], abs_conn_threshold: 5, conn_evict_rate: 1, wait_health_check: 0 }), { status: 200, json: {} });
  await waitFor('node 1 refusing', async () => (await tryConnect(n1.mqttPort, 'rb-probe')).reasonCode === 0x9c, 5000);
  const killedAt = Date.now();
  await n3.stop('SIGKILL');
  await waitFor('the rebalance gone from global status', async () => ((await call(n2, 'GET', '/api/v5/load_rebalance/global_status')).json as { rebalances: unknown[] }).rebalances.length === 0, 15_000);
  await waitFor('node 1 available', async () => (await call(n1, 'GET', '/api/v4/load_rebalance/availability_check')).status === 200, 15_000);
  const back = await tryConnect(n1.mqttPort, 'rb-back');
  t.equal(back.reasonCode, 0, `node 1 accepts connections again ${Date.now() - killedAt} ms after the kill (rpc timeout 15 s)`);
  t.ok(Date.now() - killedAt < 15_000, 'within the timeout');
  t.same((await call(n1, 'GET', '/api/v5/load_rebalance/status')).json, { status: 'disabled' });
});

t.test('kill -9 of the coordinator: the donor gives up on its own within the heartbeat timeout', async (t) => {
  const live = clients.filter((c) => c.connected).length;
  t.ok(live > 10, `${live} clients still on node 1`);
  t.same(await call(n2, 'POST', `/api/v5/load_rebalance/${n2.name}/start`, { nodes: [n1.name, n2.name], abs_conn_threshold: 5, conn_evict_rate: 1, wait_health_check: 60 }), { status: 200, json: {} });
  t.equal((await call(n1, 'GET', '/api/v4/load_rebalance/availability_check')).status, 503, 'node 1 is a donor');
  const killedAt = Date.now();
  await n2.stop('SIGKILL');
  await waitFor('node 1 available', async () => (await call(n1, 'GET', '/api/v4/load_rebalance/availability_check')).status === 200, 10_000);
  const took = Date.now() - killedAt;
  t.ok(took <= 5000 + 1000, `node 1 gave up ${took} ms after the kill (heartbeat timeout 5 s)`);
  t.same((await call(n1, 'GET', '/api/v5/load_rebalance/status')).json, { status: 'disabled' });
});
