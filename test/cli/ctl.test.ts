// `tidemq ctl` (the real bin/tidemq) against a real node: exact output lines and exit codes.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBuilt, repoRoot } from '../helpers/build.js';
import { connectClient } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';
import { freePort } from '../../native-bench/lib/ports.js';
import { spawnProcess } from '../helpers/process.js';

const bin = join(repoRoot, 'bin', 'tidemq');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `tidemq ctl ...` with extra environment, stopped by PID after 20 s. */
async function ctl(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const proc = spawnProcess({ name: 'tidemq ctl', command: process.execPath, args: [bin, 'ctl', ...args], env: { TIDEMQ_API_USER: '', TIDEMQ_API_PASSWORD: '', ...env } });
  const timer = setTimeout(() => void proc.stop('SIGKILL'), 20_000);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, stdout: proc.stdout(), stderr: proc.stderr() };
}

t.before(ensureBuilt);

t.test('tidemq ctl against a real node', async (t) => {
  const node = await startNode(t);
  const api = ['--api', `http://127.0.0.1:${node.mgmtPort}`];
  const client = await connectClient(t, node.mqttPort, { clientId: 'c1', protocolVersion: 5, keepalive: 20 });
  await client.subscribeAsync('x/#');

  t.test('broker stats: one `key : value` line per counter, --json the API body', async (t) => {
    const r = await ctl([...api, 'broker', 'stats']);
    t.equal(r.code, 0);
    t.equal(r.stderr, '');
    t.equal(
      r.stdout,
      [
        'connections.count : 1',
        'live_connections.count : 1',
        'sessions.count : 1',
        'channels.count : 1',
        'subscriptions.count : 1',
        'subscribers.count : 1',
        'topics.count : 1',
        'retained.count : 0',
        '',
      ].join('\n'),
    );
    const json = await ctl([...api, 'broker', 'stats', '--json']);
    t.equal(json.code, 0);
    t.match(JSON.parse(json.stdout), [{ node: node.name, 'connections.count': 1 }]);
  });

  t.test('clients list, show, kick', async (t) => {
    const line = /^Client\(c1, username=undefined, peername=127\.0\.0\.1:\d+, clean_start=true, keepalive=20, session_expiry_interval=0, subscriptions=1, inflight=0, mqueue_len=0, connected=true, created_at=\S+, connected_at=\S+\)\n$/;
    const list = await ctl([...api, 'clients', 'list']);
    t.equal(list.code, 0);
    t.match(list.stdout, line);
    const listJson = await ctl([...api, 'clients', 'list', '--json']);
    t.match(JSON.parse(listJson.stdout), [{ clientid: 'c1', connected: true }]);
    const show = await ctl([...api, 'clients', 'show', 'c1']);
    t.equal(show.code, 0);
    t.match(show.stdout, line);
    t.match(JSON.parse((await ctl([...api, 'clients', 'show', 'c1', '--json'])).stdout), { clientid: 'c1', keepalive: 20 });

    const missing = await ctl([...api, 'clients', 'show', 'nobody']);
    t.equal(missing.code, 1);
    t.equal(missing.stderr, 'tidemq ctl: Not Found.\n');
    t.equal(missing.stdout, '');

    const gone = new Promise<number | undefined>((resolve) => client.once('disconnect', (p) => resolve(p.reasonCode)));
    const kick = await ctl([...api, 'clients', 'kick', 'c1']);
    t.equal(kick.code, 0);
    t.equal(kick.stdout, 'ok\n');
    t.equal(await gone, 0x98);
    const again = await ctl([...api, 'clients', 'kick', 'c1']);
    t.equal(again.code, 1);
    t.equal(again.stderr, 'tidemq ctl: Not Found.\n');
    t.equal((await ctl([...api, 'clients', 'list'])).stdout, '', 'no clients left');
  });

  t.test('credentials: flags, environment, config file; wrong ones exit 1', async (t) => {
    const wrong = await ctl([...api, '--password', 'nope', 'broker', 'stats']);
    t.equal(wrong.code, 1);
    t.equal(wrong.stdout, '');
    t.equal(wrong.stderr, `tidemq ctl: wrong credentials for http://127.0.0.1:${node.mgmtPort}: set --user/--password, TIDEMQ_API_USER/TIDEMQ_API_PASSWORD or --config\n`);
    t.equal((await ctl([...api, 'broker', 'stats'], { TIDEMQ_API_PASSWORD: 'nope' })).code, 1, 'from the environment');
    t.equal((await ctl([...api, '--password', 'public', 'broker', 'stats'], { TIDEMQ_API_PASSWORD: 'nope' })).code, 0, 'flags win');

    const dir = t.testdir();
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify({ management: { port: node.mgmtPort } }));
    const viaConfig = await ctl(['--config', good, 'broker', 'stats']);
    t.equal(viaConfig.code, 0, 'URL and credentials from the config file');
    t.match(viaConfig.stdout, /^connections\.count : \d+$/m);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ management: { port: node.mgmtPort, password: 'other' } }));
    t.equal((await ctl(['--config', bad, 'broker', 'stats'])).code, 1);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, JSON.stringify({ management: { port: 'x' } }));
    const configError = await ctl(['--config', broken, 'broker', 'stats']);
    t.equal(configError.code, 2);
    t.match(configError.stderr, /^tidemq ctl: .*management\.port/);
  });
});

t.test('an unreachable node and usage errors', async (t) => {
  const port = await freePort();
  const down = await ctl(['--api', `http://127.0.0.1:${port}`, 'broker', 'stats']);
  t.equal(down.code, 1);
  t.match(down.stderr, new RegExp(`^tidemq ctl: cannot reach http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*\\n$`));

  const unknown = await ctl(['bogus']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /^tidemq ctl: Unknown argument: bogus\nRun 'tidemq ctl --help' for usage\.\n$/);
  t.equal((await ctl(['clients', 'show'])).code, 2, 'a missing client id');
  t.equal((await ctl(['clients'])).code, 2, 'a family without a command');
  const help = await ctl(['--help']);
  t.equal(help.code, 0);
  for (const word of ['--api', '--user', '--password', '--config', 'broker', 'clients']) t.match(help.stdout, word);
  t.match((await ctl(['clients', 'list', '--help'])).stdout, /--json/);
});
