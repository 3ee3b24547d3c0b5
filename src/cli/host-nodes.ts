// `tidemq start --nodes N|auto`: N cluster nodes on one host behind the same MQTT/TLS/WS/WSS ports.
// The launcher is a node:cluster primary that runs no broker: it forks one worker per member,
// restarts a crashed one on its data dir, and stops them all on SIGTERM/SIGINT. Each worker is a
// whole node (own name, data dir, management and cluster port) that joins its siblings.
//
// Port sharing: node:net listeners in cluster workers share the primary's socket; with SCHED_NONE
// every worker accepts on it itself and the kernel spreads the connections (Node 20's net has no
// SO_REUSEPORT option; it came in 22.12/23.1). uWS (WS/WSS) binds its own socket per worker with
// SO_REUSEPORT, its Linux default, so the kernel spreads those too.
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism, constants } from 'node:os';
import { join } from 'node:path';
import type { Config, StartFlags } from '../config/schema.js';
import type { Logger } from '../log.js';
import { relaunchCommand, V8_FLAGS } from './v8-flags.js';

/** The environment variable that tells a worker which member it is (1..N). */
const MEMBER_ENV = 'TIDEMQ_HOST_MEMBER';
/** Most members one launcher runs. */
export const MAX_NODES = 256;
/** A crashed member waits this long before its first restart, doubling per crash up to RESTART_MAX_MS. */
const RESTART_MIN_MS = 1000;
const RESTART_MAX_MS = 30_000;
/** A member that ran this long before it crashed starts over at RESTART_MIN_MS. */
const STABLE_MS = 60_000;
/** A member exiting with this status has a bad configuration: restarting it cannot help. */
const EXIT_CONFIG = 2;

/** `--nodes`: a count 1..MAX_NODES, or `auto` (the number of cores); undefined when invalid. */
export function parseNodeCount(raw: string): number | undefined {
  if (raw === 'auto') return availableParallelism();
  if (!/^\d+$/.test(raw)) return undefined;
  const n = Number(raw);
  return n >= 1 && n <= MAX_NODES ? n : undefined;
}

/** What member `index` (1..count) is: its name, ports and data dir, derived from the base config. */
export interface Member {
  readonly index: number;
  readonly name: string;
  readonly mgmtPort: number;
  readonly clusterPort: number;
  readonly dataDir: string;
}

/**
 * Member i of `name@host` is `name-i@host`, management port management.port + i - 1, cluster port
 * cluster.port + i (4371.. by default, the conventional port of `name-i`), data dir
 * `<node.data_dir>/<member name>` (./data/<member name> when data_dir is left at its default).
 */
export function members(config: Config, count: number): Member[] {
  const at = config.node.name.indexOf('@');
  const base = config.node.name.slice(0, at);
  const host = config.node.name.slice(at + 1);
  const defaultDir = config.node.data_dir === `./data/${config.node.name}`;
  const list: Member[] = [];
  for (let i = 1; i <= count; i++) {
    const name = `${base}-${i}@${host}`;
    const dataDir = defaultDir ? `./data/${name}` : join(config.node.data_dir, name);
    list.push({ index: i, name, mgmtPort: config.management.port + i - 1, clusterPort: config.cluster.port + i, dataDir });
  }
  return list;
}

/** The start flags of one member: its own name, ports, data dir, and its siblings as seeds. */
export function memberFlags(flags: StartFlags, all: readonly Member[], me: Member): StartFlags {
  const siblings = all.filter((m) => m !== me).map((m) => `${m.name}:${m.clusterPort}`);
  const join = [...siblings, ...(flags.join ?? [])];
  return { ...flags, node: me.name, mgmtPort: me.mgmtPort, clusterPort: me.clusterPort, dataDir: me.dataDir, ...(join.length > 0 ? { join } : {}) };
}

/** The member this process is, when it is a worker of `--nodes`; undefined in the launcher. */
export function memberIndex(env: NodeJS.ProcessEnv = process.env): number | undefined {
  if (!cluster.isWorker) return undefined;
  const raw = env[MEMBER_ENV];
  return raw === undefined ? undefined : Number(raw);
}

interface Slot {
  readonly member: Member;
  worker: Worker | null;
  startedAt: number;
  crashes: number;
  restartTimer: NodeJS.Timeout | null;
}

/**
 * The launcher: forks the members, restarts crashed ones, and on SIGTERM/SIGINT stops them all
 * with SIGTERM; exits 0 once all have stopped cleanly. A second signal kills them at once.
 */
export function runLauncher(config: Config, count: number, log: Logger): void {
  const all = members(config, count);
  // Before any fork: every worker accepts on the shared socket itself (see the top of the file).
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const slots = all.map((member): Slot => ({ member, worker: null, startedAt: 0, crashes: 0, restartTimer: null }));
  let stopping = false;
  let failed = false;

  const fork = (slot: Slot): void => {
    slot.restartTimer = null;
    const env: NodeJS.ProcessEnv = { [MEMBER_ENV]: String(slot.member.index) };
    // The node's V8 flags, given at fork (a user's own value, in NODE_OPTIONS or on node's command line, wins).
    const withFlags = relaunchCommand(V8_FLAGS, { execPath: process.execPath, argv: process.argv, execArgv: process.execArgv, env: process.env, sea: false });
    if (withFlags?.env.NODE_OPTIONS !== undefined) env.NODE_OPTIONS = withFlags.env.NODE_OPTIONS;
    // The siblings take new clients while one is evacuated; a setting of the user's stays.
    if (process.env.TIDEMQ_LISTENERS__STOP_ACCEPTING_ON_EVACUATION === undefined) env.TIDEMQ_LISTENERS__STOP_ACCEPTING_ON_EVACUATION = 'true';
    const worker = cluster.fork(env);
    slot.worker = worker;
    slot.startedAt = Date.now();
    const m = slot.member;
    log.info({ member: m.index, node: m.name, pid: worker.process.pid, mgmt_port: m.mgmtPort, cluster_port: m.clusterPort, data_dir: m.dataDir }, 'member started');
    worker.once('exit', (code, signal) => exited(slot, worker, code, signal));
  };

  const exited = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
    if (slot.worker !== worker) return;
    slot.worker = null;
    const m = slot.member;
    if (stopping) {
      if (code !== 0) failed = true;
      log.info({ member: m.index, node: m.name, code, signal }, 'member stopped');
      if (slots.every((s) => s.worker === null)) process.exit(process.exitCode ?? (failed ? 1 : 0));
      return;
    }
    if (code === EXIT_CONFIG) {
      log.fatal({ member: m.index, node: m.name }, 'member has a bad configuration: stopping all');
      process.exitCode = EXIT_CONFIG;
      stop('SIGTERM');
      return;
    }
    const ran = Date.now() - slot.startedAt;
    slot.crashes = ran >= STABLE_MS ? 1 : slot.crashes + 1;
    const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (slot.crashes - 1));
    log.error({ member: m.index, node: m.name, code, signal, ran_ms: ran, crashes: slot.crashes, restart_in_ms: delay }, 'member exited: restarting it on its data dir');
    slot.restartTimer = setTimeout(fork, delay, slot);
  };

  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: killing the members');
      for (const s of slots) s.worker?.process.kill('SIGKILL');
      process.exit(128 + constants.signals[signal]);
    }
    stopping = true;
    log.info({ signal }, 'stopping all members');
    for (const s of slots) {
      if (s.restartTimer !== null) clearTimeout(s.restartTimer);
      s.restartTimer = null;
      s.worker?.process.kill('SIGTERM');
    }
    if (slots.every((s) => s.worker === null)) process.exit(process.exitCode ?? 0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  log.info({ nodes: count, names: all.map((m) => m.name) }, 'starting the members');
  for (const slot of slots) fork(slot);
}
