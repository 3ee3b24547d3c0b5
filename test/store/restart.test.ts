// Persistent sessions, their queues, inflight messages and retained messages across a node restart,
// graceful and kill -9, with real node processes and MQTT.js clients.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import t, { type Test } from 'tap';
import { repoRoot } from '../helpers/build.js';
import { rawConnect, run } from '../helpers/clients.js';
import { startNode, type NodeProcess } from '../helpers/node-process.js';

const MESSAGES = 500;

function tempDataDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'tidemq-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A node on `dataDir`, restartable on the same ports. */
function nodeOn(t: Test, dataDir: string, prev?: NodeProcess): Promise<NodeProcess> {
  return startNode(t, {
    name: 'restart@127.0.0.1',
    dataDir,
    keepDataDir: true,
    ...(prev === undefined ? {} : { mqttPort: prev.mqttPort, mgmtPort: prev.mgmtPort, clusterPort: prev.clusterPort }),
  });
}

interface Session {
  client: MqttClient;
  sessionPresent: boolean;
  received: IPublishPacket[];
}

/** Connects with the message handler in place before CONNACK (queued messages follow it at once). */
function connect(t: Test, port: number, opts: IClientOptions): Promise<Session> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  t.teardown(() => client.endAsync(true));
  const received: IPublishPacket[] = [];
  // Raw arrivals, in order: MQTT.js emits 'message' for QoS 2 only at PUBREL.
  client.on('packetreceive', (packet) => {
    if (packet.cmd === 'publish') received.push(packet);
  });
  return new Promise((resolve, reject) => {
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent, received }));
    client.once('error', reject);
  });
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const v5: IClientOptions = { clientId: 'persist-v5', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } };
const v311: IClientOptions = { clientId: 'persist-v311', protocolVersion: 4, clean: false };

/** Message i goes to r/q1 at QoS 1 (even i) or r/q2 at QoS 2 (odd i); payload is i. */
async function publishAll(port: number): Promise<void> {
  const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, clientId: 'publisher' });
  // In windows of 16: the broker bounds a publisher's unreleased QoS 2 ids by max_inflight (32).
  for (let i = 0; i < MESSAGES; i += 16) {
    const acks: Array<Promise<unknown>> = [];
    for (let j = i; j < Math.min(i + 16, MESSAGES); j++) acks.push(pub.publishAsync(j % 2 === 0 ? 'r/q1' : 'r/q2', String(j), { qos: j % 2 === 0 ? 1 : 2 }));
    await Promise.all(acks);
  }
  await pub.endAsync();
}

/** The 5.0 client takes the first window of messages and acknowledges none of them. */
async function takeWithoutAcking(t: Test, port: number): Promise<number> {
  const raw = await rawConnect(t, port);
  raw.send(mqttPacket.generate({ cmd: 'connect', protocolVersion: 5, clientId: 'persist-v5', clean: false, keepalive: 60, properties: { sessionExpiryInterval: 300, receiveMaximum: 20 } }));
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  let publishes = 0;
  parser.on('packet', (p) => {
    if (p.cmd === 'publish') publishes++;
  });
  raw.socket.on('data', (chunk: Buffer) => parser.parse(chunk));
  await waitFor('the first window of publishes', () => publishes >= 20);
  return publishes;
}

function payloads(packets: IPublishPacket[]): number[] {
  return packets.map((p) => Number(p.payload.toString()));
}

const all = Array.from({ length: MESSAGES }, (_, i) => i);

for (const how of ['graceful', 'kill -9'] as const) {
  t.test(`persistent sessions survive a ${how} restart with every message, in order`, async (t) => {
    const dataDir = tempDataDir(t);
    let node = await nodeOn(t, dataDir);
    for (const opts of [v5, v311]) {
      const s = await connect(t, node.mqttPort, opts);
      t.equal(s.sessionPresent, false);
      await s.client.subscribeAsync({ 'r/q1': { qos: 1 }, 'r/q2': { qos: 2 } });
      await s.client.endAsync();
    }
    await publishAll(node.mqttPort);
    const unacked = await takeWithoutAcking(t, node.mqttPort);
    t.equal(unacked, 20, 'a window of 20 sent and never acknowledged');

    t.equal(await node.stop(how === 'graceful' ? 'SIGTERM' : 'SIGKILL'), how === 'graceful' ? 0 : null);
    node = await nodeOn(t, dataDir, node);

    const a = await connect(t, node.mqttPort, v5);
    const b = await connect(t, node.mqttPort, v311);
    t.equal(a.sessionPresent, true, '5.0 session present');
    t.equal(b.sessionPresent, true, '3.1.1 session present');
    await waitFor('every message', () => a.received.length >= MESSAGES && b.received.length >= MESSAGES);
    await new Promise((r) => setTimeout(r, 300)); // nothing more may come
    t.same(payloads(a.received), all, '5.0: each message exactly once, in order');
    t.same(payloads(b.received), all, '3.1.1: each message exactly once, in order');
    t.same(a.received.slice(0, unacked).map((p) => p.dup), Array(unacked).fill(true), 'unacknowledged inflight redelivered with DUP');
    t.equal(a.received.slice(unacked).filter((p) => p.dup).length, 0, 'the rest without DUP');
    t.same(
      a.received.map((p) => p.qos),
      all.map((i) => (i % 2 === 0 ? 1 : 2)),
      'each with its QoS',
    );
  });
}

t.test('a session with expiry 2 s is gone after restart + 3 s; a longer one stays', async (t) => {
  const dataDir = tempDataDir(t);
  let node = await nodeOn(t, dataDir);
  const short: IClientOptions = { clientId: 'short', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 2 } };
  const long: IClientOptions = { clientId: 'long', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } };
  for (const opts of [short, long]) {
    const s = await connect(t, node.mqttPort, opts);
    await s.client.subscribeAsync('x/#', { qos: 1 });
    await s.client.endAsync();
  }
  await node.stop('SIGTERM');
  node = await nodeOn(t, dataDir, node);
  await new Promise((r) => setTimeout(r, 3000));
  t.equal((await connect(t, node.mqttPort, short)).sessionPresent, false, 'expired');
  t.equal((await connect(t, node.mqttPort, long)).sessionPresent, true, 'still there');
});

t.test('retained messages survive a restart; a zero-length retained publish deletes one', async (t) => {
  const dataDir = tempDataDir(t);
  let node = await nodeOn(t, dataDir);
  const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { reconnectPeriod: 0 });
  await pub.publishAsync('keep/a', 'kept', { qos: 1, retain: true });
  await pub.publishAsync('keep/b', 'deleted', { qos: 1, retain: true });
  await pub.publishAsync('keep/b', '', { qos: 1, retain: true });
  await pub.endAsync();
  await node.stop('SIGKILL');
  node = await nodeOn(t, dataDir, node);
  const s = await connect(t, node.mqttPort, { clientId: 'reader' });
  await s.client.subscribeAsync('keep/#', { qos: 1 });
  await waitFor('the retained message', () => s.received.length >= 1);
  await new Promise((r) => setTimeout(r, 300));
  t.same(
    s.received.map((p) => [p.topic, p.payload.toString(), p.retain]),
    [['keep/a', 'kept', true]],
  );
});

t.test('a corrupt store fails startup with a message naming its path and a non-zero exit', async (t) => {
  const dataDir = tempDataDir(t);
  const node = await nodeOn(t, dataDir);
  const s = await connect(t, node.mqttPort, v311);
  await s.client.subscribeAsync('a', { qos: 1 });
  await s.client.endAsync();
  await node.stop('SIGTERM');
  const data = join(dataDir, 'lmdb', 'data.mdb');
  writeFileSync(data, readFileSync(data).subarray(0, 5000));
  const r = await run(process.execPath, [join(repoRoot, 'bin', 'tidemq'), 'start', '--node', 'corrupt@127.0.0.1', '--mqtt-port', String(node.mqttPort), '--mgmt-port', String(node.mgmtPort), '--cluster-port', String(node.clusterPort), '--data-dir', dataDir], { timeoutMs: 30_000 });
  t.equal(r.timedOut, false);
  t.not(r.code, 0);
  t.match(r.stderr, `session store ${join(dataDir, 'lmdb')}: corrupt or incompatible`);
  t.equal(readFileSync(data).length, 5000, 'the store is left as it was');
});
