// `ctl node drain` and `node undrain`'s other half, and the remote stop the upgrade uses (SPEC 12),
// on real nodes: a drain that empties the node (exit 0) or times out (exit 1, the evacuation stays
// on), and POST /nodes/:node/stop refusing bad input before it makes a node leave and stop.
import t from 'tap';
import { ctl, startCluster, waitFor } from '../cluster/support.js';
import { adminRequest, v5 as api } from '../helpers/admin.js';
import type { NodeProcess } from '../helpers/node-process.js';
import { isRunning } from '../helpers/process.js';
import { holdClients, members, parkSessions, sessionsOn, statusOf } from './upgrade-support.js';

t.test('remote stop: bad input, unknown node, then leave and stop', async (t) => {
  const [a, b] = (await startCluster(t, 2)) as [NodeProcess, NodeProcess];
  const bad = await adminRequest(a, 'POST', `/api/v5/nodes/${b.name}/stop`, { leave: 'yes' });
  t.equal(bad.status, 400);
  t.match(bad.json, { message: 'invalid leave value' });
  const unknown = await adminRequest(a, 'POST', '/api/v5/nodes/ghost@127.0.0.1/stop');
  t.equal(unknown.status, 404);
  const lease = await adminRequest(a, 'PUT', `/api/v5/nodes/${b.name}/upgrade_lease`, { owner: 'x', ttl: -1 });
  t.equal(lease.status, 400);
  t.match(lease.json, { message: 'invalid ttl value' });
  const noAuth = await fetch(`http://127.0.0.1:${a.mgmtPort}/api/v5/nodes/${b.name}/stop`, { method: 'POST' });
  t.equal(noAuth.status, 401, 'credentials needed');
  // A page elsewhere with the operator's cached credentials cannot stop a node or take the lease.
  const authorization = `Basic ${Buffer.from('admin:public').toString('base64')}`;
  for (const [method, path] of [['POST', `/nodes/${b.name}/stop`], ['PUT', `/nodes/${b.name}/upgrade_lease`]] as const) {
    const r = await fetch(`http://127.0.0.1:${a.mgmtPort}/api/v5${path}`, { method, headers: { authorization, origin: 'http://evil.example', 'content-type': 'text/plain' }, body: '{"leave":true,"owner":"x","ttl":30}' });
    t.equal(r.status, 403, `cross-site ${method} ${path}: 403`);
  }
  t.ok(isRunning(b.pid), 'nothing stopped by bad requests');
  t.same(await api(a, 'POST', `/nodes/${b.name}/stop`, { leave: true }), { node: b.name, stopping: true });
  await waitFor('b exited', () => !isRunning(b.pid), 15_000);
  t.same(await members(a), [a.name], 'b left the cluster before stopping');
});


t.test('node drain: empty (exit 0), or timeout (exit 1, the evacuation stays on)', async (t) => {
  const [a, b] = (await startCluster(t, 2)) as [NodeProcess, NodeProcess];
  await holdClients(t, a, 'dr', 10);
  await parkSessions(a, 'drs', 3, 'dr/x');
  const ok = await ctl(a, ['node', 'drain', '--conn-evict-rate', '20', '--wait-takeover', '1', '--timeout', '15']);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, new RegExp(`Draining ${a.name}: evacuation started`));
  t.match(ok.stdout, new RegExp(`Node ${a.name} drained: no connection and no session left`));
  t.match(await statusOf(a, a.name), { state: 'prohibiting', stats: { current_connected: 0, current_sessions: 0 } });
  t.same((await sessionsOn(b)).filter((id) => id.startsWith('drs')), ['drs-0', 'drs-1', 'drs-2'], 'the sessions moved to the other node');

  await holdClients(t, b, 'dt', 5);
  const late = await ctl(b, ['node', 'drain', '--wait-takeover', '60', '--timeout', '2']);
  t.equal(late.code, 1, 'timeout: exit 1');
  t.match(late.stderr, new RegExp(`${b.name} not drained within 2 s: 0 connections and \\d+ sessions left; its evacuation stays on`));
  t.match(await statusOf(b, b.name), { status: 'enabled', process: 'evacuation' }, 'the evacuation stays on');
  const again = await ctl(b, ['node', 'drain', '--timeout', '1']);
  t.match(again.stdout, /evacuation continued/, 'a second drain continues the evacuation');
  const bad = await ctl(b, ['node', 'drain', '--timeout', '-3']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /invalid --timeout value/);
});
