// The management API in this process over real HTTP (node:http on a free port): auth, the v4 and v5
// views of results and errors, the availability switch, /metrics auth, and the error table.
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { AdminApi, ok, page, type Route } from '../../src/admin/api.js';
import { LoginThrottle } from '../../src/broker/login-throttle.js';
import type { AdminContext } from '../../src/admin/context.js';
import { ApiError, errorForms, fromV5, type ApiErrorKind } from '../../src/admin/errors.js';
import { startAdminServer, type AdminServerOptions } from '../../src/admin/server.js';
import { defaultConfig } from '../../src/config/schema.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { testBroker } from '../helpers/broker.js';

const log = pino({ level: 'silent' });
const ADMIN = `Basic ${Buffer.from('admin:public').toString('base64')}`;
const WRONG = `Basic ${Buffer.from('admin:nope').toString('base64')}`;

async function server(t: Test, opts: Partial<AdminServerOptions> = {}): Promise<{ url: string; availability: { serving: boolean } }> {
  const config = defaultConfig();
  const broker = testBroker({ config, log });
  const availability = { serving: true };
  const ctx: AdminContext = { broker, nodeName: config.node.name, version: '0.0.0-test', startedAt: Date.now(), availability };
  const metrics = new Metrics({ nodeName: config.node.name, version: '0.0.0-test', broker, listeners: [] });
  const s = await startAdminServer(ctx, metrics, { bind: '127.0.0.1', port: 0, username: 'admin', password: 'public', metricsAuth: false, loginThrottle: new LoginThrottle(0, 0), ...opts }, log);
  t.teardown(() => s.close());
  return { url: `http://127.0.0.1:${s.port}`, availability };
}

async function get(url: string, authorization?: string, method = 'GET'): Promise<{ status: number; body: unknown; headers: Headers }> {
  const res = await fetch(url, { method, headers: authorization === undefined ? {} : { authorization } });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text), headers: res.headers };
}

t.test('Basic auth: 401 with a JSON body in both views', async (t) => {
  const { url } = await server(t);
  for (const auth of [undefined, WRONG, 'Bearer abc', 'Basic !!!']) {
    const v4 = await get(`${url}/api/v4/stats`, auth);
    t.equal(v4.status, 401, `v4 ${auth ?? 'no credentials'}`);
    t.same(v4.body, { code: 401, message: 'Check username/password' });
    t.match(v4.headers.get('www-authenticate'), /^Basic/);
    const v5 = await get(`${url}/api/v5/stats`, auth);
    t.equal(v5.status, 401);
    t.same(v5.body, { code: 'BAD_USERNAME_OR_PWD', message: 'Check username/password' });
  }
  t.equal((await get(`${url}/api/v4/stats`, ADMIN)).status, 200, 'the right credentials');
});

t.test('availability check: no auth needed, credentials accepted, 503 when the switch is off', async (t) => {
  const { url, availability } = await server(t);
  for (const v of ['v4', 'v5']) {
    for (const auth of [undefined, ADMIN, WRONG]) {
      const r = await get(`${url}/api/${v}/load_rebalance/availability_check`, auth);
      t.equal(r.status, 200, `${v} ${auth ?? 'no credentials'}`);
      t.same(r.body, {});
    }
  }
  availability.serving = false;
  const v4 = await get(`${url}/api/v4/load_rebalance/availability_check`);
  t.equal(v4.status, 503);
  t.same(v4.body, {}, 'EMQX 4.4: 503 with an empty object');
  const v5 = await get(`${url}/api/v5/load_rebalance/availability_check`, ADMIN);
  t.equal(v5.status, 503);
  t.same(v5.body, { code: 'NODE_EVACUATING', message: 'Node Evacuating' });
  availability.serving = true;
  t.equal((await get(`${url}/api/v4/load_rebalance/availability_check`)).status, 200, 'serving again');
});

/** One raw request, as HAProxy's health check writes it; returns the status line. */
async function rawStatusLine(url: string, request: string): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: Number(port) }, () => s.write(request));
    let got = '';
    s.setTimeout(3000, () => s.destroy(new Error(`no answer to ${JSON.stringify(request)}`)));
    s.on('data', (d) => {
      got += d.toString('latin1');
      const eol = got.indexOf('\r\n');
      if (eol >= 0) {
        s.destroy();
        resolve(got.slice(0, eol));
      }
    });
    s.on('error', reject);
  });
}

t.test("availability check answers HAProxy's default httpchk probe (HTTP/1.0, no Host header)", async (t) => {
  const { url, availability } = await server(t);
  const path = '/api/v4/load_rebalance/availability_check';
  t.match(await rawStatusLine(url, `GET ${path} HTTP/1.0\r\n\r\n`), /^HTTP\/1\.[01] 200/, 'HTTP/1.0 without Host');
  t.match(await rawStatusLine(url, `GET ${path} HTTP/1.1\r\nConnection: close\r\n\r\n`), /^HTTP\/1\.1 200/, 'HTTP/1.1 without Host');
  availability.serving = false;
  t.match(await rawStatusLine(url, `GET ${path} HTTP/1.0\r\n\r\n`), /^HTTP\/1\.[01] 503/, '503 while not serving');
});

t.test('v4 envelope vs v5 bodies, and errors in each', async (t) => {
  const { url } = await server(t);
  const v4 = await get(`${url}/api/v4/stats`, ADMIN);
  t.match(v4.body, { code: 0, data: [{ node: 'tidemq@127.0.0.1', 'connections.count': 0, 'sessions.count': 0 }] });
  const v5 = await get(`${url}/api/v5/stats`, ADMIN);
  t.match(v5.body, [{ node: 'tidemq@127.0.0.1', 'live_connections.count': 0 }]);
  const agg = await get(`${url}/api/v5/stats?aggregate=true`, ADMIN);
  t.match(agg.body, { 'connections.count': 0, 'retained.count': 0 });
  t.notOk(Object.hasOwn(agg.body as object, 'node'), 'aggregated: no node key');

  const nodes4 = await get(`${url}/api/v4/nodes`, ADMIN);
  t.match(nodes4.body, { code: 0, data: [{ node: 'tidemq@127.0.0.1', node_status: 'Running', version: '0.0.0-test', uptime: /seconds$/, connections: 0 }] });
  const nodes5 = await get(`${url}/api/v5/nodes`, ADMIN);
  t.match(nodes5.body, [{ node: 'tidemq@127.0.0.1', node_status: 'running', uptime: Number }]);
  t.match((await get(`${url}/api/v5/nodes/tidemq@127.0.0.1`, ADMIN)).body, { node: 'tidemq@127.0.0.1' });
  const unknownNode = await get(`${url}/api/v5/nodes/other@h`, ADMIN);
  t.equal(unknownNode.status, 404);
  t.same(unknownNode.body, { code: 'NOT_FOUND', message: 'invalid node: other@h' });

  // Validation: v4 answers HTTP 200 with code 400, v5 a real 400.
  const bad4 = await get(`${url}/api/v4/clients?_page=0`, ADMIN);
  t.equal(bad4.status, 200);
  t.same(bad4.body, { code: 400, message: 'invalid _page: 0' });
  const bad5 = await get(`${url}/api/v5/clients?limit=x`, ADMIN);
  t.equal(bad5.status, 400);
  t.same(bad5.body, { code: 'BAD_REQUEST', message: 'invalid limit: x' });

  // Unknown client: EMQX 4.4 kick answers 200 {"code":112,"message":"not_found"}; lookup an empty list.
  const kick4 = await get(`${url}/api/v4/clients/ghost`, ADMIN, 'DELETE');
  t.equal(kick4.status, 200);
  t.same(kick4.body, { code: 112, message: 'not_found' });
  t.same((await get(`${url}/api/v4/clients/ghost`, ADMIN)).body, { code: 0, data: [] });
  const kick5 = await get(`${url}/api/v5/clients/ghost`, ADMIN, 'DELETE');
  t.equal(kick5.status, 404);
  t.same(kick5.body, { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' });
  t.equal((await get(`${url}/api/v5/clients/ghost`, ADMIN)).status, 404);

  for (const path of ['/api/v4/nope', '/api/v5/nope', '/api/v6/stats', '/nope', '/api/v4/stats/extra']) {
    const r = await get(`${url}${path}`, ADMIN);
    t.equal(r.status, 404, path);
    t.equal(r.headers.get('content-type'), 'application/json');
  }
  t.equal((await get(`${url}/api/v4/stats`, ADMIN, 'POST')).status, 404, 'wrong method');
  t.equal((await get(`${url}/api/v4/stats/`, ADMIN)).status, 200, 'a trailing slash');
});

t.test('/metrics: no auth by default; management.metrics_auth asks for the credentials', async (t) => {
  const open = await server(t);
  const res = await fetch(`${open.url}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/plain/);
  t.match(await res.text(), /^# HELP tidemq_connections /m);
  const closed = await server(t, { metricsAuth: true });
  t.equal((await fetch(`${closed.url}/metrics`)).status, 401);
  t.equal((await fetch(`${closed.url}/metrics`, { headers: { authorization: ADMIN } })).status, 200);
});

t.test('page(): EMQX paging meta, v4 and v5 parameter names and defaults', async (t) => {
  const items = Array.from({ length: 25 }, (_, i) => i);
  const take = (skip: number, limit: number): number[] => items.slice(skip, skip + limit);
  const req = (version: 'v4' | 'v5', q: string) => ({ version, params: {}, query: new URLSearchParams(q), body: undefined });
  t.same(page(req('v4', ''), 25, take), ok(items, { page: 1, limit: 10000, hasnext: false, count: 25 }));
  t.same(page(req('v5', ''), 25, take), ok(items, { page: 1, limit: 100, hasnext: false, count: 25 }));
  t.same(page(req('v4', '_page=2&_limit=10'), 25, take), ok(items.slice(10, 20), { page: 2, limit: 10, hasnext: true, count: 25 }));
  t.same(page(req('v5', 'page=3&limit=10'), 25, take), ok(items.slice(20), { page: 3, limit: 10, hasnext: false, count: 25 }));
  t.same(page(req('v5', 'page=9&limit=10'), 25, take), ok([], { page: 9, limit: 10, hasnext: false, count: 25 }), 'past the end');
  t.same(page(req('v4', '_limit=999999'), 25, take), ok(items, { page: 1, limit: 10000, hasnext: false, count: 25 }), 'limit capped');
  t.throws(() => page(req('v4', '_limit=-1'), 25, take), ApiError);
});

t.test('a handler error that is no ApiError: logged, 500 in both views', async (t) => {
  const errors: unknown[] = [];
  const boom: Route = {
    method: 'GET',
    path: '/boom',
    handler: () => {
      throw new Error('boom');
    },
  };
  const api = new AdminApi([boom], { username: 'a', password: 'b', metricsAuth: false, loginThrottle: new LoginThrottle(0, 0), onThrottled: () => undefined, metrics: async () => ({ contentType: 'text/plain', text: '' }), onError: (err) => errors.push(err) });
  const auth = `Basic ${Buffer.from('a:b').toString('base64')}`;
  const v4 = await api.handle({ method: 'GET', path: '/api/v4/boom', query: '', authorization: auth, origin: '', fetchSite: '', host: '', remoteAddress: '127.0.0.1', body: Buffer.alloc(0) });
  t.equal(v4.status, 500);
  t.same(JSON.parse(v4.body), { code: 102, message: 'internal error' });
  const v5 = await api.handle({ method: 'GET', path: '/api/v5/boom', query: '', authorization: auth, origin: '', fetchSite: '', host: '', remoteAddress: '127.0.0.1', body: Buffer.alloc(0) });
  t.equal(v5.status, 500);
  t.same(JSON.parse(v5.body), { code: 'INTERNAL_ERROR', message: 'internal error' });
  t.equal(errors.length, 2);
  // The adapter passes a null body when it was over the size limit.
  const big = await api.handle({ method: 'GET', path: '/api/v5/boom', query: '', authorization: auth, origin: '', fetchSite: '', host: '', remoteAddress: '127.0.0.1', body: null });
  t.equal(big.status, 413);
  t.same(JSON.parse(big.body), { code: 'PAYLOAD_TOO_LARGE', message: 'request body too large' });
});

t.test('errorForms: one table for v4, v5 and the CLI; fromV5 inverts the v5 code', async (t) => {
  const kinds: ApiErrorKind[] = ['bad_request', 'not_found', 'client_not_found', 'unauthorized', 'payload_too_large', 'node_evacuating', 'unavailable', 'internal'];
  for (const kind of kinds) {
    const forms = errorForms(new ApiError(kind, 'why'));
    const back = fromV5(forms.v5.body.code, 'why');
    t.equal(back?.kind, kind, `${kind} round-trips through its v5 code`);
    t.ok(forms.cli.length > 0);
  }
  t.same(errorForms(new ApiError('bad_request', 'invalid conn_evict_rate value')), {
    v4: { status: 200, body: { code: 400, message: 'invalid conn_evict_rate value' } },
    v5: { status: 400, body: { code: 'BAD_REQUEST', message: 'invalid conn_evict_rate value' } },
    cli: 'invalid conn_evict_rate value',
  });
  t.equal(errorForms(new ApiError('unavailable', 'rpc timeout')).v5.status, 503);
  t.equal(errorForms(new ApiError('client_not_found', 'Client ID not found')).cli, 'Not Found.');
  t.equal(fromV5('SOMETHING_ELSE', 'x'), undefined);
});
