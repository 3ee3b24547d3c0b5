// The V8 flags a tidemq node runs with, started as bin/tidemq or as the standalone binary.
// V8 sizes its heap when the process starts, so a process started without them runs the same
// command again in a child that has them, in NODE_OPTIONS, which node and the binary both read
// (Node 20 has no exec, and its standalone binaries carry no node options). The waiting parent
// then acts as `start --nodes`'s launcher does for its members: the first SIGTERM or SIGINT
// becomes one SIGTERM to the node, a second kills it; the node ignores SIGINT and repeats (they
// reach it from its process group or systemd as well) and dies with its parent.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { isSea } from 'node:sea';

/**
 * The young generation at 8 MB semi-spaces instead of Node 20's 16. A scavenge copies what
 * survived since the last one, and during a connect storm that is nearly everything (the new
 * connections' state), so the connections arriving during one wait for it: at 5000 conn/s a node
 * took 10 scavenges of about 6 ms (up to 10) at 16 MB, 20 of about 3.3 ms (up to 5) at 8 MB, and
 * its CONNACK p99 went from 8.1 to 4.6 ms. 4 MB is faster still (3.7 ms) but costs a tenth of the
 * fan-out; 6 and 8 MB cost none beyond the bench's spread (README Performance).
 */
export const V8_FLAGS: readonly string[] = ['--max-semi-space-size=8'];

/** Set in a relaunched child's environment; the child takes it out at once (its own children are no relaunch). */
const RELAUNCHED_ENV = 'TIDEMQ_RELAUNCHED';

/**
 * Whether a command line runs a node that needs the flags: `start` of a single node. The launcher
 * of `start --nodes` gives them to its members at fork (host-nodes.ts); ctl, passwd and the rest
 * are short-lived clients.
 */
export function needsV8Flags(args: readonly string[]): boolean {
  return args[0] === 'start' && !args.some((a) => a === '--nodes' || a.startsWith('--nodes='));
}

/** What a process was started with. */
export interface ProcessStart {
  execPath: string;
  argv: readonly string[];
  execArgv: readonly string[];
  env: NodeJS.ProcessEnv;
  /** The standalone binary: argv[1] is not a script, and node's own options are not parsed. */
  sea: boolean;
}

export interface Relaunch {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** `--max_semi_space_size=4` and `--max-semi-space-size` are the same flag. */
function flagName(flag: string): string {
  return (flag.split('=')[0] ?? flag).replaceAll('_', '-');
}

/**
 * The child that runs this command with `flags`, or undefined when the process has them already.
 * A flag the user set (command line or NODE_OPTIONS), even with another value, is theirs to keep.
 */
export function relaunchCommand(flags: readonly string[], start: ProcessStart): Relaunch | undefined {
  const given = new Set([...start.execArgv, ...(start.env.NODE_OPTIONS ?? '').split(/\s+/)].filter((f) => f !== '').map(flagName));
  const missing = flags.filter((f) => !given.has(flagName(f)));
  if (missing.length === 0) return undefined;
  const nodeOptions = [start.env.NODE_OPTIONS ?? '', ...missing].filter((o) => o !== '').join(' ');
  const args = start.sea ? start.argv.slice(2) : [...start.execArgv, ...start.argv.slice(1)];
  return { command: start.execPath, args, env: { ...start.env, NODE_OPTIONS: nodeOptions } };
}

/**
 * Runs this command again with the flags when the process lacks some; resolves true once that
 * child has exited (its exit status becomes this process's). SIGTERM and SIGINT reach the child as
 * one SIGTERM, a second one as SIGKILL; SIGHUP is passed on as it is.
 */
export async function relaunchWithV8Flags(flags: readonly string[] = V8_FLAGS): Promise<boolean> {
  const relaunch = relaunchCommand(flags, { execPath: process.execPath, argv: process.argv, execArgv: process.execArgv, env: process.env, sea: isSea() });
  if (relaunch === undefined) return false;
  // The IPC channel is how the child learns that this process is gone (relaunched()).
  const child = spawn(relaunch.command, relaunch.args, { env: { ...relaunch.env, [RELAUNCHED_ENV]: '1' }, stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
  let stopping = false;
  const stop = (): void => {
    child.kill(stopping ? 'SIGKILL' : 'SIGTERM');
    stopping = true;
  };
  const hangUp = (): void => void child.kill('SIGHUP');
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', hangUp);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('error', (err) => {
      process.stderr.write(`tidemq: cannot run ${relaunch.command} again with ${flags.join(' ')}: ${err.message}\n`);
      resolve([1, null]);
    });
    child.once('exit', (c, s) => resolve([c, s]));
  });
  process.removeListener('SIGTERM', stop);
  process.removeListener('SIGINT', stop);
  process.removeListener('SIGHUP', hangUp);
  process.exitCode = code ?? 128 + (signal === null ? 0 : constants.signals[signal]);
  return true;
}

let launched = false;

/**
 * In a child of relaunchWithV8Flags: takes the marker out of the environment, and has this process
 * die with its parent (SIGKILL of the parent, which cannot pass it on: the channel closes).
 * True in such a child, from then on.
 */
export function relaunched(): boolean {
  if (launched) return true;
  if (process.env[RELAUNCHED_ENV] === undefined) return false;
  delete process.env[RELAUNCHED_ENV];
  const channel = process.channel;
  if (channel === undefined) return false; // the marker without our channel: no parent of ours
  channel.unref();
  process.once('disconnect', () => process.kill(process.pid, 'SIGKILL'));
  launched = true;
  return true;
}
