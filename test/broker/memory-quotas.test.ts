// Per-client quotas on a real node, RSS sampled from /proc: subscriptions per client
// (mqtt.max_subscriptions) and the outgoing topic-alias table in bytes (mqtt.max_topic_alias_bytes).
// The measurements: 100 000 subscriptions grew a node by 146 MB, 20 000 aliases of 16 KB
// topics by 400 MB. The full sizes run with TIDEMQ_LONG_TESTS=1, smaller ones here.

import { connect } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import t from 'tap';
import { rawConnect } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';
import { connackMs, LONG, RUNTIME_SLACK_KB, sampleRss } from './flood.js';
import { bytes, connectBytes, rawHandshake, readPacket, waitFor } from './support.js';

const CONNACK_MS = 3000;

async function metric(mgmtPort: number, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${mgmtPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

t.test('subscriptions past max_subscriptions (10 000) get SUBACK 0x80, and memory stays bounded', async (t) => {
  const node = await startNode(t);
  const total = LONG ? 100_000 : 12_000;
  const c = await rawConnect(t, node.mqttPort);
  await rawHandshake(c, 'many-subs', 4);
  const rss = sampleRss(t, node.pid);
  let granted = 0;
  let refused = 0;
  for (let i = 0; i < total; i += 100) {
    const subscriptions = Array.from({ length: 100 }, (_, k) => ({ topic: `subs/${i + k}/+/#`, qos: 1 as const }));
    c.send(bytes({ cmd: 'subscribe', messageId: (i / 100) % 65535 + 1, subscriptions }));
    const suback = (await readPacket(c, 4)) as mqttPacket.ISubackPacket;
    for (const code of suback.granted) {
      if (code === 1) granted++;
      else if (code === 0x80) refused++;
    }
  }
  rss.stop();
  t.equal(granted, 10_000, 'granted up to the quota');
  t.equal(refused, total - 10_000, 'refused past it (3.1.1: 0x80)');
  t.equal(await metric(node.mgmtPort, 'tidemq_limit_hits_total', 'limit="subscriptions"'), total - 10_000, 'counted');
  // About 1.5 kB a subscription (trie node, session map entry, filter string) for 10 000 of them.
  const boundKb = 15_000 + RUNTIME_SLACK_KB;
  t.ok(rss.maxGrowth < boundKb, `RSS grew by ${rss.maxGrowth} kB (bound ${boundKb} kB)`);
  t.match(node.output(), /client hit the subscriptions limit/, 'logged once');
  t.equal(node.output().split('client hit the subscriptions limit').length - 1, 1, 'only once for the client');
  const probe = await rawConnect(t, node.mqttPort);
  t.ok((await connackMs(probe, 'probe')) < CONNACK_MS, 'a fresh client gets its CONNACK');
});

t.test('outgoing topic aliases of 16 KB topics stop at max_topic_alias_bytes (256 KiB)', async (t) => {
  const node = await startNode(t);
  const topics = LONG ? 20_000 : 400;
  // A plain socket and a streaming parser: the long variant moves 320 MB through it.
  const sub = connect({ host: '127.0.0.1', port: node.mqttPort });
  t.teardown(() => {
    sub.destroy();
  });
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  let received = 0;
  let aliased = 0;
  let subscribed = false;
  parser.on('packet', (p: Packet) => {
    if (p.cmd === 'suback') subscribed = true;
    if (p.cmd !== 'publish') return;
    received++;
    if (p.properties?.topicAlias !== undefined && p.topic !== '') aliased++;
  });
  sub.on('data', (chunk: Buffer) => parser.parse(chunk));
  sub.write(connectBytes('alias-sub', 5, { properties: { topicAliasMaximum: 65535 } }));
  sub.write(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'alias/#', qos: 0 }] }, 5));
  await waitFor(() => subscribed, 'the SUBACK');
  const pub = await rawConnect(t, node.mqttPort);
  await rawHandshake(pub, 'alias-pub', 5);
  const rss = sampleRss(t, node.pid);
  const level = 'x'.repeat(16 * 1024 - 12);
  for (let i = 0; i < topics; i++) {
    pub.send(bytes({ cmd: 'publish', topic: `alias/${String(i).padStart(5, '0')}/${level}`, payload: Buffer.from('a'), qos: 0, retain: false, dup: false }, 5));
    if (i % 200 === 199) await new Promise((r) => setImmediate(r));
  }
  // QoS 0 to a subscriber that lags past its output mark is dropped (counted), not queued.
  const dropped = (): Promise<number> => metric(node.mgmtPort, 'tidemq_messages_dropped_total', 'reason="congested"');
  const deadline = Date.now() + 60_000;
  while (received + (await dropped()) < topics && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  rss.stop();
  t.equal(received + (await dropped()), topics, `every message delivered (${received}) or dropped for a lagging reader (counted)`);
  t.equal(aliased, 16, 'aliases handed out for 16 topics of 16 KiB (256 KiB), the rest sent in full');
  t.ok((await metric(node.mgmtPort, 'tidemq_limit_hits_total', 'limit="topic_alias_bytes"')) > 0, 'counted');
  t.ok(rss.maxGrowth < 256 + RUNTIME_SLACK_KB, `RSS grew by ${rss.maxGrowth} kB`);
});
