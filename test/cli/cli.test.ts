// The real `bin/tidemq` (built to dist/ first): exit codes, messages, `passwd` files, signals.
import t from 'tap';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { parseHash, parsePasswordFile, verifyPassword } from '../../src/broker/passwords.js';
import { CliError, obtainPassword, setPassword } from '../../src/cli/passwd.js';
import { ensureBuilt, repoRoot } from '../helpers/build.js';
import { startNode } from '../helpers/node-process.js';
import { run, spawnProcess } from '../helpers/process.js';

const bin = join(repoRoot, 'bin', 'tidemq');
const dir = t.testdir();
const tidemq = (args: string[], input?: string) => run(process.execPath, [bin, ...args], { cwd: dir, ...(input === undefined ? {} : { input }) });

t.before(ensureBuilt);

async function verifies(file: string, user: string, password: string): Promise<boolean> {
  const h = parsePasswordFile(readFileSync(file, 'utf8'), file).get(user);
  return h !== undefined && verifyPassword(h, Buffer.from(password));
}

t.test('--help', async (t) => {
  const top = await tidemq(['--help']);
  t.equal(top.code, 0);
  t.match(top.stdout, /tidemq start/);
  t.match(top.stdout, /tidemq passwd <file> <user>/);
  const start = await tidemq(['start', '--help']);
  t.equal(start.code, 0);
  for (const flag of ['--config', '--node', '--port-offset', '--mqtt-port', '--tls-port', '--ws-port', '--wss-port', '--mgmt-port', '--cluster-port', '--data-dir', '--join', '--cookie']) {
    t.match(start.stdout, flag, `start --help shows ${flag}`);
  }
  t.match((await tidemq(['passwd', '--help'])).stdout, /--password/);
});

t.test('--version prints the package version', async (t) => {
  const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const r = await tidemq(['--version']);
  t.equal(r.code, 0);
  t.equal(r.stdout, `${version}\n`);
});

t.test('usage errors exit 2', async (t) => {
  const bogus = await tidemq(['start', '--bogus-flag']);
  t.equal(bogus.code, 2);
  t.match(bogus.stderr, /Unknown argument.*bogus-flag/);
  const none = await tidemq([]);
  t.equal(none.code, 2);
  t.match(none.stderr, /a command is needed/);
  const missing = await tidemq(['passwd', 'file-only']);
  t.equal(missing.code, 2, 'passwd without a user');
  const noValue = await tidemq(['start', '--join']);
  t.equal(noValue.code, 2, 'a flag without its value');
  t.match(noValue.stderr, /^tidemq: Not enough arguments following: join/);
  t.equal((await tidemq(['start', 'extra'])).code, 2, 'an unexpected positional argument');
});

t.test('start with a bad configuration exits 2 naming the key, before starting', async (t) => {
  const port = await tidemq(['start', '--mqtt-port', '70000', '--data-dir', join(dir, 'never')]);
  t.equal(port.code, 2);
  t.match(port.stderr, /^tidemq: invalid value for listeners\.tcp_port: expected a port number/);
  t.throws(() => statSync(join(dir, 'never')), 'nothing was created');

  const toml = join(dir, 'bad.toml');
  writeFileSync(toml, '[mqtt]\nmax_packet_size = "huge"\n');
  const file = await tidemq(['start', '--config', toml]);
  t.equal(file.code, 2);
  t.match(file.stderr, /invalid value for mqtt\.max_packet_size: expected a size such as 1048576 or 1MB/);

  const json = join(dir, 'mgmt.json');
  writeFileSync(json, JSON.stringify({ management: { bind: '0.0.0.0' } }));
  const mgmt = await tidemq(['start', '--config', json]);
  t.equal(mgmt.code, 2);
  t.match(mgmt.stderr, /management\.bind.*"public"/);

  const env = spawnProcess({ name: 'env', command: process.execPath, args: [bin, 'start'], cwd: dir, env: { TIDEMQ_MQTT__MAX_QOS: '7' } });
  t.equal(await env.exited, 2);
  t.match(env.stderr(), /mqtt\.max_qos.*TIDEMQ_MQTT__MAX_QOS/);

  const pwfile = join(dir, 'bad-passwd');
  writeFileSync(pwfile, 'alice\n');
  const pw = spawnProcess({
    name: 'pw',
    command: process.execPath,
    args: [bin, 'start', '--mqtt-port', '0', '--data-dir', join(dir, 'pw-data')],
    cwd: dir,
    env: { TIDEMQ_AUTH__PASSWORD_FILE: pwfile },
  });
  t.equal(await pw.exited, 2, 'a bad password file is a configuration error too');
  t.match(pw.stderr(), /bad-passwd:1: expected user:scrypt/);
  t.throws(() => statSync(join(dir, 'pw-data')), 'no data dir was created');

  const acl = spawnProcess({
    name: 'acl',
    command: process.execPath,
    args: [bin, 'start', '--mqtt-port', '0', '--data-dir', join(dir, 'acl-data')],
    cwd: dir,
    env: { TIDEMQ_AUTH__ACL_FILE: join(dir, 'no-such-acl') },
  });
  t.equal(await acl.exited, 2, 'an unreadable ACL file is a configuration error');
  t.match(acl.stderr(), /cannot read auth\.acl_file .*no-such-acl: ENOENT/);
  t.throws(() => statSync(join(dir, 'acl-data')), 'no data dir was created');
});

t.test('start runs a node and stops it on SIGTERM with exit 0', async (t) => {
  const node = await startNode(t, { name: 'clitest1@127.0.0.1' });
  t.equal(await node.stop('SIGTERM'), 0);
  t.match(node.output(), /stopping/);
});

t.test('passwd creates and changes users', async (t) => {
  const file = join(dir, 'passwd');
  const add = await tidemq(['passwd', file, 'alice', '--password', 'wonder land']);
  t.equal(add.code, 0, add.stderr);
  t.match(add.stdout, /Added the password of alice/);
  t.equal(statSync(file).mode & 0o777, 0o600, 'created with mode 0600');
  t.match(readFileSync(file, 'utf8'), /^alice:scrypt\$16384\$8\$1\$[^$]+\$[^$]+\n$/);
  t.ok(await verifies(file, 'alice', 'wonder land'));

  const bob = await tidemq(['passwd', file, 'bob'], 'builder\nignored second line\n');
  t.equal(bob.code, 0, 'password from piped stdin');
  t.ok(await verifies(file, 'bob', 'builder'), 'only the first line is the password');

  const before = readFileSync(file, 'utf8');
  const change = await tidemq(['passwd', file, 'alice', '--password', 'new']);
  t.equal(change.code, 0);
  t.match(change.stdout, /Changed the password of alice/);
  t.ok(await verifies(file, 'alice', 'new'));
  t.notOk(await verifies(file, 'alice', 'wonder land'), 'the old password no longer works');
  t.equal(readFileSync(file, 'utf8').split('\n')[1], before.split('\n')[1], "bob's line is untouched");
});

t.test('passwd errors', async (t) => {
  const file = join(dir, 'passwd-errors');
  const badUser = await tidemq(['passwd', file, 'a:b', '--password', 'x']);
  t.equal(badUser.code, 1);
  t.match(badUser.stderr, /tidemq: bad user name "a:b"/);
  const empty = await tidemq(['passwd', file, 'alice'], '\n');
  t.equal(empty.code, 1);
  t.match(empty.stderr, /tidemq: empty password/);
  t.throws(() => statSync(file), 'no file written on an error');
  const aDir = join(dir, 'a-directory');
  mkdirSync(aDir);
  const unreadable = await tidemq(['passwd', aDir, 'alice', '--password', 'x']);
  t.equal(unreadable.code, 1);
  t.match(unreadable.stderr, /tidemq: cannot read .*a-directory: EISDIR/);
  const corrupt = join(dir, 'corrupt');
  writeFileSync(corrupt, 'garbage\n');
  const c = await tidemq(['passwd', corrupt, 'alice', '--password', 'x']);
  t.equal(c.code, 1);
  t.match(c.stderr, /corrupt:1: expected user:scrypt/);
  t.equal(readFileSync(corrupt, 'utf8'), 'garbage\n', 'a corrupt file is left alone');
});

t.test('setPassword and obtainPassword', async (t) => {
  const file = join(dir, 'direct');
  t.equal(await setPassword(file, 'u', 'p1'), true, 'new user');
  t.equal(await setPassword(file, 'u', 'p2'), false, 'existing user');
  t.ok(parseHash(readFileSync(file, 'utf8').trim().slice(2)));
  await t.rejects(setPassword(file, 'u', 'x'.repeat(5000)), CliError, 'absurdly long password');
  await t.rejects(setPassword(file, '', 'x'), CliError, 'empty user name');
  t.equal(await obtainPassword('from-flag'), 'from-flag');
  const piped = new PassThrough() as PassThrough & { isTTY?: boolean };
  piped.end('line one\r\nline two\n');
  t.equal(await obtainPassword(undefined, piped as unknown as NodeJS.ReadStream), 'line one');
  const noNewline = new PassThrough();
  noNewline.end('last');
  t.equal(await obtainPassword(undefined, noNewline as unknown as NodeJS.ReadStream), 'last');
});
