// The standalone binary (`npm run build:binary`), built fresh and run alone: copied into an empty
// temp dir, started with an environment that has no node on PATH and no node_modules above it,
// driven with the mosquitto clients and its own `ctl`; a damaged asset or extraction is refused.
import t, { type Test } from 'tap';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parsePasswordFile, verifyPassword } from '../../src/broker/passwords.js';
import { V8_FLAGS } from '../../src/cli/v8-flags.js';
import { ensureBuilt, repoRoot } from '../helpers/build.js';
import { freePort } from '../../native-bench/lib/ports.js';
import { relaunchedPid, run, spawnProcess, startProcess, type ManagedProcess, type RunResult } from '../helpers/process.js';
import { adminRequest } from '../helpers/admin.js';

const dir = mkdtempSync(join(tmpdir(), 'tidemq-binary-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const app = join(dir, 'app'); // the binary, alone
const emptyPath = join(dir, 'empty-path'); // PATH: an empty directory, so no node anywhere
const home = join(dir, 'home');
const tmp = join(dir, 'tmp'); // TMPDIR: where it extracts itself
for (const d of [app, emptyPath, home, tmp]) mkdirSync(d);
const binary = join(app, 'tidemq');

/** `env -i`: nothing of this test's environment (PATH with node, NODE_OPTIONS, NODE_PATH) reaches it. */
function isolated(args: string[], extra: string[] = []): { command: string; args: string[] } {
  return { command: '/usr/bin/env', args: ['-i', `PATH=${emptyPath}`, `HOME=${home}`, `TMPDIR=${tmp}`, ...extra, binary, ...args] };
}

function tidemq(args: string[], extra: string[] = []): Promise<RunResult> {
  const c = isolated(args, extra);
  return run(c.command, c.args, { cwd: app, timeoutMs: 30_000 });
}

const extractions = (): string[] => readdirSync(tmp).filter((n) => n.startsWith('tidemq-'));

/** No crash dump, no stack trace: one line naming the problem. */
function cleanFailure(t: Test, r: RunResult, message: RegExp): void {
  t.equal(r.code, 1, `exit 1: ${r.stderr}`);
  t.match(r.stderr, message);
  t.notMatch(r.stderr, /\n\s+at |node:internal|FATAL|Segmentation|core dumped/, 'no stack trace or crash');
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
}

t.before(async () => {
  await ensureBuilt();
  const built = await run(process.execPath, [join(repoRoot, 'dist', 'build', 'binary.js'), '--out', join(dir, 'build', 'tidemq')], { cwd: repoRoot, timeoutMs: 150_000 });
  if (built.code !== 0) throw new Error(`build:binary failed (${built.code}):\n${built.stdout}${built.stderr}`);
  t.comment(built.stdout.trim());
  writeFileSync(join(dir, 'build.out'), built.stdout);
  cpSync(join(dir, 'build', 'tidemq'), binary);
  rmSync(join(dir, 'build'), { recursive: true });
});

t.test('the build prints the size and the startup times', async (t) => {
  const out = readFileSync(join(dir, 'build.out'), 'utf8');
  t.match(out, new RegExp(`^built .* commit [0-9a-f]{7,}(-dirty)?, Node\\.js ${process.version.replaceAll('.', '\\.')}$`, 'm'));
  t.match(out, /^size: \d+\.\d MB \(Node\.js [\d.]+ MB.*, payload [\d.]+ MB: \d+ files from dist\/ and \d+ packages\)$/m);
  t.match(out, /^startup \(median of \d+\): --version \d+ ms \(bin\/tidemq \d+ ms\); start until the MQTT port accepts \d+ ms \(bin\/tidemq \d+ ms\)$/m);
});

t.test('build:binary refuses an unknown option', async (t) => {
  const r = await run(process.execPath, [join(repoRoot, 'dist', 'build', 'binary.js'), '--bogus'], { cwd: repoRoot });
  t.equal(r.code, 1);
  t.equal(r.stderr, 'build:binary: usage: npm run build:binary -- [--out FILE] [--no-measure] (unexpected --bogus)\n');
});

t.test('nothing but the binary: no node on PATH, no node_modules above its directory', async (t) => {
  t.same(readdirSync(app), ['tidemq']);
  t.same(readdirSync(emptyPath), []);
  for (let d = app; ; d = dirname(d)) {
    t.notOk(existsSync(join(d, 'node_modules')), `no ${join(d, 'node_modules')}`);
    if (dirname(d) === d) break;
  }
  const r = await run('/usr/bin/env', ['-i', `PATH=${emptyPath}`, 'node', '--version']);
  t.not(r.code, 0, 'node cannot be found with that PATH');
});

t.test('--version, --help and passwd', async (t) => {
  const version = await tidemq(['--version']);
  t.equal(version.code, 0);
  const { version: pkgVersion } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  t.match(version.stdout, new RegExp(`^${pkgVersion.replaceAll('.', '\\.')} \\(commit [0-9a-f]{7,}(-dirty)?, Node\\.js ${process.version.replaceAll('.', '\\.')}\\)\\n$`));
  const help = await tidemq(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /tidemq start/);
  t.match(help.stdout, /tidemq passwd <file> <user>/);
  t.equal((await tidemq(['start', '--bogus'])).code, 2, 'a usage error exits 2, as bin/tidemq does');
  const passwd = await tidemq(['passwd', 'users', 'alice', '--password', 's3cret']);
  t.equal(passwd.code, 0, passwd.stderr);
  const hash = parsePasswordFile(readFileSync(join(app, 'users'), 'utf8'), 'users').get('alice');
  t.ok(hash !== undefined && verifyPassword(hash, Buffer.from('s3cret')), 'the password file verifies');
  rmSync(join(app, 'users'));
  t.same(extractions(), [], 'each command removed its extraction when it exited');
});

t.test('a node: QoS 1 round trip, a persistent session across kill -9, ctl, SIGTERM exits 0', async (t) => {
  const [mqtt, mgmt, cluster] = [await freePort(), await freePort(), await freePort()];
  const data = join(dir, 'data');
  const startArgs = ['start', '--node', 'bin1@127.0.0.1', '--mqtt-port', String(mqtt), '--mgmt-port', String(mgmt), '--cluster-port', String(cluster), '--ws-port', '0', '--data-dir', data];
  const startNode = (extra: string[] = []): Promise<ManagedProcess> =>
    startProcess(t, { name: 'tidemq binary', ...isolated(startArgs, extra), cwd: app, port: mqtt, readyTimeoutMs: 30_000 });
  const common = ['-h', '127.0.0.1', '-p', String(mqtt), '-V', 'mqttv311', '-q', '1'];
  const subscribe = (): ManagedProcess => {
    const sub = spawnProcess({ name: 'mosquitto_sub', command: 'mosquitto_sub', args: [...common, '-c', '-i', 'bin-sub', '-t', 'bin/t', '-C', '1', '-W', '20'], killAfterMs: 2000 });
    t.teardown(() => sub.stop());
    return sub;
  };
  const payloads = (sub: ManagedProcess): string[] => sub.stdout().split('\n').filter((l) => l !== '');
  /** mosquitto_sub prints nothing before its message, so the node is asked (stdout is buffered anyway). */
  const subscribed = async (): Promise<void> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const { status, json } = await adminRequest({ mgmtPort: mgmt }, 'GET', '/api/v5/clients/bin-sub');
      if (status === 200 && (json as { subscriptions_cnt?: number }).subscriptions_cnt === 1) return;
      if (Date.now() > deadline) throw new Error(`mosquitto_sub did not subscribe within 15 s: ${status} ${JSON.stringify(json)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  let node = await startNode();
  // The node runs with the V8 flags, in the binary started again with them (no node options are baked into it).
  const relaunched = relaunchedPid(node.pid);
  t.not(relaunched, node.pid, 'the node is a child of the binary started');
  t.match(readFileSync(`/proc/${relaunched}/environ`, 'utf8'), new RegExp(`(^|\\0)NODE_OPTIONS=${V8_FLAGS.join(' ')}\\0`), 'with the V8 flags');
  const first = extractions();
  t.equal(first.length, 1, 'one extraction directory');
  t.equal(statSync(join(tmp, first[0]!)).mode & 0o777, 0o700, 'private to its user');
  const files = readdirSync(join(tmp, first[0]!), { recursive: true }).map(String);
  t.same(files.filter((f) => f.endsWith('.node')).sort(), [
    'node_modules/@lmdb/lmdb-linux-x64/node.abi115.glibc.node',
    'node_modules/@msgpackr-extract/msgpackr-extract-linux-x64/node.abi115.glibc.node',
    'node_modules/@trufflesuite/uws-js-unofficial/binaries/uws_linux_x64_115.node',
  ], 'only the addons Node loads here');
  const unwanted = files.filter((f) => (/\.(map|d\.ts|d\.cts|md)$/.test(f) && !/\/licen[cs]e\.md$/i.test(f)) || /(^|\/)(test|docs)\//.test(f));
  t.same(unwanted, [], 'no source maps, type files, docs or tests (licences stay)');

  // QoS 1 to a persistent (clean session off) subscriber.
  let sub = subscribe();
  await subscribed();
  let pub = await run('mosquitto_pub', [...common, '-t', 'bin/t', '-m', 'online']);
  t.equal(pub.code, 0, pub.stderr);
  t.equal(await sub.exited, 0, sub.output());
  t.same(payloads(sub), ['online']);

  // Queued for the offline session, then the node is killed: the store has it.
  pub = await run('mosquitto_pub', [...common, '-t', 'bin/t', '-m', 'while-offline']);
  t.equal(pub.code, 0, pub.stderr);
  await node.stop('SIGKILL');
  t.same(extractions(), first, 'kill -9 leaves its extraction behind');

  // Opening the store runs its integrity check: the binary again, as a child reusing this
  // extraction (found by its real path, though TMPDIR is a symlink now).
  const tmpLink = join(dir, 'tmp-link');
  symlinkSync(tmp, tmpLink);
  node = await startNode([`TMPDIR=${tmpLink}`]);
  const second = extractions();
  t.equal(second.length, 1, `the stale extraction was removed: ${second.join(' ')}`);
  t.not(second[0], first[0]);
  sub = subscribe();
  t.equal(await sub.exited, 0, sub.output());
  t.same(payloads(sub), ['while-offline'], 'the session and its queued message survived kill -9 and the restart');

  const api = ['--api', `http://127.0.0.1:${mgmt}`];
  const stats = await tidemq(['ctl', ...api, 'broker', 'stats']);
  t.equal(stats.code, 0, stats.stderr);
  t.match(stats.stdout, /^sessions\.count\s*: 1$/m);
  const status = await tidemq(['ctl', ...api, 'rebalance', 'node-status']);
  t.equal(status.code, 0, status.stderr);
  t.equal(status.stdout, 'Rebalance disabled\n');

  // The extraction of a running node, reused by a child, is checked file by file.
  const live = join(tmp, second[0]!);
  const tampered = join(dir, 'tampered');
  cpSync(live, tampered, { recursive: true });
  chmodSync(tampered, 0o700);
  truncateSync(join(tampered, 'dist', 'cli', 'main.js'), 100);
  cleanFailure(t, await tidemq(['--version'], [`TIDEMQ_SEA_DIR=${tampered}`]), /^tidemq: extracted file dist\/cli\/main\.js in .*tampered is truncated \(100 of \d+ bytes\)$/m);
  chmodSync(tampered, 0o755);
  cleanFailure(t, await tidemq(['--version'], [`TIDEMQ_SEA_DIR=${tampered}`]), /^tidemq: TIDEMQ_SEA_DIR=.*tampered is not private to this user \(mode 0700\)$/m);

  t.equal(await node.stop('SIGTERM'), 0, 'SIGTERM: exit 0');
  t.same(extractions(), [], 'the extraction is removed on exit');
});

t.test('a corrupt asset in the binary is named, exit 1, no crash dump', async (t) => {
  const asset = readFileSync(join(repoRoot, 'dist', 'cli', 'main.js'));
  const bytes = readFileSync(binary);
  const at = bytes.indexOf(asset);
  t.ok(at > 0 && bytes.lastIndexOf(asset) === at, 'dist/cli/main.js is in the binary once');
  const middle = at + (asset.length >> 1);
  bytes[middle] = bytes[middle]! ^ 0xff;
  const corrupt = join(dir, 'corrupt');
  writeFileSync(corrupt, bytes, { mode: 0o755 });
  const r = await run('/usr/bin/env', ['-i', `PATH=${emptyPath}`, `HOME=${home}`, `TMPDIR=${tmp}`, corrupt, '--version'], { cwd: app, timeoutMs: 30_000 });
  cleanFailure(t, r, /^tidemq: asset dist\/cli\/main\.js of this binary is corrupt \(sha256 [0-9a-f]{64}, [0-9a-f]{64} expected\); build or download it again$/m);
  t.same(extractions(), [], 'the partial extraction was removed');
});
