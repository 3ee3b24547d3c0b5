// The integration-test harness itself, with stand-ins for tidemq: `node -e` servers and an
// in-process aedes broker.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Aedes } from 'aedes';
import type { MqttClient } from 'mqtt';
import t from 'tap';
import { buildIfStale, repoRoot } from './helpers/build.js';
import { connectClient, messageCollector, rawConnect, run } from './helpers/clients.js';
import { startNode } from './helpers/node-process.js';
import { CLAIMS_DIR, claimPort, ephemeralRange, freePort, parsePortRange, portPool } from '../native-bench/lib/ports.js';
import { isRunning, spawnProcess, startProcess, type ManagedProcess } from './helpers/process.js';
import { waitFor } from './broker/support.js';

/** Echo server on argv[1]; 'quit' makes it close the connection; prints on start and on SIGTERM. */
const ECHO_SERVER = `
const net = require('node:net');
const server = net.createServer((s) => s.on('data', (d) => d.toString() === 'quit' ? s.destroy() : s.write(d)));
server.listen(Number(process.argv[1]), '127.0.0.1', () => console.log('listening'));
process.on('SIGTERM', () => { console.error('bye'); server.close(); process.exit(0); });
`;

function echoServer(t: Parameters<typeof startProcess>[0], port: number, extra = ''): Promise<ManagedProcess> {
  return startProcess(t, { name: 'echo', command: process.execPath, args: ['-e', ECHO_SERVER + extra, String(port)], port, killAfterMs: 500 });
}

function pidIn(err: unknown): number {
  const m = /\(pid (\d+)\)/.exec(String(err));
  return Number(m?.[1]);
}

t.test('freePort never hands out a port twice, and each one is bindable and outside the ephemeral range', async (t) => {
  const ports: number[] = [];
  for (let i = 0; i < 50; i++) ports.push(await freePort());
  t.equal(new Set(ports).size, ports.length);
  const [lo, hi] = ephemeralRange();
  t.same(ports.filter((p) => p >= lo && p <= hi), [], `none where connect() picks its source ports (${lo}-${hi})`);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(ports[49], '127.0.0.1', resolve));
  await new Promise((resolve) => server.close(resolve));
  t.pass('bound the last port');
});

t.test('the ports left by the ephemeral range', async (t) => {
  t.same(parsePortRange('32768\t60999\n'), [32768, 60999]);
  t.equal(parsePortRange('60999 32768'), undefined, 'an inverted range');
  t.equal(parsePortRange(''), undefined);
  t.same(portPool([32768, 60999]), [[10000, 32767], [61000, 65535]]);
  t.same(portPool([1024, 65535]), [], 'none: the whole range is ephemeral');
  t.same(portPool([40000, 65535]), [[10000, 39999]]);
});

t.test("a port is claimed across processes; a dead owner's claim is taken over", async (t) => {
  // Another process claims 200 ports while this one does: no port in both.
  const script = `import { freePort } from ${JSON.stringify(pathToFileURL(join(repoRoot, 'native-bench', 'lib', 'ports.ts')).href)};
const ports = [];
for (let i = 0; i < 200; i++) ports.push(await freePort());
console.log(JSON.stringify(ports));
setInterval(() => {}, 1000);`;
  const other = spawnProcess({ name: 'ports', command: process.execPath, args: ['--import=@tapjs/typescript/import', '--input-type=module', '-e', script], cwd: repoRoot, killAfterMs: 1000 });
  t.teardown(() => other.stop('SIGKILL'));
  const mine: number[] = [];
  for (let i = 0; i < 200; i++) mine.push(await freePort());
  await waitFor(() => other.stdout().includes(']'), "the other process's ports", 20_000);
  const theirs = JSON.parse(other.stdout()) as number[];
  t.equal(theirs.length, 200);
  t.same(mine.filter((p) => theirs.includes(p)), [], 'no port claimed by both');
  const port = theirs[0] ?? 0;
  t.equal(readFileSync(join(CLAIMS_DIR, String(port)), 'utf8'), String(other.pid), 'the claim names its owner');
  t.notOk(claimPort(port), 'a live owner keeps its port');
  await other.stop('SIGKILL');
  t.ok(claimPort(port), 'killed before it gave its claims up: taken over');
  t.equal(readFileSync(join(CLAIMS_DIR, String(port)), 'utf8'), String(process.pid));
  // Its other claims taken over too, so that this process's exit gives them up.
  t.ok(theirs.slice(1).every(claimPort), 'all of them');
});

t.test('startProcess waits for the port; rawConnect talks to it; stop() returns the exit code', async (t) => {
  const port = await freePort();
  const proc = await echoServer(t, port);
  t.ok(isRunning(proc.pid));
  const raw = await rawConnect(t, port);
  raw.send([1, 2, 3]);
  raw.send(Buffer.from([4]));
  t.same([...(await raw.read(4))], [1, 2, 3, 4]);
  t.equal(raw.isClosed, false);
  raw.send(Buffer.from('quit'));
  await raw.closed();
  t.equal(raw.isClosed, true);
  t.equal(await proc.stop(), 0, 'clean exit on SIGTERM');
  t.match(proc.output(), /listening[\s\S]*bye/);
  t.equal(isRunning(proc.pid), false);
  t.equal(await proc.stop(), 0, 'stopping again returns the same code');
});

t.test('rawConnect.read returns what arrived when the peer closes first, and times out', async (t) => {
  const port = await freePort();
  await echoServer(t, port);
  const raw = await rawConnect(t, port);
  await t.rejects(raw.read(1, 100), /timed out after 100 ms/);
  raw.send(Buffer.from('ab'));
  t.equal((await raw.read(2)).toString(), 'ab');
  raw.send(Buffer.from('quit'));
  t.equal((await raw.read(10)).length, 0, 'closed: nothing more');
});

t.test('a process that never opens its port is killed and reported with its output', async (t) => {
  const port = await freePort();
  const started = Date.now();
  const err = await startProcess(t, {
    name: 'mute',
    command: process.execPath,
    args: ['-e', "console.log('still starting'); setInterval(() => {}, 1000)"],
    port,
    readyTimeoutMs: 3000, // long enough for node to start and print even on a loaded machine
  }).catch((e: unknown) => e);
  t.match(String(err), /mute \(pid \d+\) did not accept TCP on 127\.0\.0\.1:\d+ within 3000 ms; output:\nstill starting/);
  t.ok(Date.now() - started < 10_000);
  t.equal(isRunning(pidIn(err)), false, 'killed');
});

t.test('a process that exits early is reported at once with its code and output', async (t) => {
  const port = await freePort();
  const err = await startProcess(t, {
    name: 'crash',
    command: process.execPath,
    args: ['-e', "console.error('boom'); process.exit(3)"],
    port,
  }).catch((e: unknown) => e);
  t.match(String(err), /crash \(pid \d+\) exited \(code 3\) before accepting TCP.*output:\nboom/s);
});

t.test('stop() escalates to SIGKILL when the signal is ignored', async (t) => {
  const port = await freePort();
  const proc = await echoServer(t, port, "process.removeAllListeners('SIGTERM'); process.on('SIGTERM', () => console.log('ignored'));");
  const started = Date.now();
  t.equal(await proc.stop('SIGTERM'), null, 'ended by a signal, no exit code');
  t.ok(Date.now() - started >= 450, 'waited for the grace period first');
  t.match(proc.output(), 'ignored');
  t.equal(isRunning(proc.pid), false);
});

t.test('teardown stops processes a test left running', async (t) => {
  let pid = 0;
  await t.test('leaves its server running', async (t) => {
    pid = (await echoServer(t, await freePort())).pid;
    t.ok(isRunning(pid));
  });
  t.ok(pid > 0);
  t.equal(isRunning(pid), false, 'stopped by the subtest teardown');
});

t.test('run', async (t) => {
  const ok = await run(process.execPath, ['-e', "process.stdin.pipe(process.stdout); console.error('err'); process.exitCode = 4"], { input: 'hello' });
  t.same(ok, { code: 4, stdout: 'hello', stderr: 'err\n', timedOut: false });
  const started = Date.now();
  const slow = await run(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { timeoutMs: 200 });
  t.equal(slow.timedOut, true);
  t.equal(slow.code, null, 'killed');
  t.ok(Date.now() - started < 8000);
  const mosquitto = await run('mosquitto_pub', ['--help']);
  t.match(mosquitto.stdout + mosquitto.stderr, 'mosquitto_pub', 'runs installed tools from PATH');
  const printOptions = ['-e', 'console.log(String(process.env.NODE_OPTIONS))'];
  t.match(process.env.NODE_OPTIONS, '@tapjs/', 'this test runs under tap, with its loader hooks');
  t.equal((await run(process.execPath, printOptions)).stdout, 'undefined\n', "children do not inherit tap's hooks");
  const explicit = await run(process.execPath, printOptions, { env: { NODE_OPTIONS: '--no-warnings' } });
  t.equal(explicit.stdout, '--no-warnings\n', 'an explicit NODE_OPTIONS is passed on');
  const missing = await run('/nonexistent/tool', []);
  t.equal(missing.code, 127, 'a missing command exits 127 (from env, which execs it)');
  t.match(missing.stderr, '/nonexistent/tool');
});

t.test('connectClient and messageCollector against an in-process broker', async (t) => {
  const broker = await Aedes.createBroker();
  const server = createServer(broker.handle);
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  t.teardown(async () => {
    await new Promise((resolve) => server.close(resolve));
    await new Promise<void>((resolve) => broker.close(() => resolve()));
  });

  let leftOpen: MqttClient | undefined;
  await t.test('client use', async (t) => {
    const sub = await connectClient(t, port, { clientId: 'sub' });
    const pub = await connectClient(t, port);
    t.equal(sub.options.reconnectPeriod, 0);
    const inbox = messageCollector(sub);
    await sub.subscribeAsync('h/#', { qos: 1 });
    for (let i = 0; i < 3; i++) await pub.publishAsync(`h/${i}`, `m${i}`, { qos: 1 });
    const first = await inbox.next(2);
    t.same(first.map((m) => [m.topic, m.payload.toString(), m.packet.qos]), [['h/0', 'm0', 1], ['h/1', 'm1', 1]]);
    await t.rejects(inbox.next(2, 200), /expected 2 message\(s\) within 200 ms, got 1: \["h\/2: m2"\]/);
    await pub.publishAsync('h/3', 'm3');
    t.same((await inbox.next(2)).map((m) => m.topic), ['h/2', 'h/3'], 'a timed-out next() consumes nothing');
    t.equal(inbox.all().length, 4);
    leftOpen = sub;
  });
  t.equal(leftOpen?.connected, false, 'teardown ended the client');
});

t.test('buildIfStale builds a missing or stale output, skips a fresh one, reports tsc errors', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tidemq-build-test-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const compilerOptions = { target: 'ES2022', module: 'NodeNext', strict: true, types: [], skipLibCheck: true, rootDir: 'src', outDir: 'dist' };
  writeFileSync(join(root, 'tsconfig.build.json'), JSON.stringify({ compilerOptions, include: ['src'] }));
  const src = join(root, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a.ts'), 'export const a: number = 1;\n');
  t.equal(await buildIfStale(root), true, 'dist missing: built');
  t.ok(existsSync(join(root, 'dist', 'a.js')));
  t.equal(existsSync(join(root, 'dist', '.build-lock')), false, 'lock released');
  t.equal(await buildIfStale(root), false, 'fresh: skipped');
  const future = (statSync(join(root, 'dist', '.build-stamp')).mtimeMs + 5000) / 1000;
  writeFileSync(join(src, 'a.ts'), 'export const a: number = 2;\n');
  utimesSync(join(src, 'a.ts'), future, future);
  t.equal(await buildIfStale(root), true, 'a source newer than the stamp: rebuilt');
  writeFileSync(join(src, 'b.ts'), 'export const b: number = "x";\n');
  utimesSync(join(src, 'b.ts'), future + 5, future + 5);
  await t.rejects(buildIfStale(root), /tsc failed[\s\S]*b\.ts[\s\S]*TS2322/);
  t.equal(existsSync(join(root, 'dist', '.build-lock')), false, 'lock released after a failure');
});

t.test(
  'startNode runs a real node, cleans up, restarts on a kept data dir',
  { skip: !existsSync(join(repoRoot, 'bin', 'tidemq')) && 'bin/tidemq does not exist yet' },
  async (t) => {
    let first: { pid: number; dataDir: string } | undefined;
    await t.test('first run keeps its data dir', async (t) => {
      const node = await startNode(t, { keepDataDir: true });
      first = node;
      const raw = await rawConnect(t, node.mqttPort);
      t.equal(raw.isClosed, false, 'MQTT port accepts');
      t.ok(existsSync(node.dataDir));
    });
    if (first === undefined) return;
    const kept = first;
    t.equal(isRunning(kept.pid), false, 'stopped on teardown');
    t.ok(existsSync(kept.dataDir), 'data dir kept');
    let second: { pid: number; dataDir: string } | undefined;
    await t.test('second run on the same data dir', async (t) => {
      const node = await startNode(t, { dataDir: kept.dataDir, name: 'again@127.0.0.1' });
      second = node;
      t.equal(node.name, 'again@127.0.0.1');
      t.equal(node.dataDir, kept.dataDir);
      t.equal(await node.stop(), 0, 'graceful exit on SIGTERM');
      t.match(node.output(), 'again@127.0.0.1');
    });
    if (second === undefined) return;
    t.equal(isRunning(second.pid), false);
    t.equal(existsSync(second.dataDir), false, 'data dir removed on teardown');
  },
);
