// `ctl cluster upgrade` (SPEC 12) on real nodes: the checks that refuse before anything starts
// (exit 2), the plan, an upgrade that moves persistent sessions to the new nodes and stops the old
// ones, a second upgrade refused while one runs, a run continued from what the nodes hold, a new
// node failing mid-upgrade and a timeout (exit 1, the evacuation left on, resume and roll back
// lines), and an interrupted run that leaves no lease behind.
import { join } from 'node:path';
import mqtt from 'mqtt';
import t from 'tap';
import { ctl, startCluster, waitFor } from '../cluster/support.js';
import { v5 as api } from '../helpers/admin.js';
import { repoRoot } from '../helpers/build.js';
import type { NodeProcess } from '../helpers/node-process.js';
import { isRunning, run, spawnProcess } from '../helpers/process.js';
import { evacuations, holdClients, members, parkSessions, sessionsOn, statusOf } from './upgrade-support.js';

t.test('bad input: a clear message, exit 2, nothing started', async (t) => {
  const [n1, n2, n3] = (await startCluster(t, 3)) as [NodeProcess, NodeProcess, NodeProcess];
  const cases: Array<[string, string[], RegExp]> = [
    ['unknown --from node', ['--from', 'ghost@127.0.0.1', '--to', n3.name], /unknown nodes, not members of the cluster of .*'ghost@127\.0\.0\.1'/],
    ['a --to node that is not a member', ['--from', n1.name, '--to', `${n3.name} nobody@127.0.0.1`], /unknown nodes.*'nobody@127\.0\.0\.1'/],
    ['a node in both lists', ['--from', `${n1.name} ${n2.name}`, '--to', `${n3.name},${n2.name}`], new RegExp(`nodes in both --from and --to: \\['${n2.name}'\\]`)],
    ['an empty --from', ['--from', '', '--to', n3.name], /--from is empty/],
    ['an empty --to', ['--from', n1.name, '--to', ' , '], /--to is empty/],
    ['the API node in --from', ['--from', n3.name, '--to', n1.name], /the node this command talks to, is in --from/],
    ['a bad rate', ['--from', n1.name, '--to', n3.name, '--conn-evict-rate', '0'], /invalid --conn-evict-rate value/],
  ];
  for (const [what, args, message] of cases) {
    const r = await ctl(n3, ['cluster', 'upgrade', ...args]);
    t.equal(r.code, 2, `${what}: exit 2`);
    t.match(r.stderr, message, `${what}: ${r.stderr.trim()}`);
  }
  const missing = await ctl(n3, ['cluster', 'upgrade', '--to', n1.name]);
  t.equal(missing.code, 2, 'no --from: a usage error');
  t.match(missing.stderr, /Missing required argument: from/);
  for (const n of [n1, n2, n3]) t.same(await evacuations(n), [], `nothing started (seen from ${n.name})`);

  // A --to node that is a member but down.
  await n2.stop();
  await waitFor('node 2 seen down', async () => ((await api(n3, 'GET', '/cluster')) as { stopped_nodes: string[] }).stopped_nodes.includes(n2.name), 15_000);
  const down = await ctl(n3, ['cluster', 'upgrade', '--from', n1.name, '--to', `${n3.name} ${n2.name}`]);
  t.equal(down.code, 2);
  t.match(down.stderr, new RegExp(`--to nodes not running: \\['${n2.name}'\\]`));
  const downFrom = await ctl(n3, ['cluster', 'upgrade', '--from', n2.name, '--to', n3.name]);
  t.equal(downFrom.code, 2);
  t.match(downFrom.stderr, /--from nodes not reachable/);
  t.same(await evacuations(n3), [], 'still nothing started');
});

t.test('dry run, upgrade of two old nodes, a second upgrade refused meanwhile, the old ones stopped', async (t) => {
  const nodes = await startCluster(t, 4);
  const [o1, o2, n1, n2] = nodes as [NodeProcess, NodeProcess, NodeProcess, NodeProcess];
  const topic = 'up/q1';
  const parked = [...(await parkSessions(o1, 'pa', 5, topic)), ...(await parkSessions(o2, 'pb', 5, topic))];
  await holdClients(t, o1, 'ha', 30);
  await holdClients(t, o2, 'hb', 30);
  const from = `${o1.name} ${o2.name}`;
  const to = `${n1.name} ${n2.name}`;

  const dry = await ctl(n1, ['cluster', 'upgrade', '--from', from, '--to', to, '--conn-evict-rate', '10', '--wait-takeover', '1', '--dry-run']);
  t.equal(dry.code, 0, dry.stderr);
  t.match(dry.stdout, /Upgrade plan: 2 old nodes/);
  t.match(dry.stdout, new RegExp(`1\\. ${o1.name}: serving, 30 connections, 35 sessions, about 5 s`), 'the plan counts and times node 1 (30/10 + 1 + 35/500, rounded up)');
  t.match(dry.stdout, new RegExp(`2\\. ${o2.name}: serving, 30 connections, 35 sessions`));
  t.same(await evacuations(n1), [], 'a dry run starts nothing');

  // QoS 1 messages to the parked sessions while they move.
  const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${n1.mqttPort}`, { clientId: 'up-pub', reconnectPeriod: 0 });
  t.teardown(() => pub.endAsync(true));
  for (let i = 0; i < 10; i++) await pub.publishAsync(topic, String(i), { qos: 1 });

  const proc = spawnProcess({
    name: 'upgrade',
    command: process.execPath,
    args: [join(repoRoot, 'bin', 'tidemq'), 'ctl', '--api', `http://127.0.0.1:${n1.mgmtPort}`, 'cluster', 'upgrade', '--from', from, '--to', to, '--conn-evict-rate', '10', '--sess-evict-rate', '20', '--wait-takeover', '1', '--json'],
  });
  t.teardown(() => proc.stop());
  await waitFor('node 1 evacuating', async () => (await statusOf(n1, o1.name)).status === 'enabled', 10_000);
  const second = await ctl(n2, ['cluster', 'upgrade', '--from', o2.name, '--to', n2.name]);
  t.equal(second.code, 2, 'a second upgrade while one runs: exit 2');
  t.match(second.stderr, /an upgrade is already running on .* \(holder /);
  t.equal((await statusOf(n1, o2.name)).status, 'disabled', 'the second upgrade started nothing');

  const code = await Promise.race([proc.exited, new Promise<'slow'>((r) => setTimeout(() => r('slow'), 60_000))]);
  t.equal(code, 0, `the upgrade ends with exit 0: ${proc.stderr()}`);
  const steps = proc.stdout().trim().split('\n').map((l) => JSON.parse(l) as { step: string; node?: string; how?: string; state?: string; stopped?: boolean });
  t.same(steps.filter((s) => s.step === 'evacuation').map((s) => [s.node, s.how]), [[o1.name, 'started'], [o2.name, 'started']], 'one node at a time, in order');
  t.same(steps.filter((s) => s.step === 'left').map((s) => [s.node, s.stopped]), [[o1.name, true], [o2.name, true]]);
  t.equal(steps.at(-1)?.step, 'done');
  const states = steps.filter((s) => s.step === 'state' && s.node === o1.name).map((s) => s.state);
  t.equal(states.at(-1), 'prohibiting', `node 1 went through ${states.join(' -> ')}`);
  // o1 is done (left) before o2's evacuation starts.
  const idx = (step: string, node: string): number => steps.findIndex((s) => s.step === step && s.node === node);
  t.ok(idx('left', o1.name) < idx('evacuation', o2.name), 'node 1 left before node 2 was evacuated');

  await waitFor('both old processes exited', () => !isRunning(o1.pid) && !isRunning(o2.pid), 20_000);
  t.same([await o1.stop(), await o2.stop()], [0, 0], 'they stopped gracefully (exit 0)');
  t.match(o1.output(), /stop requested over the management API/);
  t.same(await members(n1), [n1.name, n2.name].sort(), 'only the new nodes are members');
  t.same(await members(n2), [n1.name, n2.name].sort());
  const moved = [...(await sessionsOn(n1)), ...(await sessionsOn(n2))].filter((id) => id.startsWith('p'));
  t.same(moved.sort(), parked.sort(), 'every persistent session is on the new nodes');

  // Each moved session delivers every QoS 1 message published before and during the move.
  for (const id of parked) {
    const got = new Set<string>();
    const holder = (await sessionsOn(n1)).includes(id) ? n1 : n2;
    const c = mqtt.connect(`mqtt://127.0.0.1:${holder.mqttPort}`, { clientId: id, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 600 }, reconnectPeriod: 0 });
    c.on('message', (_t, p) => got.add(p.toString()));
    await waitFor(`${id} gets 10 messages`, () => got.size === 10, 10_000);
    await c.endAsync();
  }
  t.pass('no QoS 1 message lost');
});

t.test('continue from what the nodes hold; a new node failing stops the upgrade with resume and roll back lines', async (t) => {
  const nodes = await startCluster(t, 4);
  const [o1, o2, n1, n2] = nodes as [NodeProcess, NodeProcess, NodeProcess, NodeProcess];
  // o1 was emptied by an earlier, interrupted run: prohibiting with nothing left.
  await api(n1, 'POST', `/load_rebalance/${o1.name}/evacuation/start`, { wait_takeover: 0, migrate_to: [n1.name, n2.name] });
  await waitFor('o1 prohibiting', async () => (await statusOf(n1, o1.name)).state === 'prohibiting', 10_000);
  await holdClients(t, o2, 'slow', 16);

  const proc = spawnProcess({
    name: 'upgrade',
    command: process.execPath,
    args: [join(repoRoot, 'bin', 'tidemq'), 'ctl', '--api', `http://127.0.0.1:${n1.mgmtPort}`, 'cluster', 'upgrade', '--from', `${o1.name} ${o2.name}`, '--to', `${n1.name} ${n2.name}`, '--conn-evict-rate', '2', '--wait-takeover', '1', '--no-stop-old'],
  });
  t.teardown(() => proc.stop());
  await waitFor('o2 evicting', async () => (await statusOf(n1, o2.name)).state === 'evicting_conns', 15_000);
  t.match(proc.stdout(), new RegExp(`\\[1/2\\] ${o1.name}: evacuation continued`), 'the emptied node is not evacuated again');
  t.match(proc.stdout(), new RegExp(`\\[1/2\\] ${o1.name}: left the cluster\\n`), 'it left (no stop: --no-stop-old)');
  t.ok(isRunning(o1.pid), 'with --no-stop-old the old node keeps running');

  await n2.stop();
  const code = await Promise.race([proc.exited, new Promise<'slow'>((r) => setTimeout(() => r('slow'), 20_000))]);
  t.equal(code, 1, 'a new node going down fails the upgrade');
  t.match(proc.stdout(), new RegExp(`Upgrade stopped at ${o2.name} \\(1 of 2 nodes done\\): new nodes went down: \\['${n2.name}'\\]`));
  t.match(proc.stdout(), new RegExp(`Resume: tidemq ctl --api http://127\\.0\\.0\\.1:${n1.mgmtPort} cluster upgrade --from "${o2.name}" --to "${n1.name} ${n2.name}" --conn-evict-rate "2" --wait-takeover "1" --no-stop-old`));
  t.match(proc.stdout(), new RegExp(`Roll back: .*/api/v5/load_rebalance/${encodeURIComponent(o2.name)}/evacuation/stop`));
  t.match(proc.stderr(), /tidemq ctl: upgrade stopped at/);
  t.equal((await statusOf(n1, o2.name)).status, 'enabled', "the current node's evacuation is left in place");

  // Resumed with the surviving new node: it continues the evacuation o2 holds.
  const resumed = await ctl(n1, ['cluster', 'upgrade', '--from', o2.name, '--to', n1.name, '--no-stop-old', '--json']);
  t.equal(resumed.code, 0, resumed.stderr);
  t.match(resumed.stdout, /"step":"evacuation","node":"[^"]+","how":"continued"/);
  t.same(await members(n1), [n1.name, n2.name].sort(), 'o1 and o2 left; n2 is still a (stopped) member');
  t.ok(isRunning(o2.pid), 'with --no-stop-old the old node keeps running');
});

t.test('a timeout, then interrupted (SIGINT): exit 1 with the resume line, the lease released, a new run continues', async (t) => {
  const [o1, n1] = (await startCluster(t, 2)) as [NodeProcess, NodeProcess];
  await holdClients(t, o1, 'int', 12);
  const args = ['cluster', 'upgrade', '--from', o1.name, '--to', n1.name, '--conn-evict-rate', '2', '--wait-takeover', '1'];
  const late = await ctl(n1, [...args, '--timeout', '1']);
  t.equal(late.code, 1, 'past --timeout: exit 1');
  t.match(late.stdout, new RegExp(`Upgrade stopped at ${o1.name} \\(0 of 1 nodes done\\): timed out after 1 s with \\d+ connections and \\d+ sessions left`));
  t.match(late.stdout, /The evacuation of .* stays as it is/);
  t.match(await statusOf(n1, o1.name), { status: 'enabled', state: 'evicting_conns' }, 'the evacuation stays on');
  const proc = spawnProcess({ name: 'upgrade', command: process.execPath, args: [join(repoRoot, 'bin', 'tidemq'), 'ctl', '--api', `http://127.0.0.1:${n1.mgmtPort}`, ...args] });
  t.teardown(() => proc.stop());
  // Its SIGINT handler is in place once it has started or continued the evacuation.
  await waitFor('the upgrade continues the evacuation', () => proc.stdout().includes(`${o1.name}: evacuation continued`), 15_000);
  process.kill(proc.pid, 'SIGINT');
  const code = await Promise.race([proc.exited, new Promise<'slow'>((r) => setTimeout(() => r('slow'), 10_000))]);
  t.equal(code, 1, 'an interrupted upgrade exits 1');
  t.match(proc.stdout(), new RegExp(`Upgrade stopped at ${o1.name} \\(0 of 1 nodes done\\): interrupted`));
  t.match(proc.stdout(), /Resume: tidemq ctl --api .* cluster upgrade --from /);
  t.match(await statusOf(n1, o1.name), { status: 'enabled', process: 'evacuation' }, 'the evacuation stays on');
  // No lease left behind: the same command runs at once and continues the evacuation.
  const again = await run(process.execPath, [join(repoRoot, 'bin', 'tidemq'), 'ctl', '--api', `http://127.0.0.1:${n1.mgmtPort}`, ...args, '--json'], { timeoutMs: 30_000 });
  t.equal(again.code, 0, again.stderr);
  t.match(again.stdout, /"how":"continued"/);
  await waitFor('o1 exited', () => !isRunning(o1.pid), 15_000);
});
