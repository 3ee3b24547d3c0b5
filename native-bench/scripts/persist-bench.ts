// Store benchmark (not a test): persistent vs clean connect rate, QoS 1 throughput to a persistent
// subscriber, and store size / RSS for many persistent sessions, against a real node process.
// Build first (npx tsc -p tsconfig.build.json), then run: node --import=file://$PWD/node_modules/@tapjs/typescript/dist/esm/import.mjs native-bench/scripts/persist-bench.ts [sessions]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqttPacket from 'mqtt-packet';
import { repoRoot } from '../../test/helpers/build.js';
import { freePort } from '../lib/ports.js';
import { rssBytes } from '../lib/proc.js';

const SESSIONS = Number(process.argv[2] ?? 15000);

interface Node {
  proc: ChildProcess;
  port: number;
}

async function startNode(dataDir: string, port: number): Promise<Node> {
  const proc = spawn(process.execPath, [join(repoRoot, 'bin', 'tidemq'), 'start', '--node', 'bench@127.0.0.1', '--mqtt-port', String(port), '--mgmt-port', String(await freePort()), '--cluster-port', String(await freePort()), '--data-dir', dataDir], {
    stdio: 'ignore',
    // Room for the throughput run: a subscriber window of 256 and a queue that never drops.
    env: { ...process.env, TIDEMQ_MQTT__MAX_INFLIGHT: '256', TIDEMQ_MQTT__MAX_QUEUED: '1000000' },
  });
  for (let i = 0; i < 300; i++) {
    const s = await openSocket(port).catch(() => undefined);
    if (s !== undefined) {
      s.destroy();
      return { proc, port };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  throw new Error('node did not start');
}

function stopNode(n: Node): Promise<void> {
  return new Promise((resolve) => {
    n.proc.once('close', () => resolve());
    n.proc.kill('SIGTERM');
  });
}

/** The node's RSS in MB (bin/tidemq start waits for the node it relaunched: both counted). */
function rssMb(pid: number): number {
  return rssBytes(pid) / 2 ** 20;
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** A raw client: packets in through mqtt-packet's parser, each to `onPacket`. */
async function client(port: number, clientId: string, clean: boolean, onPacket: (p: mqttPacket.Packet, s: Socket) => void): Promise<Socket> {
  const s = await openSocket(port);
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  parser.on('packet', (p) => onPacket(p, s));
  parser.on('error', (err) => console.log(`${clientId}: unparsable packet from the broker: ${err.message}`));
  s.on('data', (chunk: Buffer) => parser.parse(chunk));
  s.on('error', () => undefined);
  s.write(mqttPacket.generate({ cmd: 'connect', protocolVersion: 4, clientId, clean, keepalive: 0 }));
  return s;
}

/** Connects `count` clients, `concurrency` at a time; each sends `extra` packets after CONNACK and
 *  closes after the last ack (or at once). Returns connects per second. */
async function connectMany(port: number, count: number, clean: boolean, prefix: string, subscriptions: number, keep: Socket[] | null): Promise<number> {
  const concurrency = 100;
  let next = 0;
  const started = process.hrtime.bigint();
  const one = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      client(port, `${prefix}-${i}`, clean, (p, s) => {
        if (p.cmd === 'connack') {
          if (p.returnCode !== 0) reject(new Error(`connack ${p.returnCode}`));
          else if (subscriptions === 0) done(s);
          else s.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: Array.from({ length: subscriptions }, (_, k) => ({ topic: `bench/${i}/${k}/+`, qos: 1 as const })) }));
        } else if (p.cmd === 'suback') done(s);
      }).catch(reject);
      const done = (s: Socket): void => {
        if (keep !== null) keep.push(s);
        else s.end(mqttPacket.generate({ cmd: 'disconnect' }));
        resolve();
      };
    });
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await one(next++);
    }),
  );
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  return count / secs;
}

async function connectRate(port: number, clean: boolean, prefix: string): Promise<number> {
  const keep: Socket[] = [];
  const rate = await connectMany(port, 5000, clean, prefix, 0, keep);
  for (const s of keep) s.end(mqttPacket.generate({ cmd: 'disconnect' }));
  await new Promise((r) => setTimeout(r, 500));
  return rate;
}

/** QoS 1 to one persistent subscriber that acks everything; the publisher keeps `window` unacked. */
async function qos1Throughput(port: number, total: number, window: number): Promise<{ rate: number; received: number }> {
  let received = 0;
  let finish: () => void = () => undefined;
  const all = new Promise<void>((r) => (finish = r));
  const sub = await client(port, 'bench-sub', process.env.SUB_CLEAN === '1', (p, s) => {
    if (p.cmd === 'connack') s.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'tp/#', qos: 1 }] }));
    else if (p.cmd === 'publish') {
      if (p.qos === 1) s.write(mqttPacket.generate({ cmd: 'puback', messageId: p.messageId ?? 0 }));
      if (++received === total) finish();
    }
  });
  await new Promise((r) => setTimeout(r, 300));
  let sent = 0;
  let acked = 0;
  const payload = Buffer.alloc(64, 0x61);
  const started = process.hrtime.bigint();
  const pub = await client(port, 'bench-pub', true, (p, s) => {
    if (p.cmd === 'connack' || p.cmd === 'puback') {
      if (p.cmd === 'puback') acked++;
      const bufs: Buffer[] = [];
      while (sent < total && sent - acked < window) {
        sent++;
        bufs.push(mqttPacket.generate({ cmd: 'publish', topic: 'tp/x', payload, qos: 1, messageId: (sent % 65535) + 1, retain: false, dup: false }));
      }
      if (bufs.length > 0) s.write(Buffer.concat(bufs));
    }
  });
  const progress = setInterval(() => console.log(`sent ${sent} acked ${acked} received ${received}`), 2000);
  await all;
  clearInterval(progress);
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  pub.destroy();
  sub.destroy();
  return { rate: total / secs, received };
}

const dir = mkdtempSync(join(tmpdir(), 'tidemq-bench-'));
try {
  if (process.env.QOS1_ONLY_PORT !== undefined) {
    // Against a node started elsewhere (e.g. under --cpu-prof): the throughput run only.
    const t = await qos1Throughput(Number(process.env.QOS1_ONLY_PORT), Number(process.env.QOS1_TOTAL ?? 200_000), Number(process.env.QOS1_WINDOW ?? 500));
    console.log(`QoS 1 to a persistent subscriber: ${t.rate.toFixed(0)} msg/s (${t.received} received)`);
    process.exit(0);
  }
  const node = await startNode(dir, await freePort());
  const cleanRate = await connectRate(node.port, true, 'clean');
  const persistentRate = await connectRate(node.port, false, 'persistent');
  console.log(`connect rate: clean ${cleanRate.toFixed(0)}/s, persistent ${persistentRate.toFixed(0)}/s, ratio ${(persistentRate / cleanRate).toFixed(2)}`);
  // A window below max_queued (1000): a publisher faster than the subscriber would overflow its queue.
  const t = await qos1Throughput(node.port, Number(process.env.QOS1_TOTAL ?? 200_000), Number(process.env.QOS1_WINDOW ?? 500));
  console.log(`QoS 1 to a persistent subscriber: ${t.rate.toFixed(0)} msg/s (${t.received} received)`);
  const rssBefore = rssMb(node.proc.pid as number);
  const sessRate = await connectMany(node.port, SESSIONS, false, 'many', 10, null);
  await new Promise((r) => setTimeout(r, 2000));
  const rssAfter = rssMb(node.proc.pid as number);
  console.log(`${SESSIONS} persistent sessions x 10 subscriptions created at ${sessRate.toFixed(0)}/s; RSS ${rssBefore.toFixed(0)} -> ${rssAfter.toFixed(0)} MB`);
  await stopNode(node);
  const size = statSync(join(dir, 'lmdb', 'data.mdb')).size / 1024 / 1024;
  const t0 = Date.now();
  const again = await startNode(dir, node.port);
  console.log(`store ${size.toFixed(1)} MB; restart with them loaded in ${Date.now() - t0} ms, RSS ${rssMb(again.proc.pid as number).toFixed(0)} MB`);
  await stopNode(again);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
