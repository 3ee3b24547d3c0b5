// The V8 flags mechanism shared by bin/tidemq and the standalone binary: which command runs again,
// and a real relaunch (the flag applies, the exit status and signals pass through).
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { relaunchCommand, type ProcessStart } from '../../src/cli/v8-flags.js';
import { ensureBuilt, repoRoot } from '../helpers/build.js';
import { run, spawnProcess } from '../helpers/process.js';
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
