// Startup times of a tidemq executable beside bin/tidemq: the wall time of `--version`, and of
// `start` until its MQTT port accepts a connection (free loopback ports, a temporary data dir).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const RUNS = 3;
const ACCEPT_TIMEOUT_MS = 30_000;
const POLL_MS = 5;

export interface StartupTimes {
  runs: number;
  binary: { version: number; accept: number };
  launcher: { version: number; accept: number };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.floor(sorted.length / 2)] ?? NaN);
}

/** A clean environment: no NODE_OPTIONS (a test runner's hooks), a private HOME and TMPDIR. */
function cleanEnv(dir: string): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, TMPDIR: dir };
}

/** Milliseconds until `command args --version` exits 0. */
async function versionTime(command: string, args: string[], dir: string): Promise<number> {
  const started = process.hrtime.bigint();
  const child = spawn(command, [...args, '--version'], { cwd: dir, env: cleanEnv(dir), stdio: 'ignore' });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`${command} --version exited ${code}`);
  return Number(process.hrtime.bigint() - started) / 1e6;
}

/** Milliseconds from spawning `start` until its MQTT port accepts; then stops it with SIGTERM. */
async function acceptTime(command: string, args: string[], dir: string): Promise<number> {
  const [mqtt, mgmt, cluster] = [await freePort(), await freePort(), await freePort()];
  const flags = ['start', '--node', 'startup@127.0.0.1', '--mqtt-port', String(mqtt), '--mgmt-port', String(mgmt), '--cluster-port', String(cluster), '--ws-port', '0', '--data-dir', join(dir, 'data')];
  const started = process.hrtime.bigint();
  const child = spawn(command, [...args, ...flags], { cwd: dir, env: cleanEnv(dir), stdio: 'ignore' });
  let exited: number | null | undefined;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exited = code;
      resolve();
    }),
  );
  try {
    for (;;) {
      if (await accepts(mqtt)) return Number(process.hrtime.bigint() - started) / 1e6;
      if (exited !== undefined) throw new Error(`${command} start exited ${exited} before accepting`);
      if (Number(process.hrtime.bigint() - started) / 1e6 > ACCEPT_TIMEOUT_MS) throw new Error(`${command} start did not accept within ${ACCEPT_TIMEOUT_MS} ms`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    if (exited === undefined && child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
    await exit;
  }
}

async function measure(command: string, args: string[]): Promise<{ version: number; accept: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'tidemq-startup-'));
  try {
    const version: number[] = [];
    const accept: number[] = [];
    for (let i = 0; i < RUNS; i++) version.push(await versionTime(command, args, dir));
    for (let i = 0; i < RUNS; i++) {
      accept.push(await acceptTime(command, args, dir));
      rmSync(join(dir, 'data'), { recursive: true, force: true });
    }
    return { version: median(version), accept: median(accept) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Measures `binary` and `node launcher` the same way, each alone. */
export async function measureStartup(binary: string, launcher: string): Promise<StartupTimes> {
  return { runs: RUNS, binary: await measure(binary, []), launcher: await measure(process.execPath, [launcher]) };
}
