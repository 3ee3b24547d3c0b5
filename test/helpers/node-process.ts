// Real tidemq nodes for integration tests: free loopback ports, a temp data dir, cleanup on teardown.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import type { Test } from 'tap';
import { ensureBuilt, repoRoot } from './build.js';
import { freePort } from '../../native-bench/lib/ports.js';
import { relaunchedPid, startProcess, type ManagedProcess } from './process.js';

export { ensureBuilt } from './build.js';

export interface NodeProcess {
  name: string;
  mqttPort: number;
  mgmtPort: number;
  clusterPort: number;
  dataDir: string;
  /** The node's own process: the child that bin/tidemq start relaunched with its V8 flags (see relaunchedPid). */
  pid: number;
  /** The process spawned, which waits for that child and passes signals on to it. */
  launcherPid: number;
  /** Sends the signal to the spawned process by PID, waits for exit (SIGKILL after 10 s), returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Everything the process printed so far (stdout+stderr). */
  output(): string;
  /** Resolves with the spawned process's exit code once it and its output have ended. */
  readonly exited: Promise<number | null>;
}

export interface StartNodeOptions {
  name?: string;
  args?: string[];
  env?: Record<string, string>;
  /** Reuse a data dir, e.g. to restart a node on the same store. */
  dataDir?: string;
  /** Leave the data dir in place on teardown (to restart on it). */
  keepDataDir?: boolean;
  mqttPort?: number;
  mgmtPort?: number;
  clusterPort?: number;
  /** The WebSocket listener's port; any free one (0) by default. */
  wsPort?: number;
}

let nodeCount = 0;

/**
 * Spawns `node bin/tidemq start --node <name> --mqtt-port .. --mgmt-port .. --cluster-port ..
 * --ws-port 0 --data-dir <dir> [...args]`, waits until the MQTT port accepts TCP (15 s, then
 * kills it and throws with its output), and on teardown stops it and removes its data dir (unless
 * keepDataDir; only directories under the OS temp dir are ever removed).
 */
export async function startNode(t: Test, opts: StartNodeOptions = {}): Promise<NodeProcess> {
  await ensureBuilt();
  const name = opts.name ?? `tidemq${++nodeCount}@127.0.0.1`;
  const mqttPort = opts.mqttPort ?? (await freePort());
  const mgmtPort = opts.mgmtPort ?? (await freePort());
  const clusterPort = opts.clusterPort ?? (await freePort());
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'tidemq-test-'));
  // Registered before the process's own teardown, so it runs after the process has stopped.
  if (opts.keepDataDir !== true && resolve(dataDir).startsWith(resolve(tmpdir()) + sep)) {
    t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  }
  const args = [
    join(repoRoot, 'bin', 'tidemq'),
    'start',
    '--node', name,
    '--mqtt-port', String(mqttPort),
    '--mgmt-port', String(mgmtPort),
    '--cluster-port', String(clusterPort),
    // WebSocket is on by default: any free port unless given, so parallel nodes do not collide on 8083.
    '--ws-port', String(opts.wsPort ?? 0),
    '--data-dir', dataDir,
    ...(opts.args ?? []),
  ];
  const proc: ManagedProcess = await startProcess(t, {
    name,
    command: process.execPath,
    args,
    cwd: repoRoot,
    port: mqttPort,
    ...(opts.env === undefined ? {} : { env: opts.env }),
  });
  return { name, mqttPort, mgmtPort, clusterPort, dataDir, pid: relaunchedPid(proc.pid), launcherPid: proc.pid, stop: proc.stop, output: proc.output, exited: proc.exited };
}
