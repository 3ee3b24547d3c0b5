// Wills of persistent sessions that expired while the node was down: published when the node
// starts again, once, before the session is discarded; a will already published before the stop
// is not published again. A real node restarted on its store, MQTT.js clients.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type IPublishPacket } from 'mqtt';
import t, { type Test } from 'tap';
import { adminRequest } from '../helpers/admin.js';
import { connectClient } from '../helpers/clients.js';
import { startNode, type NodeProcess } from '../helpers/node-process.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const watcherOpts: IClientOptions = { clientId: 'will-watch', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } };

/**
 * Reconnects the persistent watcher and returns the wills queued for it: everything it receives
 * before a marker published after it connected (queued messages come first).
 */
async function queuedWills(t: Test, node: NodeProcess): Promise<string[]> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${node.mqttPort}`, { reconnectPeriod: 0, connectTimeout: 5000, ...watcherOpts });
  t.teardown(() => client.endAsync(true));
  const received: IPublishPacket[] = [];
  client.on('packetreceive', (p) => {
    if (p.cmd === 'publish') received.push(p);
  });
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const pub = await connectClient(t, node.mqttPort, { protocolVersion: 5 });
  await pub.publishAsync('wills/marker', 'marker', { qos: 1 });
  await waitFor('the marker', () => received.some((p) => p.topic === 'wills/marker'));
  await client.endAsync();
  await pub.endAsync();
  return received.filter((p) => p.topic !== 'wills/marker').map((p) => `${p.topic}:${p.payload.toString()}`);
}

async function clientShown(node: NodeProcess, clientId: string): Promise<unknown[]> {
  const res = (await adminRequest(node, 'GET', `/api/v4/clients/${clientId}`)).json as { data: unknown[] };
  return res.data;
}

t.test('a will pending when the node stopped goes out when it starts again after the session expired, once', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tidemq-will-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const opts = { name: 'wills@127.0.0.1', dataDir, keepDataDir: true };
  let node = await startNode(t, opts);
  const again = (): Promise<NodeProcess> => startNode(t, { ...opts, mqttPort: node.mqttPort, mgmtPort: node.mgmtPort, clusterPort: node.clusterPort });

  const watcher = await connectClient(t, node.mqttPort, watcherOpts);
  await watcher.subscribeAsync('wills/#', { qos: 1 });
  await watcher.endAsync();

  // Published before the stop: a will without delay, on an abnormal end; its session (3 s) is
  // still there at the stop and expires while the node is down.
  const early = await connectClient(t, node.mqttPort, {
    clientId: 'will-early', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3 },
    will: { topic: 'wills/early', payload: Buffer.from('early'), qos: 1, retain: false },
  });
  early.stream.destroy();
  await waitFor('the early will queued for the watcher', async () => {
    const [w] = (await clientShown(node, 'will-watch')) as Array<{ mqueue_len: number }>;
    return w?.mqueue_len === 1;
  });
  // Pending at the stop: a will delay (60 s) longer than its session's expiry (2 s), so the will is
  // due when the session ends [MQTT-3.1.3-9], and that happens while the node is down. The node's
  // shutdown ends the connection server-side (0x8B), which keeps the will.
  await connectClient(t, node.mqttPort, {
    clientId: 'will-late', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 2 },
    will: { topic: 'wills/late', payload: Buffer.from('late'), qos: 1, retain: false, properties: { willDelayInterval: 60 } },
  });
  t.equal(await node.stop('SIGTERM'), 0);
  await sleep(3500); // both sessions expire while the node is down

  node = await again();
  t.same(await clientShown(node, 'will-late'), [], 'the expired session is discarded');
  t.same(await clientShown(node, 'will-early'), []);
  t.same((await queuedWills(t, node)).sort(), ['wills/early:early', 'wills/late:late'], 'the pending will went out at the start; the published one not again');
  t.match(node.output(), /"expired":2/, 'both counted as expired');

  // Once: a second restart publishes nothing.
  t.equal(await node.stop('SIGTERM'), 0);
  node = await again();
  t.same(await queuedWills(t, node), [], 'no will published twice');
});
