// The V8 flags every tidemq process runs with, started as bin/tidemq or as the standalone binary.
// V8 sizes its heap when the process starts, so a process started without them runs the same
// command again in a child that has them, in NODE_OPTIONS, which node and the binary both read.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { isSea } from 'node:sea';

/**
 * None: a flag added here applies to bin/tidemq and to the standalone binary alike, through a
 * relaunch whose waiting parent costs memory of its own. Measured, none pays for it: a smaller
 * young generation saves memory only right after a connect burst (V8 gives the grown one back
 * once the node idles, whatever its size) and costs fan-out (README Performance). `start --nodes`
 * gives its members theirs at fork (host-nodes.ts MEMBER_V8_FLAGS).
 */
export const V8_FLAGS: readonly string[] = [];

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

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Runs this command again with the flags when the process lacks some; resolves true once that
 * child has exited (its exit status becomes this process's; signals are passed on to it).
 */
export async function relaunchWithV8Flags(flags: readonly string[] = V8_FLAGS): Promise<boolean> {
  const relaunch = relaunchCommand(flags, { execPath: process.execPath, argv: process.argv, execArgv: process.execArgv, env: process.env, sea: isSea() });
  if (relaunch === undefined) return false;
  const child = spawn(relaunch.command, relaunch.args, { env: relaunch.env, stdio: 'inherit' });
  const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
  for (const signal of FORWARDED) process.on(signal, forward);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('error', (err) => {
      process.stderr.write(`tidemq: cannot run ${relaunch.command} again with ${flags.join(' ')}: ${err.message}\n`);
      resolve([1, null]);
    });
    child.once('exit', (c, s) => resolve([c, s]));
  });
  for (const s of FORWARDED) process.removeListener(s, forward);
  process.exitCode = code ?? 128 + (signal === null ? 0 : constants.signals[signal]);
  return true;
}
