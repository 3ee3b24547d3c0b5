// Bounded memory on a real node under floods (DESIGN principle 4): an offline persistent session
// and a subscriber that stops reading, each under a publisher as fast as the node acknowledges,
// with the node's RSS sampled from /proc. Each case checks the growth against a bound derived from
// the limits, that a fresh client gets its CONNACK promptly during and after, and that every
// acknowledged message that fits the subscriber's bounds arrives. Short floods here; 15 s ones
// with TIDEMQ_LONG_TESTS=1.

import t from 'tap';
import { v5 } from '../helpers/admin.js';
import { rawConnect } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';
import { connackMs, flood, LONG, RUNTIME_SLACK_KB, sampleRss, seqSubscriber } from './flood.js';
import { sleep } from './support.js';

const FLOOD_MS = LONG ? 15_000 : 4_000;
/** 1 KB messages, as in the measurements. */
const SIZE = 1024;
const MAX_QUEUED = 1000;
/** A fresh CONNECT is answered within this even on a loaded 2-core machine. */
const CONNACK_MS = 3000;

/**
 * One second of the same flood before the baseline: a fresh node grows its V8 young generation
 * (up to 3 x 16 MiB semi-spaces) on the first burst of traffic, whatever is bounded or not.
 */
async function warmUp(t: Parameters<typeof flood>[0], port: number, qos: 0 | 1 = 1): Promise<number> {
  const r = await flood(t, { port, clientId: 'warm-up', topic: 'flood/a', size: SIZE, qos, durationMs: 1000 });
  return qos === 1 ? r.acked : r.sent;
}

async function metric(mgmtPort: number, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${mgmtPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

t.test('offline persistent session under a QoS 1 flood: the queue holds max_queued, drops are released', async (t) => {
  const node = await startNode(t);
  const sub = await seqSubscriber(t, node.mqttPort, 'offline-sub', 'flood/#', false);
  sub.socket.end(Buffer.from([0xe0, 0x00]));
  await sub.until(() => sub.isClosed, 'the subscriber to disconnect');
  const warmed = await warmUp(t, node.mqttPort);

  const rss = sampleRss(t, node.pid);
  const probe = await rawConnect(t, node.mqttPort);
  const during = (async () => {
    await sleep(FLOOD_MS / 2);
    return connackMs(probe, 'probe-during');
  })();
  const result = await flood(t, { port: node.mqttPort, clientId: 'flooder', topic: 'flood/a', size: SIZE, qos: 1, durationMs: FLOOD_MS });
  const growth = rss.maxGrowth;
  rss.stop();
  t.ok(result.acked > MAX_QUEUED * 2, `the publisher got ${result.acked} PUBACKs in ${FLOOD_MS} ms`);
  const queueKb = (MAX_QUEUED * (SIZE + 16)) / 1024;
  t.ok(growth < queueKb + RUNTIME_SLACK_KB, `RSS grew by ${growth} kB (bound ${Math.round(queueKb + RUNTIME_SLACK_KB)} kB)`);
  t.ok((await during) < CONNACK_MS, 'a fresh client got its CONNACK promptly during the flood');

  const client = (await v5(node, 'GET', '/clients/offline-sub')) as Record<string, number>;
  t.equal(client.mqueue_len, MAX_QUEUED, 'the queue is at max_queued');
  const total = result.acked + warmed;
  t.equal(client.mqueue_dropped, total - MAX_QUEUED, 'every other message was dropped and counted for the client');
  t.equal(client['send_msg.dropped.queue_full'], total - MAX_QUEUED, 'by reason');
  t.equal(client.mqueue_bytes, MAX_QUEUED * (SIZE + 'flood/a'.length), 'its bytes as max_queued_bytes counts them');
  t.equal(await metric(node.mgmtPort, 'tidemq_messages_dropped_total', 'reason="queue_full"'), total - MAX_QUEUED, 'and in the metrics');
  t.ok((await metric(node.mgmtPort, 'tidemq_limit_hits_total', 'limit="queue"')) > 0);

  const back = await seqSubscriber(t, node.mqttPort, 'offline-sub', 'flood/#', false);
  await back.until(() => back.seqs.length >= MAX_QUEUED, `${MAX_QUEUED} queued messages`);
  const expected = Array.from({ length: MAX_QUEUED }, (_, i) => result.acked - MAX_QUEUED + i);
  t.same(back.seqs.slice(0, MAX_QUEUED), expected, 'the newest max_queued acknowledged messages arrive, in order');
  const after = await rawConnect(t, node.mqttPort);
  t.ok((await connackMs(after, 'probe-after')) < CONNACK_MS, 'and a fresh client after it');
});

t.test('a subscriber that stops reading: output and queue bounded, the newest messages delivered', async (t) => {
  const node = await startNode(t);
  const sub = await seqSubscriber(t, node.mqttPort, 'slow-sub', 'flood/#', true);
  const warmed = await warmUp(t, node.mqttPort);
  await sub.until(() => sub.seqs.at(-1) === warmed - 1, 'the last warm-up message');
  sub.seqs.length = 0;
  sub.socket.pause();

  const rss = sampleRss(t, node.pid);
  const probe = await rawConnect(t, node.mqttPort);
  const during = (async () => {
    await sleep(FLOOD_MS / 2);
    return connackMs(probe, 'probe-during');
  })();
  const result = await flood(t, { port: node.mqttPort, clientId: 'flooder', topic: 'flood/a', size: SIZE, qos: 1, durationMs: FLOOD_MS });
  const growth = rss.maxGrowth;
  rss.stop();
  t.ok(result.acked > MAX_QUEUED * 2, `the publisher got ${result.acked} PUBACKs`);
  // mqtt.max_output_buffer (4 MiB) of unsent output, the queue, the inflight window.
  const boundKb = 4096 + (MAX_QUEUED * (SIZE + 16)) / 1024 + RUNTIME_SLACK_KB;
  t.ok(growth < boundKb, `RSS grew by ${growth} kB (bound ${Math.round(boundKb)} kB)`);
  t.ok((await during) < CONNACK_MS, 'a fresh client got its CONNACK promptly during the flood');
  t.notOk(sub.isClosed, 'still connected: slower than the slow-consumer timeout');
  const queued = (await v5(node, 'GET', '/clients/slow-sub')) as Record<string, number>;
  t.equal(queued.mqueue_len, MAX_QUEUED, 'QoS 1 past the output mark waits in the bounded queue');
  t.ok((queued.mqueue_dropped ?? 0) > 0, `the oldest were dropped (${queued.mqueue_dropped})`);

  sub.socket.resume();
  const last = result.acked - 1;
  await sub.until(() => sub.seqs.includes(last), 'the last acknowledged message', 30_000);
  const got = new Set(sub.seqs);
  const missing = Array.from({ length: MAX_QUEUED }, (_, i) => last - i).filter((s) => !got.has(s));
  t.same(missing, [], `the newest ${MAX_QUEUED} acknowledged messages all arrived (${sub.seqs.length} in all)`);
  const after = await rawConnect(t, node.mqttPort);
  t.ok((await connackMs(after, 'probe-after')) < CONNACK_MS, 'a fresh client gets its CONNACK after the flood');
});

t.test('a subscriber over the output mark for slow_consumer_timeout is disconnected (counted)', async (t) => {
  const node = await startNode(t, { env: { TIDEMQ_MQTT__SLOW_CONSUMER_TIMEOUT: '1s' } });
  const sub = await seqSubscriber(t, node.mqttPort, 'stuck-sub', 'flood/#', true);
  // Warmed up reading (QoS 0 may drop some while it lags), then it stops reading.
  await warmUp(t, node.mqttPort, 0);
  await sleep(500);
  sub.socket.pause();
  const rss = sampleRss(t, node.pid);
  const floodDone = flood(t, { port: node.mqttPort, clientId: 'flooder', topic: 'flood/a', size: SIZE, qos: 0, durationMs: LONG ? 15_000 : 4_000 });
  const deadline = Date.now() + 15_000;
  while ((await metric(node.mgmtPort, 'tidemq_limit_hits_total', 'limit="slow_consumer"')) === 0 && Date.now() < deadline) await sleep(100);
  t.equal(await metric(node.mgmtPort, 'tidemq_limit_hits_total', 'limit="slow_consumer"'), 1, 'closed once it stayed over the mark (counted)');
  await floodDone;
  rss.stop();
  t.ok(rss.maxGrowth < 4096 + RUNTIME_SLACK_KB, `RSS grew by ${rss.maxGrowth} kB`);
  sub.socket.resume();
  await sub.until(() => sub.isClosed, 'the client to see the close');
  t.equal(await metric(node.mgmtPort, 'tidemq_disconnects_total', 'origin="server",reason="quota_exceeded"'), 1, 'as a server disconnect, quota exceeded');
  t.ok((await metric(node.mgmtPort, 'tidemq_messages_dropped_total', 'reason="congested"')) > 0, 'QoS 0 was dropped while it was over the mark');
  t.match(node.output(), /client hit the slow_consumer limit/, 'logged');
});
