// The V8 flags mechanism shared by bin/tidemq and the standalone binary: which command runs again,
// a real relaunch (the flag applies, the exit status and signals pass through), and a node started
// that way: it has the flags, its waiting parent holds none of the broker, signals from the
// terminal or systemd stop it gracefully once, and it dies with its parent.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { needsV8Flags, relaunchCommand, V8_FLAGS, type ProcessStart } from '../../src/cli/v8-flags.js';
import { ensureBuilt, repoRoot } from '../helpers/build.js';
import { startNode } from '../helpers/node-process.js';
import { isRunning, processState, run, spawnProcess } from '../helpers/process.js';
import { waitFor } from '../broker/support.js';

const FLAG = '--max-old-space-size=123';
const launcher: ProcessStart = { execPath: '/usr/bin/node', argv: ['/usr/bin/node', '/opt/tidemq/bin/tidemq', 'start', '--node', 'a@h'], execArgv: [], env: { HOME: '/h' }, sea: false };
const binary: ProcessStart = { execPath: '/opt/tidemq', argv: ['/opt/tidemq', './tidemq', 'ctl', 'broker', 'stats'], execArgv: [], env: { NODE_OPTIONS: '--trace-warnings' }, sea: true };

t.test('which command runs again, and when none', async (t) => {
  t.same(relaunchCommand([FLAG], launcher), { command: '/usr/bin/node', args: ['/opt/tidemq/bin/tidemq', 'start', '--node', 'a@h'], env: { HOME: '/h', NODE_OPTIONS: FLAG } }, 'node: the script and its arguments');
  t.same(
    relaunchCommand([FLAG], { ...launcher, execArgv: ['--inspect'] })?.args,
    ['--inspect', '/opt/tidemq/bin/tidemq', 'start', '--node', 'a@h'],
    "node's own options stay",
  );
  t.same(relaunchCommand([FLAG], binary), { command: '/opt/tidemq', args: ['ctl', 'broker', 'stats'], env: { NODE_OPTIONS: `--trace-warnings ${FLAG}` } }, 'the binary: its arguments only, NODE_OPTIONS kept');
  t.equal(relaunchCommand([], launcher), undefined, 'no flags: nothing to do');
  t.equal(relaunchCommand([FLAG], { ...launcher, execArgv: [FLAG] }), undefined, 'already on the command line');
  t.equal(relaunchCommand([FLAG], { ...binary, env: { NODE_OPTIONS: FLAG } }), undefined, 'already in NODE_OPTIONS');
  t.equal(relaunchCommand([FLAG], { ...binary, env: { NODE_OPTIONS: '--max_old_space_size=999' } }), undefined, "the user's own value wins");
});

t.test('only a single node runs again: not the --nodes launcher (its members get the flags at fork), not ctl or passwd', async (t) => {
  t.ok(needsV8Flags(['start']));
  t.ok(needsV8Flags(['start', '--node', 'a@h', '--config', 'x.toml']));
  t.notOk(needsV8Flags(['start', '--nodes', '4']));
  t.notOk(needsV8Flags(['start', '--nodes=auto']));
  t.notOk(needsV8Flags(['ctl', 'broker', 'stats']));
  t.notOk(needsV8Flags(['passwd', 'f', 'u']));
  t.notOk(needsV8Flags([]));
});

t.test('a real relaunch: the flag applies, the exit status and SIGTERM pass through', async (t) => {
  await ensureBuilt();
  const script = join(t.testdir(), 'relaunch.mjs');
  writeFileSync(
    script,
    `import { getHeapStatistics } from 'node:v8';
import { relaunchWithV8Flags } from ${JSON.stringify(pathToFileURL(join(repoRoot, 'dist', 'cli', 'v8-flags.js')).href)};
if (!(await relaunchWithV8Flags([${JSON.stringify(FLAG)}]))) {
  process.stdout.write('heap limit ' + getHeapStatistics().heap_size_limit + '\\n');
  if (process.argv[2] === 'wait') {
    process.on('SIGTERM', () => { process.stdout.write('child got SIGTERM\\n'); process.exit(0); });
    setInterval(() => {}, 1000);
  } else {
    process.exitCode = 7;
  }
}
`,
  );
  const r = await run(process.execPath, [script], { timeoutMs: 20_000 });
  t.equal(r.code, 7, `the child's exit status: ${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines.length, 1, 'only the child ran the command');
  const limit = Number(/^heap limit (\d+)$/.exec(lines[0] ?? '')?.[1]);
  t.ok(limit > 100e6 && limit < 200e6, `the child has --max-old-space-size=123 (heap limit ${limit})`);

  const waiting = spawnProcess({ name: 'relaunch', command: process.execPath, args: [script, 'wait'], killAfterMs: 10_000 });
  t.teardown(() => waiting.stop('SIGKILL'));
  await waitFor(() => waiting.stdout().includes('heap limit'), 'the relaunched child', 15_000);
  t.equal(await waiting.stop('SIGTERM'), 0, 'the parent exits with the child status');
  t.match(waiting.stdout(), /child got SIGTERM/, 'SIGTERM was passed on to the child');
});

/** /proc/<pid>/environ as a map. */
function environ(pid: number): Map<string, string> {
  const vars = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter((v) => v !== '');
  return new Map(vars.map((v) => [v.slice(0, v.indexOf('=')), v.slice(v.indexOf('=') + 1)]));
}

t.test('bin/tidemq start: the node runs with the flags in a child; the parent loads none of the broker', async (t) => {
  const node = await startNode(t);
  t.not(node.pid, node.launcherPid, 'the node is a child of the process started');
  t.equal(environ(node.pid).get('NODE_OPTIONS'), V8_FLAGS.join(' '), 'the flags, in its NODE_OPTIONS');
  const maps = (pid: number): string => readFileSync(`/proc/${pid}/maps`, 'utf8');
  t.match(maps(node.pid), /lmdb[^\n]*\.node/, 'the node loaded the store addon');
  t.notMatch(maps(node.launcherPid), /\.node\n/, 'the waiting parent loaded no addon: not the broker');
});

t.test('Ctrl-C (SIGINT to parent and node) and systemd (SIGTERM to both) each stop it gracefully, once', async (t) => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const node = await startNode(t);
    process.kill(node.pid, signal); // as the process group or the unit's cgroup delivers it
    process.kill(node.launcherPid, signal);
    t.equal(await node.exited, 0, `${signal}: exit 0`);
    t.equal(node.output().split('"msg":"stopping"').length - 1, 1, `${signal}: one stop`);
    t.notMatch(node.output(), /second signal/, `${signal}: the copy is no second signal`);
    t.match(node.output(), /"msg":"stopped"/, `${signal}: stopped cleanly`);
  }
});

t.test('a second signal to the parent kills the node; SIGKILL of the parent takes the node with it', async (t) => {
  const first = await startNode(t);
  // The node frozen, so that its graceful stop cannot end before the second signal.
  process.kill(first.pid, 'SIGSTOP');
  // Stopped before the parent passes a SIGTERM on: a running node would take it at once.
  await waitFor(() => processState(first.pid) === 'T', 'the node stopped');
  process.kill(first.launcherPid, 'SIGTERM');
  // Once the parent has passed the first on (pending at the node; two pending SIGTERMs are one).
  const sigtermPending = (): boolean => (BigInt(`0x${/^ShdPnd:\s+([0-9a-f]+)$/m.exec(readFileSync(`/proc/${first.pid}/status`, 'utf8'))?.[1] ?? '0'}`) & (1n << 14n)) !== 0n;
  await waitFor(sigtermPending, 'SIGTERM passed on to the node');
  process.kill(first.launcherPid, 'SIGTERM');
  t.equal(await first.exited, 128 + 9, 'the node was killed, and the parent exits with that');
  t.notOk(isRunning(first.pid));

  const second = await startNode(t);
  process.kill(second.launcherPid, 'SIGKILL');
  await waitFor(() => !isRunning(second.pid), 'the node followed its parent', 10_000);
  t.pass('no orphaned node');
});
