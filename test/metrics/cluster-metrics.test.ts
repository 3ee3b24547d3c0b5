// The cluster's metrics on two real nodes: members up/down, forwarded messages both ways, sessions
// migrated by a cross-node takeover, and the inter-node RPC calls and latency histogram.
import t from 'tap';
import { connectClient } from '../helpers/clients.js';
import type { NodeProcess } from '../helpers/node-process.js';
import { connectListening, startCluster, waitFor } from '../cluster/support.js';
import { parsePrometheus, value, type Family } from './prom-text.js';

const [n1, n2] = await startCluster(t, 2);
if (n1 === undefined || n2 === undefined) throw new Error('cluster did not start');

async function scrape(node: NodeProcess): Promise<Map<string, Family>> {
  const res = await fetch(`http://127.0.0.1:${node.mgmtPort}/metrics`);
  return parsePrometheus(await res.text());
}

t.test('members up, forwards out and in', async (t) => {
  const before1 = await scrape(n1);
  const before2 = await scrape(n2);
  t.equal(value(before1, 'tidemq_cluster_members', { state: 'up' }), 2, 'both nodes up, this one included');
  t.equal(value(before1, 'tidemq_cluster_members', { state: 'down' }), 0);

  const sub = await connectClient(t, n2.mqttPort, { clientId: 'fwd-sub', protocolVersion: 5 });
  await sub.subscribeAsync('fwd/t', { qos: 0 });
  const pub = await connectClient(t, n1.mqttPort, { clientId: 'fwd-pub', protocolVersion: 5 });
  const got = new Promise<void>((resolve) => sub.once('message', () => resolve()));
  // The route reaches node 1 shortly after SUBACK: publish until one arrives (bounded).
  for (let i = 0; i < 50; i++) {
    await pub.publishAsync('fwd/t', 'x', { qos: 0 });
    if (await Promise.race([got.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 100))])) break;
  }
  await got;
  const after1 = await scrape(n1);
  const after2 = await scrape(n2);
  const out = value(after1, 'tidemq_messages_forwarded_total', { direction: 'out' }) - value(before1, 'tidemq_messages_forwarded_total', { direction: 'out' });
  const inn = value(after2, 'tidemq_messages_forwarded_total', { direction: 'in' }) - value(before2, 'tidemq_messages_forwarded_total', { direction: 'in' });
  t.ok(out >= 1, `node 1 forwarded ${out}`);
  t.equal(inn, out, 'node 2 received what node 1 forwarded');
  t.equal(after1.get('tidemq_messages_forwarded_total')?.type, 'counter');
  await sub.endAsync();
  await pub.endAsync();
});

t.test('a cross-node takeover: migrated out of node 1, in to node 2, its RPCs timed', async (t) => {
  const persistent = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 }, clientId: 'migrant' };
  const first = await connectClient(t, n1.mqttPort, persistent);
  await first.subscribeAsync('mig/#', { qos: 1 });
  await first.endAsync();
  const before1 = await scrape(n1);
  const before2 = await scrape(n2);
  const { connack } = await connectListening(t, n2.mqttPort, persistent, () => {});
  t.equal(connack.sessionPresent, true, 'the session moved');
  const after1 = await scrape(n1);
  const after2 = await scrape(n2);
  const d = (a: Map<string, Family>, b: Map<string, Family>, name: string, labels: Record<string, string>): number => value(a, name, labels) - value(b, name, labels);
  t.equal(d(after1, before1, 'tidemq_sessions_migrated_total', { direction: 'out' }), 1, 'node 1: one out');
  t.equal(d(after2, before2, 'tidemq_sessions_migrated_total', { direction: 'in' }), 1, 'node 2: one in');
  t.equal(d(after2, before2, 'tidemq_sessions_migrated_total', { direction: 'out' }), 0);
  t.equal(d(after1, before1, 'tidemq_sessions_taken_over_total', {}), 0, 'no live connection was taken over');
  t.equal(d(after2, before2, 'tidemq_cluster_rpc_calls_total', { method: 'takeover.begin', outcome: 'ok' }), 1);
  t.equal(d(after2, before2, 'tidemq_cluster_rpc_calls_total', { method: 'takeover.end', outcome: 'ok' }), 1);

  const hist = after2.get('tidemq_cluster_rpc_duration_seconds');
  t.equal(hist?.type, 'histogram');
  const count = value(after2, 'tidemq_cluster_rpc_duration_seconds_count', { method: 'takeover.begin' });
  t.ok(count >= 1, `takeover.begin observed ${count} times`);
  const buckets = (hist?.samples ?? []).filter((s) => s.name.endsWith('_bucket') && s.labels.method === 'takeover.begin');
  t.equal(buckets.at(-1)?.labels.le, '+Inf', 'buckets end with +Inf');
  t.equal(buckets.at(-1)?.value, count, '+Inf bucket = count');
  t.ok(buckets.every((b, i) => i === 0 || b.value >= (buckets[i - 1]?.value ?? 0)), 'buckets are cumulative');
  const sum = value(after2, 'tidemq_cluster_rpc_duration_seconds_sum', { method: 'takeover.begin' });
  t.ok(sum > 0 && sum / count < 1, `mean round trip on loopback ${((sum / count) * 1000).toFixed(2)} ms`);
});

t.test('a member that stops counts as down', async (t) => {
  await n2.stop();
  await waitFor('node 1 sees node 2 down', async () => value(await scrape(n1), 'tidemq_cluster_members', { state: 'down' }) === 1, 10_000);
  t.equal(value(await scrape(n1), 'tidemq_cluster_members', { state: 'up' }), 1);
});
