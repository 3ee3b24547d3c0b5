// Cluster benchmarks (not a test; run by hand, figures go to the report):
//   forward   QoS 0, 64 B fan-in: P publishers -> 1 subscriber, publishers on node 1 and the
//             subscriber on node 2, beside the same load on one node (the single-node rate)
//   takeover  N persistent sessions created on node 1, then the same client ids connect to node 2
//   hold      3 nodes holding 15000 connections each
//   registry  what a connect costs a cluster of 1, 2, 4 and 8 nodes: N connections made to node 1
//             (each announced to every other node), CPU per connect on node 1 and on each other
//             node (less what the node spends idle); the cluster's connect capacity is its cores
//             over that total
// Usage: node --import=<tap typescript loader> native-bench/scripts/cluster-bench.ts forward|takeover|hold|registry
// Nodes are started here on free loopback ports and stopped by PID.

import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { v5 } from '../../test/helpers/admin.js';
import { num, parseResult } from '../lib/nbench.js';
import { ensureBuilt, repoRoot } from '../../test/helpers/build.js';
import { freePort } from '../lib/ports.js';
import { spawnProcess, type ManagedProcess } from '../../test/helpers/process.js';
import { treeCpuSeconds } from '../lib/proc.js';

const nbench = join(repoRoot, 'native-bench', 'build', 'nbench');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface BenchNode {
  name: string;
  mqtt: number;
  mgmt: number;
  cluster: number;
  proc: ManagedProcess;
  dir: string;
}

async function startNodes(n: number): Promise<BenchNode[]> {
  await ensureBuilt();
  const nodes: BenchNode[] = [];
  for (let i = 0; i < n; i++) {
    const name = `bench${i + 1}@127.0.0.1`;
    const [mqtt, mgmt, cluster] = [await freePort(), await freePort(), await freePort()] as [number, number, number];
    const dir = mkdtempSync(join(tmpdir(), 'tidemq-bench-'));
    const seed = nodes[0];
    const args = [join(repoRoot, 'bin', 'tidemq'), 'start', '--node', name, '--mqtt-port', String(mqtt), '--mgmt-port', String(mgmt),
      '--cluster-port', String(cluster), '--ws-port', '0', '--data-dir', dir, ...(seed === undefined ? [] : ['--join', `${seed.name}:${seed.cluster}`])];
    const proc = spawnProcess({ name, command: process.execPath, args, env: { TIDEMQ_LOG__LEVEL: 'warn', TIDEMQ_MQTT__MAX_CONNECTIONS: '100000' } });
    nodes.push({ name, mqtt, mgmt, cluster, proc, dir });
  }
  for (const node of nodes) while (!(await accepts(node.mqtt))) await sleep(50);
  await sleep(1500); // links up
  return nodes;
}

async function stopNodes(nodes: BenchNode[]): Promise<void> {
  for (const node of nodes) {
    await node.proc.stop();
    rmSync(node.dir, { recursive: true, force: true });
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** An MQTT 3.1.1 connection: CONNECT, wait for CONNACK. */
function mqttConnect(port: number, clientId: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const id = Buffer.from(clientId);
    const body = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 60, id.length >> 8, id.length & 255]), id]);
    const s = connect({ host: '127.0.0.1', port, noDelay: true });
    s.once('error', reject);
    s.once('data', (d: Buffer) => (d[0] === 0x20 && d[3] === 0 ? resolve(s) : reject(new Error(`connack ${d.toString('hex')}`))));
    s.write(Buffer.concat([Buffer.from([0x10, body.length]), body]));
  });
}

function subscribePacket(topic: string): Buffer {
  const t = Buffer.from(topic);
  const body = Buffer.concat([Buffer.from([0, 1, t.length >> 8, t.length & 255]), t, Buffer.from([0])]);
  return Buffer.concat([Buffer.from([0x82, body.length]), body]);
}

/** QoS 0 fan-in: `pubs` publishers on pubPort, one subscriber on subPort. Returns deliveries/s. */
async function fanIn(pubPort: number, subPort: number, pubs: number, seconds: number): Promise<number> {
  const topic = 'bench/fanin';
  const t = Buffer.from(topic);
  const payload = Buffer.alloc(64, 0x61);
  const packet = Buffer.concat([Buffer.from([0x30, 2 + t.length + payload.length, 0, t.length]), t, payload]);
  const batch = Buffer.concat(Array.from({ length: 64 }, () => packet));
  const sub = await mqttConnect(subPort, `bench-sub-${process.pid}`);
  sub.write(subscribePacket(topic));
  await sleep(500); // SUBACK and the route to the other nodes
  let received = 0;
  let bytes = 0;
  let counting = false;
  sub.on('data', (d: Buffer) => {
    bytes += d.length;
    const n = Math.floor(bytes / packet.length);
    bytes -= n * packet.length;
    received += n;
    pump();
  });
  const publishers = await Promise.all(Array.from({ length: pubs }, (_, i) => mqttConnect(pubPort, `bench-pub-${process.pid}-${i}`)));
  let sent = 0;
  // Closed loop, as nbench's fan-in: at most WINDOW messages sent and not yet delivered (small
  // enough that the broker never drops QoS 0 for a congested subscriber).
  const WINDOW = 64 * 128;
  let next = 0;
  function pump(): void {
    while (counting && sent - received < WINDOW) {
      (publishers[next++ % pubs] as Socket).write(batch);
      sent += 64;
    }
  }
  counting = true;
  const started = Date.now();
  const startReceived = received;
  pump();
  await sleep(seconds * 1000);
  const rate = ((received - startReceived) * 1000) / (Date.now() - started);
  counting = false;
  for (const p of publishers) p.destroy();
  sub.destroy();
  return rate;
}

/** Runs f and prints each process's CPU share over it. */
async function withCpu<T>(label: string, nodes: BenchNode[], f: () => Promise<T>): Promise<T> {
  const before = nodes.map((n) => treeCpuSeconds(n.proc.pid));
  const self = process.cpuUsage();
  const started = Date.now();
  const result = await f();
  const wall = (Date.now() - started) / 1000;
  const shares = nodes.map((n, i) => `${n.name} ${Math.round(((treeCpuSeconds(n.proc.pid) - (before[i] as number)) / wall) * 100)}%`);
  const own = process.cpuUsage(self);
  console.log(`${label} CPU: ${shares.join(', ')}, load generator ${Math.round(((own.user + own.system) / 1e6 / wall) * 100)}%`);
  return result;
}

async function runNbench(args: string[], timeoutMs = 120_000): Promise<string> {
  const proc = spawnProcess({ name: 'nbench', command: nbench, args, killAfterMs: 5000 });
  const timer = setTimeout(() => void proc.stop('SIGTERM'), timeoutMs);
  await proc.exited;
  clearTimeout(timer);
  return proc.stdout().split('\n').filter((l) => l.startsWith('RESULT')).join('\n');
}

async function forward(): Promise<void> {
  const [single] = await startNodes(1);
  if (single === undefined) throw new Error('no node');
  const one = await withCpu('single', [single], () => fanIn(single.mqtt, single.mqtt, 10, 5));
  await stopNodes([single]);
  const nodes = await startNodes(2);
  const [a, b] = nodes as [BenchNode, BenchNode];
  const cross = await withCpu('cross', nodes, () => fanIn(a.mqtt, b.mqtt, 10, 5));
  await stopNodes(nodes);
  console.log(`single-node fan-in (10 pubs -> 1 sub, QoS 0, 64 B): ${Math.round(one)} msg/s`);
  console.log(`cross-node forwarding (pubs on node 1, sub on node 2): ${Math.round(cross)} msg/s = ${(cross / one).toFixed(2)}x`);
}

/** The node's session count, from the management API's client list. */
async function sessionCount(node: BenchNode): Promise<number> {
  return ((await v5({ mgmtPort: node.mgmt }, 'GET', '/clients?page=1&limit=1')) as { meta: { count: number } }).meta.count;
}

async function takeover(n: number): Promise<void> {
  const nodes = await startNodes(2);
  const [a, b] = nodes as [BenchNode, BenchNode];
  const create = await runNbench(['conn', '--port', String(a.mqtt), '-n', String(n), '--persistent', '--prefix', 'tk', '--inflight', '500', '--hold', '0']);
  console.log(`create on node 1: ${create}`);
  await sleep(1000);
  const moved = await runNbench(['conn', '--port', String(b.mqtt), '-n', String(n), '--persistent', '--prefix', 'tk', '--inflight', '500', '--hold', '0']);
  console.log(`takeover to node 2: ${moved}`);
  for (const [i, node] of [a, b].entries()) console.log(`sessions on node ${i + 1}: ${await sessionCount(node)}`);
  await stopNodes(nodes);
}

async function hold(perNode: number): Promise<void> {
  const nodes = await startNodes(3);
  const runs = nodes.map((node, i) =>
    runNbench(['conn', '--port', String(node.mqtt), '-n', String(perNode), '--inflight', '200', '--hold', '10', '--prefix', `h${i}`, '--src-hosts', '8'], 300_000),
  );
  const results = await Promise.all(runs);
  for (const [i, r] of results.entries()) console.log(`node ${i + 1}: ${r}`);
  await stopNodes(nodes);
}

/** How long the registry scenario measures the nodes idle, before the connects. */
const IDLE_MS = 3000;

async function registry(n: number): Promise<void> {
  const rows: string[] = [];
  for (const size of [1, 2, 4, 8]) {
    const nodes = await startNodes(size);
    const first = nodes[0] as BenchNode;
    // What each node spends idle (heartbeats, timers) over the same time is not the connects' cost.
    const idleFrom = nodes.map((node) => treeCpuSeconds(node.proc.pid));
    const idleStart = performance.now();
    await sleep(IDLE_MS);
    const idleRate = nodes.map((node, i) => (treeCpuSeconds(node.proc.pid) - (idleFrom[i] as number)) / (performance.now() - idleStart));
    const before = nodes.map((node) => treeCpuSeconds(node.proc.pid));
    const start = performance.now();
    const result = await runNbench(['conn', '--port', String(first.mqtt), '-n', String(n), '--inflight', '64', '--hold', '0', '--prefix', `reg${size}`]);
    await sleep(2000); // the closes and their Unregs
    const wall = performance.now() - start;
    const used = nodes.map((node, i) => treeCpuSeconds(node.proc.pid) - (before[i] as number) - (idleRate[i] as number) * wall);
    // Each connection is announced (Reg) and withdrawn (Unreg) once it closes: both are counted.
    const own = ((used[0] as number) / n) * 1e6;
    const peers = used.slice(1);
    const perPeer = peers.length === 0 ? 0 : (peers.reduce((a, b) => a + b, 0) / peers.length / n) * 1e6;
    const total = own + perPeer * peers.length;
    rows.push(`| ${size} | ${Math.round(num(parseResult(result) ?? {}, 'conn_per_s'))} | ${own.toFixed(1)} | ${peers.length === 0 ? '-' : perPeer.toFixed(1)} | ${total.toFixed(1)} |`);
    console.log(`${size} node(s): ${result}`);
    await stopNodes(nodes);
  }
  console.log(`\n${n} connections to node 1 (3.1.1, clean, 64 in flight), connect and close; CPU per connection, less each node's idle CPU over the same time:\n`);
  console.log('| nodes | conn/s on node 1 | node 1 (us) | each other node (us) | cluster total (us) |');
  console.log('|---|---|---|---|---|');
  for (const row of rows) console.log(row);
}

const mode = process.argv[2];
if (mode === 'forward') await forward();
else if (mode === 'takeover') await takeover(Number(process.argv[3] ?? 5000));
else if (mode === 'hold') await hold(Number(process.argv[3] ?? 15000));
else if (mode === 'registry') await registry(Number(process.argv[3] ?? 10000));
else console.log('usage: bench.ts forward | takeover [n] | hold [per node] | registry [n]');
