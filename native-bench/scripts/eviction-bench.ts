// Evacuation figures (a benchmark, not a test: tap does not pick it up). Against dist/:
//   npm run build && node --import ./node_modules/@tapjs/typescript/dist/esm/import.mjs native-bench/scripts/eviction-bench.ts
// 1. eviction rate accuracy from 10/s to 5000/s (3 s of evictions each, measured by the clients);
// 2. start -> prohibiting for 15000 connections at conn_evict_rate 5000;
// 3. session migration throughput (disconnected persistent sessions moved to a second node).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adminRequest, v5 as api } from '../../test/helpers/admin.js';
import { freePort } from '../lib/ports.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Bench {
  name: string;
  mqtt: number;
  mgmtPort: number;
  cluster: number;
  proc: ChildProcess;
  dir: string;
}

async function start(name: string, join_?: Bench): Promise<Bench> {
  const [mqtt, mgmtPort, cluster] = [await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'tidemq-bench-'));
  const args = ['bin/tidemq', 'start', '--node', name, '--mqtt-port', String(mqtt), '--mgmt-port', String(mgmtPort), '--cluster-port', String(cluster), '--ws-port', '0', '--data-dir', dir];
  if (join_ !== undefined) args.push('--join', `${join_.name}:${join_.cluster}`);
  const proc = spawn(process.execPath, args, { stdio: 'ignore', env: { ...process.env, NODE_OPTIONS: '' } });
  for (let i = 0; i < 100; i++) {
    await sleep(100);
    const ok = await adminRequest({ mgmtPort }, 'GET', '/api/v5/load_rebalance/status').then((r) => r.status === 200, () => false);
    if (ok) break;
  }
  return { name, mqtt, mgmtPort, cluster, proc, dir };
}

async function stop(b: Bench): Promise<void> {
  const exited = new Promise((r) => b.proc.once('exit', r));
  if (b.proc.pid !== undefined) process.kill(b.proc.pid, 'SIGKILL');
  await exited;
  rmSync(b.dir, { recursive: true, force: true });
}

/** A 3.1.1 CONNECT: clean session (or not), keepalive 0. */
function connectPacket(clientId: string, clean: boolean): Buffer {
  const id = Buffer.from(clientId);
  const body = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, clean ? 2 : 0, 0, 0, id.length >> 8, id.length & 255]), id]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

/** n raw MQTT connections, connected (CONNACK read); `closed[i]` gets the time the node closed it. */
async function openClients(b: Bench, n: number, prefix: string, clean: boolean, closed: number[]): Promise<Socket[]> {
  const sockets: Socket[] = [];
  for (let base = 0; base < n; base += 500) {
    const batch: Array<Promise<void>> = [];
    for (let i = base; i < Math.min(n, base + 500); i++) {
      batch.push(
        new Promise<void>((resolve, reject) => {
          const s = connect({ host: '127.0.0.1', port: b.mqtt });
          sockets.push(s);
          s.once('connect', () => s.write(connectPacket(`${prefix}${i}`, clean)));
          s.once('data', () => resolve());
          s.once('error', reject);
          s.on('close', () => closed.push(performance.now()));
        }),
      );
    }
    await Promise.all(batch);
  }
  return sockets;
}

async function waitState(b: Bench, state: string, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const s = (await api(b, 'GET', '/load_rebalance/status')) as { state?: string };
    if (s.state === state) return performance.now();
    await sleep(20);
  }
  throw new Error(`no ${state} within ${timeoutMs} ms`);
}

const single = await start('bench1@127.0.0.1');
try {
  console.log('rate/s   connections  measured/s  error');
  for (const rate of [10, 100, 500, 1000, 2000, 5000]) {
    const n = Math.max(30, rate * 3);
    const closed: number[] = [];
    const sockets = await openClients(single, n, `r${rate}-`, true, closed);
    const t0 = performance.now();
    await api(single, 'POST', `/load_rebalance/${single.name}/evacuation/start`, { conn_evict_rate: rate, wait_takeover: 0 });
    const done = await waitState(single, 'prohibiting', 60_000);
    const sorted = closed.sort((a, b) => a - b);
    const measured = ((sorted.length - 1) * 1000) / ((sorted.at(-1) as number) - (sorted[0] as number));
    console.log(`${String(rate).padEnd(8)} ${String(n).padEnd(12)} ${measured.toFixed(1).padEnd(11)} ${(((measured - rate) / rate) * 100).toFixed(2)}%` + (rate === 5000 ? `   start -> prohibiting ${Math.round(done - t0)} ms` : ''));
    await api(single, 'POST', `/load_rebalance/${single.name}/evacuation/stop`);
    for (const s of sockets) s.destroy();
    await sleep(300);
  }
} finally {
  await stop(single);
}

const a = await start('benchA1@127.0.0.1');
const b2 = await start('benchA2@127.0.0.1', a);
try {
  await sleep(1500); // links up
  for (const n of [2000, 10000]) {
    const closed: number[] = [];
    const sockets = await openClients(a, n, `s${n}-`, false, closed);
    for (const s of sockets) s.end(Buffer.from([0xe0, 0])); // DISCONNECT: persistent sessions stay, disconnected
    await sleep(1000);
    await api(a, 'POST', `/load_rebalance/${a.name}/evacuation/start`, { sess_evict_rate: 100000, wait_takeover: 0 });
    const t0 = await waitState(a, 'evicting_sessions', 30_000);
    const t1 = await waitState(a, 'prohibiting', 120_000);
    const moved = ((await api(b2, 'GET', '/stats')) as Array<Record<string, number>>)[0]?.['sessions.count'];
    console.log(`session migration: ${n} sessions in ${Math.round(t1 - t0)} ms = ${((n * 1000) / (t1 - t0)).toFixed(0)} sessions/s (node 2 now holds ${moved})`);
    await api(a, 'POST', `/load_rebalance/${a.name}/evacuation/stop`);
  }
} finally {
  await stop(b2);
  await stop(a);
}
