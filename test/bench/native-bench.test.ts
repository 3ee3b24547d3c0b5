// Keeps the native load generator from rotting: builds it, runs each mode briefly against the
// C reference server or Aedes, and checks the counts in the RESULT lines.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startAedes } from '../../native-bench/aedes-server.js';
import { num, parseResult, runNbench, type Result } from '../../native-bench/lib/nbench.js';

const dir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native-bench');
const nbench = join(dir, 'build', 'nbench');
const missing = ['make', 'gcc'].filter((tool) => spawnSync('which', [tool]).status !== 0);

t.test('parseResult reads key=value fields and ignores other lines', async (t) => {
  t.same(parseResult('RESULT mode=conn established=3 conn_per_s=1.500'), { mode: 'conn', established: '3', conn_per_s: '1.500' });
  t.equal(parseResult('READY established=3'), undefined);
  t.ok(Number.isNaN(num({ mode: 'x' }, 'absent')));
});

/** Starts `nbench serve` on a free port; resolves with the port once it listens. */
function serve(args: string[]): Promise<{ port: number; child: ChildProcess; result: Promise<Result | undefined> }> {
  const child = spawn(nbench, ['serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  let last: Result | undefined;
  const result = new Promise<Result | undefined>((res) => child.once('close', () => res(last)));
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error('serve did not listen in 5 s')), 5000);
    lines.on('line', (line) => {
      last = parseResult(line) ?? last;
      const m = /^LISTENING port=(\d+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        res({ port: Number(m[1]), child, result });
      }
    });
  });
}

t.test('native-bench', { skip: missing.length ? `${missing.join(' and ')} not installed: cannot build nbench` : false }, async (t) => {
  const make = spawnSync('make', ['-C', dir, 'nbench'], { encoding: 'utf8', timeout: 60000 });
  t.equal(make.status, 0, `make -C native-bench nbench: ${make.stderr}`);
  t.notMatch(make.stderr, /warning/, 'the C code builds without warnings');

  await t.test('conn: 200 connections against the C reference server', async (t) => {
    const srv = await serve([]);
    t.teardown(() => void srv.child.kill('SIGTERM'));
    const run = await runNbench(nbench, ['conn', '--port', String(srv.port), '-n', '200', '--version', '5'], { timeoutMs: 15000 });
    const r = run.result;
    t.equal(r.mode, 'conn');
    t.equal(num(r, 'attempted'), 200);
    t.equal(num(r, 'established'), 200);
    t.equal(num(r, 'failed'), 0);
    t.equal(r.complete, '1');
    t.ok(num(r, 'conn_per_s') > 0 && num(r, 'connack_p99_ms') >= num(r, 'connack_p50_ms'), 'rate and latency reported');
    t.ok(run.lines.some((l) => l.startsWith('READY established=200 ')), 'READY line before the hold');
    srv.child.kill('SIGTERM');
    const seen = await srv.result;
    t.equal(num(seen ?? {}, 'connacks'), 200, "the server's own count agrees");
  });

  await t.test('conn: refused connections are counted by cause', async (t) => {
    const srv = await serve([]);
    srv.child.kill('SIGTERM');
    await srv.result;
    const run = await runNbench(nbench, ['conn', '--port', String(srv.port), '-n', '20'], { timeoutMs: 15000 });
    t.equal(num(run.result, 'established'), 0);
    t.equal(num(run.result, 'fail_refused'), 20);
  });

  await t.test('pubsub: fan-out against Aedes, nothing lost or duplicated', async (t) => {
    const aedes = await startAedes(0);
    t.teardown(() => aedes.close());
    const args = ['pubsub', '--port', String(aedes.port), '--subs', '5', '--pubs', '2', '--rate', '400', '--duration', '0.5', '--topic', 'nbtest/t'];
    const r = (await runNbench(nbench, args, { timeoutMs: 20000 })).result;
    t.equal(r.complete, '1');
    t.ok(num(r, 'sent') > 100, `sent ${r.sent ?? ''}`);
    t.equal(num(r, 'expected'), num(r, 'sent') * 5);
    t.equal(num(r, 'unique'), num(r, 'expected'));
    t.equal(num(r, 'lost'), 0);
    t.equal(num(r, 'duplicates'), 0);
  });

  await t.test('watch: evacuation-like eviction is classified and the Server Reference followed', async (t) => {
    const target = await serve([]);
    const evicting = await serve(['--evict-after', '300', '--evict-reason', '0x9C', '--server-ref', `127.0.0.1:${target.port}`]);
    t.teardown(() => {
      target.child.kill('SIGTERM');
      evicting.child.kill('SIGTERM');
    });
    const args = ['watch', '--port', String(evicting.port), '-n', '50', '--duration', '1.5', '--follow', '--progress', '0'];
    const r = (await runNbench(nbench, args, { timeoutMs: 15000 })).result;
    t.equal(num(r, 'disc_rc_0x9C'), 50);
    t.equal(num(r, 'disc_with_server_ref'), 50);
    t.equal(num(r, 'followed_ref'), 50);
    t.equal(num(r, 'reconnected'), 50);
    t.equal(num(r, 'up'), 50);
    t.equal(num(r, 'gave_up'), 0);
  });
});
