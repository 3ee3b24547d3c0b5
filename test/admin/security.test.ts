// The management API of a real node against a browser's cross-site request, route probing,
// malformed Basic headers and password guessing; scripts (curl, our CLI) keep working.
import { join } from 'node:path';
import t from 'tap';
import { repoRoot } from '../helpers/build.js';
import { run } from '../helpers/clients.js';
import { startNode, type NodeProcess } from '../helpers/node-process.js';

const ADMIN = `Basic ${Buffer.from('admin:public').toString('base64')}`;

async function call(node: NodeProcess, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; json: unknown; headers: Headers }> {
  const res = await fetch(`http://127.0.0.1:${node.mgmtPort}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
  const text = await res.text();
  const isJson = res.headers.get('content-type')?.startsWith('application/json') === true;
  return { status: res.status, json: isJson ? (JSON.parse(text) as unknown) : text, headers: res.headers };
}

const available = async (node: NodeProcess): Promise<number> => (await call(node, 'GET', '/api/v4/load_rebalance/availability_check')).status;

t.test('cross-site state changes are refused; curl and the CLI work as before', async (t) => {
  const node = await startNode(t);
  const start = `/api/v4/load_rebalance/${node.name}/evacuation/start`;
  const own = `http://127.0.0.1:${node.mgmtPort}`;
  // A page elsewhere, with the operator's cached credentials and a "simple" text/plain body.
  const browser = { authorization: ADMIN, 'content-type': 'text/plain;charset=UTF-8' };
  for (const [what, extra] of [
    ['Origin of another site', { origin: 'http://evil.example' }],
    ['Origin of another port on this host', { origin: 'http://127.0.0.1:1' }],
    ['Origin null (sandboxed page)', { origin: 'null' }],
    ['Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site' }],
  ] as const) {
    const r = await call(node, 'POST', start, { ...browser, ...extra }, '{"conn_evict_rate":10}');
    t.equal(r.status, 403, `${what}: 403`);
    t.match(r.json, { code: 403, message: /cross-site POST refused/ }, 'with a message');
  }
  const v5 = await call(node, 'DELETE', '/api/v5/clients/x', { authorization: ADMIN, origin: 'http://evil.example' });
  t.match(v5, { status: 403, json: { code: 'FORBIDDEN' } }, 'v5 and DELETE too');
  t.equal(await available(node), 200, 'nothing was started');
  const get = await call(node, 'GET', '/api/v4/stats', { authorization: ADMIN, origin: 'http://evil.example' });
  t.equal(get.status, 200, 'reads are not state changes (the browser keeps their answers from the page anyway)');

  const sameOrigin = await call(node, 'GET', '/api/v4/load_rebalance/global_status', { authorization: ADMIN, origin: own, 'sec-fetch-site': 'same-origin' });
  t.equal(sameOrigin.status, 200, 'a same-origin page');

  const curl = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-u', 'admin:public', '-X', 'POST', `${own}${start}`, '-H', 'Content-Type: text/plain', '-d', '{"conn_evict_rate":10}']);
  t.equal(curl.stdout, '200', 'curl -d with any Content-Type (no Origin header) works as today');
  t.equal(await available(node), 503, 'and started the evacuation');
  const stop = await run(process.execPath, [join(repoRoot, 'bin', 'tidemq'), 'ctl', '--api', own, 'rebalance', 'stop'], { timeoutMs: 20_000 });
  t.equal(stop.code, 0, `the CLI's POST works: ${stop.stdout}${stop.stderr}`);
  t.equal(await available(node), 200, 'stopped');
});

t.test('credentials before routing, strict Basic, and the public endpoints', async (t) => {
  const node = await startNode(t, { env: { TIDEMQ_MANAGEMENT__MAX_FAILED_LOGINS: '0' } });
  t.equal((await call(node, 'GET', '/api/v5/no/such/thing')).status, 401, 'an unknown path without credentials: 401, not 404');
  t.equal((await call(node, 'GET', '/api/v4/nope')).status, 401);
  t.equal((await call(node, 'GET', '/nothing-here')).status, 401, 'outside /api too');
  t.equal((await call(node, 'GET', '/api/v5/no/such/thing', { authorization: ADMIN })).status, 404, 'with credentials: 404');
  t.equal(await available(node), 200, 'availability_check needs no credentials (SPEC 8)');
  t.equal((await call(node, 'GET', '/api/v4/load_rebalance/availability_check', { authorization: 'Basic garbage!' })).status, 200, 'and ignores bad ones');
  t.equal((await call(node, 'GET', '/metrics')).status, 200, '/metrics: no credentials by default');
  for (const bad of [`${ADMIN}garbage`, `${ADMIN} trailing`, `${ADMIN}=`, `${ADMIN}!`, `Basic ${Buffer.from('admin:public').toString('base64').slice(0, -1)}`]) {
    t.equal((await call(node, 'GET', '/api/v4/stats', { authorization: bad })).status, 401, `refused: ${JSON.stringify(bad)}`);
  }
  t.equal((await call(node, 'GET', '/api/v4/stats', { authorization: ADMIN.replace('Basic', 'basic') })).status, 200, 'the scheme is case-insensitive (RFC 7617)');
});

t.test('failed API logins are throttled per source address (429 + Retry-After)', async (t) => {
  const node = await startNode(t, { env: { TIDEMQ_MANAGEMENT__MAX_FAILED_LOGINS: '3', TIDEMQ_MANAGEMENT__FAILED_LOGIN_WINDOW: '60s' } });
  const wrong = `Basic ${Buffer.from('admin:guess').toString('base64')}`;
  for (let i = 0; i < 2; i++) t.equal((await call(node, 'GET', '/api/v4/stats')).status, 401, 'no credentials at all: not counted');
  for (let i = 0; i < 3; i++) t.equal((await call(node, 'GET', '/api/v4/stats', { authorization: wrong })).status, 401, `guess ${i + 1}`);
  const blocked = await call(node, 'GET', '/api/v4/stats', { authorization: ADMIN });
  t.equal(blocked.status, 429, 'then even the right password is refused, unchecked');
  t.match(blocked.json, { code: 429, message: /too many failed logins from 127\.0\.0\.1: retry in \d+ s/ });
  t.ok(Number(blocked.headers.get('retry-after')) > 0 && Number(blocked.headers.get('retry-after')) <= 60, 'Retry-After in seconds');
  const ctl = await run(process.execPath, [join(repoRoot, 'bin', 'tidemq'), 'ctl', '--api', `http://127.0.0.1:${node.mgmtPort}`, 'broker', 'stats'], { timeoutMs: 20_000 });
  t.not(ctl.code, 0, 'the CLI from the same address is refused too');
  t.match(ctl.stdout + ctl.stderr, /too many failed logins/, 'and says why');
  t.equal(await available(node), 200, 'availability_check keeps answering the load balancers');
  const text = await (await fetch(`http://127.0.0.1:${node.mgmtPort}/metrics`)).text();
  t.match(text, /tidemq_management_logins_throttled_total 2/, 'counted');
  t.equal(node.output().split('\n').filter((l) => l.includes('management.max_failed_logins')).length, 1, 'and logged once');
});
