// A peer that stops taking forwarded messages (SIGSTOP: its socket fills up): QoS 0 forwards are
// dropped past half cluster.max_link_backlog, and a QoS 1 forward past the whole bound closes the
// link as failed, as for a dead peer, long before the
// heartbeat would notice; the node's RSS stays bounded under the flood, clients keep being served,
// and the link comes back when the peer does.

import t from 'tap';
import { rssKb } from '../broker/support.js';
import { connectClient } from '../helpers/clients.js';
import { countLines, linksUp, metric, startCluster, waitFor } from './support.js';

t.test('QoS 1 forwards to a stalled peer: bounded backlog, the link fails, then heals', async (t) => {
  const [n1, n2] = await startCluster(t, 2, { each: [{ env: { TIDEMQ_CLUSTER__MAX_LINK_BACKLOG: '4MB' } }] });
  if (n1 === undefined || n2 === undefined) throw new Error('no cluster');
  const sub = await connectClient(t, n2.mqttPort, { clientId: 'stalled-sub' });
  const got = new Set<string>();
  sub.on('message', (_topic, payload) => got.add(payload.subarray(0, 16).toString()));
  await sub.subscribeAsync('stall/#', { qos: 1 });
  const pub = await connectClient(t, n1.mqttPort, { clientId: 'stall-pub' });
  await waitFor('the route on n1', async () => {
    await pub.publishAsync('stall/probe', 'probe', { qos: 1 });
    return got.has('probe');
  });

  const before = rssKb(n1.pid);
  let peak = before;
  process.kill(n2.pid, 'SIGSTOP');
  let stopped = true;
  t.teardown(() => {
    if (stopped) process.kill(n2.pid, 'SIGCONT');
  });
  const payload = Buffer.alloc(64 * 1024, 0x62);
  const started = Date.now();
  // QoS 0 first: dropped once the backlog is over half the bound, and the link stays.
  while (Date.now() - started < 2000 && (await metric(n1, 'tidemq_cluster_forwards_dropped_total')) === 0) {
    for (let i = 0; i < 50; i++) await pub.publishAsync('stall/qos0', payload, { qos: 0 });
  }
  t.ok((await metric(n1, 'tidemq_cluster_forwards_dropped_total')) > 0, 'QoS 0 forwards were dropped past half the bound');
  t.equal(await metric(n1, 'tidemq_cluster_link_backlog_failures_total'), 0, 'QoS 0 alone does not fail the link');
  let failedAt = 0;
  let sent = 0;
  // Then QoS 1, within 5 s of the stop (the heartbeat would declare n2 dead then): 1 s more once the link failed.
  while (Date.now() - started < 5000 && (failedAt === 0 || Date.now() - failedAt < 1000)) {
    for (let i = 0; i < 50; i++, sent++) await pub.publishAsync('stall/bulk', payload, { qos: 1 });
    peak = Math.max(peak, rssKb(n1.pid));
    if (failedAt === 0 && (await metric(n1, 'tidemq_cluster_link_backlog_failures_total')) >= 1) failedAt = Date.now();
  }
  const grownMb = (peak - before) / 1024;
  t.ok(failedAt > 0, `the link failed on its backlog after ${failedAt - started} ms (${sent} x 64 KiB published)`);
  t.ok(failedAt - started < 4500, 'before the heartbeat could have noticed');
  t.equal(countLines(n1, /over cluster.max_link_backlog: closing it as failed/), 1, 'one log line');
  t.ok(grownMb < 96, `n1 grew ${grownMb.toFixed(1)} MB at most for a 4 MB bound (${((sent * 64) / 1024).toFixed(0)} MB published)`);
  const fresh = await connectClient(t, n1.mqttPort, { clientId: 'fresh-during', connectTimeout: 2000 });
  t.ok(fresh.connected, 'a fresh client is served meanwhile');

  process.kill(n2.pid, 'SIGCONT');
  stopped = false;
  await waitFor('the link back up', () => countLines(n1, /"msg":"cluster node up"/) >= 2 && linksUp(n1) === 1, 15_000);
  await waitFor('a message across the healed link', async () => {
    await pub.publishAsync('stall/after', 'after the heal', { qos: 1 });
    return got.has('after the heal');
  });
  t.pass('messages cross again once the peer is back');
});
