// Free loopback ports for the processes that tests and benchmarks start (brokers, HAProxy,
// Prometheus), given by number on their command lines.
//
// Not from the kernel's ephemeral range: a port read from listen(0) and closed is free again,
// and any connect() on the machine may take it as its source port before the process it was
// meant for listens there (EADDRINUSE, seen in CI after a test's burst of client connections).
// And claimed across processes (a file per port under the temp dir, naming its owner's pid):
// test files run in parallel, each picking ports.

import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Ports below this are left to the machine's services. */
const LOWEST_PORT = 10_000;
const HIGHEST_PORT = 65_535;
/** Linux's default, where /proc does not say. */
const DEFAULT_EPHEMERAL: PortRange = [32_768, 60_999];
/** One file per claimed port, holding the claiming process's pid. */
export const CLAIMS_DIR = join(tmpdir(), 'tidemq-ports');

/** First and last port, inclusive. */
export type PortRange = readonly [number, number];

/** Parses /proc/sys/net/ipv4/ip_local_port_range ("32768\t60999"). */
export function parsePortRange(text: string): PortRange | undefined {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text);
  if (m === null) return undefined;
  const range: PortRange = [Number(m[1]), Number(m[2])];
  return range[0] <= range[1] ? range : undefined;
}

/** Where connect() picks its source ports on this machine. */
export function ephemeralRange(): PortRange {
  try {
    return parsePortRange(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')) ?? DEFAULT_EPHEMERAL;
  } catch {
    return DEFAULT_EPHEMERAL; // not Linux
  }
}

/** The ranges from LOWEST_PORT up that the ephemeral range leaves. */
export function portPool(ephemeral: PortRange): PortRange[] {
  const pool: PortRange[] = [
    [LOWEST_PORT, Math.min(HIGHEST_PORT, ephemeral[0] - 1)],
    [Math.max(LOWEST_PORT, ephemeral[1] + 1), HIGHEST_PORT],
  ];
  return pool.filter(([lo, hi]) => lo <= hi);
}

const pool = portPool(ephemeralRange());
const poolSize = pool.reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
/** Claims of this process, given up when it exits. */
const claimed = new Set<number>();

process.once('exit', () => {
  for (const port of claimed) {
    try {
      unlinkSync(join(CLAIMS_DIR, String(port)));
    } catch {
      // already gone
    }
  }
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Claims a port for this process: true when no live process holds it. A claim whose owner has
 * died (killed before its exit handler ran) is taken over.
 */
export function claimPort(port: number): boolean {
  if (claimed.has(port)) return false;
  mkdirSync(CLAIMS_DIR, { recursive: true });
  const file = join(CLAIMS_DIR, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      claimed.add(port);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner: number;
    try {
      owner = Number(readFileSync(file, 'utf8'));
    } catch {
      continue; // given up meanwhile: try again
    }
    // An empty file is a claim being written: its owner is alive.
    if (owner === 0 || alive(owner)) return false;
    try {
      unlinkSync(file);
    } catch {
      // another process took the stale claim over first; the next write says who won
    }
  }
  return false;
}

function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * A port outside the ephemeral range, claimed by this process (never handed out twice while it
 * lives, nor to another process) and bindable on `host` a moment ago.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    let i = Math.floor(Math.random() * poolSize);
    let port = 0;
    for (const [lo, hi] of pool) {
      if (i <= hi - lo) {
        port = lo + i;
        break;
      }
      i -= hi - lo + 1;
    }
    // Kept claimed even when some other program listens there: not tried again.
    if (claimPort(port) && (await bindable(host, port))) return port;
  }
  throw new Error(`no free port on ${host} outside the ephemeral range after 1000 attempts`);
}
