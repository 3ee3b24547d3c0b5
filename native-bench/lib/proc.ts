// Child processes the runner owns (stopped on exit and on Ctrl-C) and /proc readings.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';

const owned = new Set<ChildProcess>();

export function own(child: ChildProcess): ChildProcess {
  owned.add(child);
  child.once('exit', () => owned.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL after graceMs; resolves once the process has exited. */
export function stop(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export async function stopAll(): Promise<void> {
  await Promise.all([...owned].map((c) => stop(c, 2000)));
}

/** Stops every owned process when the runner is interrupted or exits. */
export function stopAllOnExit(): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: stopping ${owned.size} process(es)\n`);
      void stopAll().then(() => process.exit(130));
    });
  }
  process.once('exit', () => {
    for (const c of owned) c.kill('SIGKILL');
  });
}

/** Resolves when host:port accepts a TCP connection; rejects after timeoutMs or if `alive` turns false. */
export async function waitForPort(port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error('process exited before it listened');
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`port ${port} not accepting after ${timeoutMs} ms`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The direct children of a process (a node relaunched with its V8 flags, a launcher's members). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((c) => c !== '').map(Number);
  } catch {
    return []; // gone, or no children file: the process alone
  }
}

/** Sums `read` over a process and its direct children (one that exited meanwhile counts 0). */
function tree(pid: number, read: (pid: number) => number): number {
  let total = read(pid);
  for (const c of childPids(pid)) {
    try {
      total += read(c);
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/** VmRSS of a process in bytes. */
function processRss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m?.[1]) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** VmRSS of a broker in bytes: its process and direct children (bin/tidemq start waits for its relaunched node). */
export function rssBytes(pid: number): number {
  return tree(pid, processRss);
}

const CLK_TCK = 100; // USER_HZ on Linux; /proc/<pid>/stat counts in these

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after the parenthesised command name; utime and stime are fields 14 and 15
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

/** CPU seconds of a process and its direct children, read from /proc. */
export function treeCpuSeconds(pid: number): number {
  return tree(pid, cpuSeconds);
}

/** Established TCP connections whose local port is `port`: the broker's own view. */
export function establishedOnPort(port: number): number {
  const out = execFileSync('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim() !== '').length;
}
