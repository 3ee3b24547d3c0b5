// Spawn a process, wait until it accepts TCP, stop it by PID. Shared by startNode and by run().

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { Test } from 'tap';
import { childPids } from '../../native-bench/lib/proc.js';

/** Characters of output kept per stream of a process. */
const OUTPUT_CAP = 1 << 20;

/** Children still running, killed if this test process exits without tearing them down. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) if (child.pid !== undefined) killQuietly(child.pid, 'SIGKILL');
});

/**
 * Under tap, every spawn gets tap's processinfo loader in NODE_OPTIONS (it hooks child_process and
 * adds it to any env we pass). `env -u` drops it in the child itself (keeping a NODE_OPTIONS the
 * caller set), then execs the command under the same PID, so nodes run as in production: with the hook node loads the extensionless
 * bin/tidemq as CommonJS, and every start is slower.
 */
function withoutTapHooks(command: string, args: string[], env: Record<string, string> | undefined): [string, string[]] {
  if (!process.env.NODE_OPTIONS?.includes('@tapjs/')) return [command, args];
  const own = env?.NODE_OPTIONS === undefined ? [] : [`NODE_OPTIONS=${env.NODE_OPTIONS}`];
  return ['/usr/bin/env', ['-u', 'NODE_OPTIONS', ...own, command, ...args]];
}

export interface ManagedProcess {
  name: string;
  pid: number;
  /** Sends `signal` by PID, waits for exit (SIGKILL after killAfterMs), returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Everything the process printed so far (stdout+stderr, interleaved as it arrived). */
  output(): string;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code once the process has exited (null when a signal ended it). */
  readonly exited: Promise<number | null>;
}

export interface SpawnOptions {
  /** Label for messages. */
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Data to write to stdin, which is then closed. */
  input?: string;
  /** Grace period after the stop signal before SIGKILL (10 s). */
  killAfterMs?: number;
}

/** Text kept up to OUTPUT_CAP characters; older text is dropped (bounded, like everything else). */
class Capture {
  text = '';
  add(chunk: string): void {
    this.text += chunk;
    if (this.text.length > OUTPUT_CAP) this.text = this.text.slice(-OUTPUT_CAP);
  }
}

/** Spawns a process with its output captured. The caller owns stopping it. */
export function spawnProcess(opts: SpawnOptions): ManagedProcess {
  const [command, args] = withoutTapHooks(opts.command, opts.args, opts.env);
  const child = spawn(command, args, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  const spawnError = new Capture();
  child.on('error', (err) => spawnError.add(String(err))); // without a listener it would throw
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${opts.name}: cannot spawn ${opts.command}`);
  live.add(child);
  const all = new Capture();
  const stdout = new Capture();
  const stderr = new Capture();
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout.add(chunk);
    all.add(chunk);
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr.add(chunk);
    all.add(chunk);
  });
  if (opts.input !== undefined) child.stdin?.end(opts.input);
  let code: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    // 'close' comes after the output streams have ended, so output() is complete by then.
    child.on('close', (c) => {
      code = c;
      live.delete(child);
      resolve(c);
    });
  });
  const killAfterMs = opts.killAfterMs ?? 10_000;
  return {
    name: opts.name,
    pid,
    exited,
    output: () => all.text + spawnError.text,
    stdout: () => stdout.text,
    stderr: () => stderr.text,
    stop: async (signal = 'SIGTERM') => {
      if (code !== undefined) return code;
      killQuietly(pid, signal);
      const timer = setTimeout(() => killQuietly(pid, 'SIGKILL'), killAfterMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

export interface StartOptions extends SpawnOptions {
  /** TCP port that accepts connections once the process is ready. */
  port: number;
  host?: string;
  /** How long to wait for the port (15 s). */
  readyTimeoutMs?: number;
}

/**
 * Spawns a process and waits until `port` accepts TCP. On timeout or early exit it kills the
 * process and throws with its output. Registers t.teardown to stop it.
 */
export async function startProcess(t: Test, opts: StartOptions): Promise<ManagedProcess> {
  const proc = spawnProcess(opts);
  t.teardown(() => proc.stop());
  const host = opts.host ?? '127.0.0.1';
  const timeoutMs = opts.readyTimeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void proc.exited.then((c) => (exitCode = c));
  while (!(await accepts(host, opts.port))) {
    if (exitCode !== undefined) {
      throw new Error(`${opts.name} (pid ${proc.pid}) exited (code ${exitCode}) before accepting TCP on ${host}:${opts.port}; output:\n${proc.output()}`);
    }
    if (Date.now() >= deadline) {
      await proc.stop('SIGKILL');
      throw new Error(`${opts.name} (pid ${proc.pid}) did not accept TCP on ${host}:${opts.port} within ${timeoutMs} ms; output:\n${proc.output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return proc;
}

/** Whether a TCP connection to host:port succeeds (closed again at once). */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/**
 * The process that runs a node started as `bin/tidemq start`: the child it relaunched with its V8
 * flags (src/cli/v8-flags.ts), or `pid` itself when it had them (NODE_OPTIONS) and runs the node.
 */
export function relaunchedPid(pid: number): number {
  const children = childPids(pid);
  return children.length === 1 ? (children[0] as number) : pid;
}

/** A process's state letter from /proc/<pid>/stat (R, S, T stopped, Z zombie...); undefined when it is gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2];
  } catch {
    return undefined;
  }
}

/**
 * Whether a process with this PID exists and has not exited. An exited child of a process that
 * died first waits as a zombie until an init reaps it: that is not running.
 */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const state = processState(pid);
  return state !== undefined && state !== 'Z';
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export interface RunResult {
  /** Exit code, null when a signal ended the process (e.g. the timeout's kill). */
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command to completion; past timeoutMs (10 s) it is stopped by PID and timedOut is set. */
export async function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; input?: string; cwd?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const proc = spawnProcess({ name: cmd, command: cmd, args, killAfterMs: 2000, ...opts });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void proc.stop();
  }, opts.timeoutMs ?? 10_000);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, stdout: proc.stdout(), stderr: proc.stderr(), timedOut };
}
