// The servers under test, each started alone on a loopback port and stopped by its PID.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { own, stop, waitForPort } from './proc.js';

export const BROKER_IDS = ['tidemq', 'mosquitto', 'aedes', 'ref-node', 'ref-c'] as const;
export type BrokerId = (typeof BROKER_IDS)[number];

/** Reference servers only answer CONNECT, so they take part in the connection scenarios only. */
export function isReference(id: BrokerId): boolean {
  return id === 'ref-node' || id === 'ref-c';
}

export interface Paths {
  root: string; // repository checkout
  build: string; // native-bench/build
}

export interface RunningBroker {
  id: BrokerId;
  pid: number;
  port: number;
  stop(): Promise<void>;
}

const READY_MS = 20000;

/** Why a broker cannot run here, or undefined when it can. Installs Mosquitto if missing. */
export function unavailable(id: BrokerId, paths: Paths): string | undefined {
  if (id === 'tidemq' && !existsSync(join(paths.root, 'bin', 'tidemq'))) return 'bin/tidemq does not exist yet';
  if (id === 'mosquitto' && !hasMosquitto()) {
    try {
      execFileSync('apt-get', ['install', '-y', '-qq', 'mosquitto'], { stdio: 'ignore', timeout: 300000 });
    } catch {
      return 'mosquitto is not installed and `apt-get install -y mosquitto` failed';
    }
    if (!hasMosquitto()) return 'mosquitto is not installed';
  }
  return undefined;
}

function hasMosquitto(): boolean {
  return existsSync('/usr/sbin/mosquitto') || existsSync('/usr/bin/mosquitto');
}

export function mosquittoVersion(): string {
  try {
    return execFileSync('mosquitto', ['-h'], { encoding: 'utf8' }).split('\n')[0] ?? '';
  } catch (err) {
    // `mosquitto -h` exits 3 after printing its usage
    const out = (err as { stdout?: string }).stdout ?? '';
    return out.split('\n')[0] ?? 'unknown';
  }
}

/** @param hostNodes tidemq only: run `start --nodes hostNodes` (the host scenario). */
export async function startBroker(id: BrokerId, paths: Paths, hostNodes = 0): Promise<RunningBroker> {
  const port = await freePort();
  const tmp = mkdtempSync(join(tmpdir(), `nbench-${id}-`));
  let cmd: string;
  let args: string[];
  let mgmtPort = 0;
  switch (id) {
    case 'mosquitto':
      // Nagle off and no connection logging, as every broker here runs; no connection cap
      writeFileSync(
        join(tmp, 'mosquitto.conf'),
        [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'max_connections -1', 'set_tcp_nodelay true',
          'persistence false', 'log_dest none',
          // tidemq's defaults for the memory section: mqtt.max_queued and mqtt.max_queued_bytes
          'max_queued_messages 1000', 'max_queued_bytes 67108864', ''].join('\n'),
      );
      cmd = 'mosquitto';
      args = ['-c', join(tmp, 'mosquitto.conf')];
      break;
    case 'aedes':
      cmd = process.execPath;
      args = [join(paths.build, 'aedes-server.js'), String(port)];
      break;
    case 'ref-node':
      cmd = process.execPath;
      args = [join(paths.build, 'ref-server.js'), String(port)];
      break;
    case 'ref-c':
      cmd = join(paths.build, 'nbench');
      args = ['serve', '--port', String(port)];
      break;
    case 'tidemq':
      cmd = process.execPath;
      mgmtPort = await freePort();
      args = [join(paths.root, 'bin', 'tidemq'), 'start', '--node', 'bench@127.0.0.1', '--mqtt-port', String(port),
        '--mgmt-port', String(mgmtPort), '--cluster-port', String(await freePort()),
        '--ws-port', String(await freePort()), '--data-dir', tmp];
      // Members take management.port + i - 1 and cluster.port + i: a free port starts each range.
      if (hostNodes > 0) args.push('--nodes', String(hostNodes));
      break;
  }
  const child: ChildProcess = own(spawn(cmd, args, { cwd: paths.root, stdio: ['ignore', 'ignore', 'pipe'] }));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (stderr.length < 4000) stderr += d.toString();
  });
  const cleanup = async (): Promise<void> => {
    await stop(child);
    rmSync(tmp, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, READY_MS, () => child.exitCode === null && child.signalCode === null);
    // The port accepts once the first member listens: wait for every member's management port,
    // then a moment for their MQTT listeners (they start right after it).
    const members = id === 'tidemq' ? hostNodes : 0;
    for (let i = 1; i < members; i++) await waitForPort(mgmtPort + i, READY_MS, () => child.exitCode === null && child.signalCode === null);
    if (members > 1) await new Promise((r) => setTimeout(r, 1000));
  } catch (err) {
    await cleanup();
    throw new Error(`${id} did not start: ${(err as Error).message}${stderr ? `; stderr: ${stderr.trim()}` : ''}`);
  }
  if (child.pid === undefined) throw new Error(`${id}: no pid`);
  return { id, pid: child.pid, port, stop: cleanup };
}
