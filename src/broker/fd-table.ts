// The process's file descriptor table grown once at start, before clients arrive. Linux keeps a
// process's open files in a table it doubles when a new descriptor does not fit (256, 512, ...
// slots, never shrunk), and in a multi-threaded process, as every Node process is, each doubling
// waits for an RCU grace period inside the syscall that needed the slot. For a broker that is an
// accept() on the event loop: measured on the bench (open loop at 5000 conn/s), the node stopped
// for 5-15 ms as its 1024th, 2048th, 4096th and 8192nd connections arrived, and those stalls were
// most of the CONNACK p99 of the Node reference server as well. Opening descriptors up to the size
// the node will need, in a worker thread while the connect path warms up, makes every doubling
// happen there; the descriptors are closed again, the table stays.
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

/** Descriptors a node holds beside its clients' connections: listeners, peers, store, management. */
export const RESERVED_FDS = 1024;
/**
 * The most slots grown at start (64 Ki: 32 Ki descriptors opened, about 0.2 s of the worker's
 * time). A node with more connections still doubles its table past this, once per doubling; by
 * then a stall of one grace period touches well under 0.1% of the connections it has taken.
 */
export const FD_TABLE_CAP = 65_536;

/** The table's current size (`FDSize` of /proc/self/status); undefined where there is none (not Linux). */
export function parseFdSize(status: string): number | undefined {
  const m = /^FDSize:\s+(\d+)$/m.exec(status);
  return m === null ? undefined : Number(m[1]);
}

/** The soft limit on open files (`Max open files` of /proc/self/limits); undefined when not found. */
export function parseOpenFileLimit(limits: string): number | undefined {
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits);
  if (m === null) return undefined;
  return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

/** Slots for a node that may hold `maxConnections` clients, within the open-file limit and the cap. */
export function fdTableGoal(maxConnections: number, openFileLimit: number): number {
  return Math.min(maxConnections + RESERVED_FDS, openFileLimit, FD_TABLE_CAP);
}

function readProc(name: string): string {
  try {
    return readFileSync(`/proc/self/${name}`, 'utf8');
  } catch {
    return '';
  }
}

export interface FdTableGrowth {
  /** Slots before and after (0: no table to read, off Linux). */
  before: number;
  after: number;
  /** Descriptors the worker opened (and closed) to get there. */
  opened: number;
  ms: number;
  /** Why the table could not be grown, when it could not. */
  error?: string;
}

// The table doubles when a descriptor number reaches its size, so a table of `goal` slots or more
// is there once a descriptor at half of `goal` rounded up to a power of two is open. Descriptors
// are handed out lowest first: open until one is that high. EMFILE (the limit met sooner, others
// opening too) ends it where it got.
const WORKER_SOURCE = `
const { openSync, closeSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const fds = [];
let fd = -1;
try {
  while (fd < workerData.highest && fds.length <= workerData.highest) fds.push((fd = openSync('/dev/null', 'r')));
} catch {}
for (const f of fds) closeSync(f);
parentPort.postMessage(fds.length);
`;

/** The smallest power of two >= n. */
function powerOfTwoAtLeast(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(n, 1)));
}

/**
 * Grows this process's descriptor table to at least `goal` slots (rounded to the kernel's power of
 * two) from a worker thread, so that the waits happen on that thread. Resolves with what it did;
 * never rejects (a node whose table stays small only pays the stalls later).
 */
export async function growFdTable(goal: number): Promise<FdTableGrowth> {
  const start = Date.now();
  const before = parseFdSize(readProc('status')) ?? 0;
  const done = (opened: number, error?: string): FdTableGrowth => {
    const after = parseFdSize(readProc('status')) ?? 0;
    return { before, after, opened, ms: Date.now() - start, ...(error === undefined ? {} : { error }) };
  };
  if (before === 0 || before >= goal) return done(0);
  const highest = powerOfTwoAtLeast(goal) / 2;
  return new Promise<FdTableGrowth>((resolve) => {
    let opened = 0;
    let error: string | undefined;
    let worker: Worker;
    try {
      worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { highest } });
    } catch (err) {
      return resolve(done(0, (err as Error).message));
    }
    worker.on('message', (n: number) => (opened = n));
    worker.on('error', (err) => (error = err.message));
    worker.on('exit', () => resolve(done(opened, error)));
  });
}

/** This process's soft open-file limit; undefined where /proc does not say (not Linux). */
export function openFileLimit(): number | undefined {
  return parseOpenFileLimit(readProc('limits'));
}

/** The table this node needs, from its connection limit and the process's open-file limit. */
export function nodeFdTableGoal(maxConnections: number): number {
  return fdTableGoal(maxConnections, openFileLimit() ?? FD_TABLE_CAP);
}
