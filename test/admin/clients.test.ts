// /clients and /stats of a real node process, with real MQTT.js clients: list (paged), show, kick.
import t from 'tap';
import { adminRequest } from '../helpers/admin.js';
import { connectClient, messageCollector } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';

t.test('clients list/show/kick and stats against a real node', async (t) => {
  const node = await startNode(t);
  const v5 = await connectClient(t, node.mqttPort, { clientId: 'dev-5', protocolVersion: 5, keepalive: 30, clean: true, properties: { sessionExpiryInterval: 120 } });
  await v5.subscribeAsync(['a/#', 'b/+'], { qos: 1 });
  const v4 = await connectClient(t, node.mqttPort, { clientId: 'dev/4 x', protocolVersion: 4, keepalive: 45, clean: false });
  const watcher = await connectClient(t, node.mqttPort, { clientId: 'watcher', protocolVersion: 5 });
  await watcher.subscribeAsync('wills/#', { qos: 1 });
  const wills = messageCollector(watcher);

  const list4 = (await adminRequest(node, 'GET', '/api/v4/clients')).json as { code: number; data: Array<Record<string, unknown>>; meta: unknown };
  t.equal(list4.code, 0);
  t.same(list4.meta, { page: 1, limit: 10000, hasnext: false, count: 3 });
  const dev5 = list4.data.find((c) => c.clientid === 'dev-5');
  t.match(dev5, {
    node: node.name,
    clientid: 'dev-5',
    username: null,
    ip_address: '127.0.0.1',
    port: Number,
    proto_name: 'MQTT',
    proto_ver: 5,
    keepalive: 30,
    clean_start: true,
    expiry_interval: 120,
    connected: true,
    connected_at: /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/,
    subscriptions_cnt: 2,
    inflight: 0,
    mqueue_len: 0,
  });
  t.ok((dev5?.port as number) > 0, 'the client port');

  const page = (await adminRequest(node, 'GET', '/api/v5/clients?page=2&limit=2')).json as { data: unknown[]; meta: unknown };
  t.equal(page.data.length, 1);
  t.same(page.meta, { page: 2, limit: 2, hasnext: false, count: 3 });
  t.same(((await adminRequest(node, 'GET', '/api/v4/clients?_page=1&_limit=2')).json as { meta: unknown }).meta, { page: 1, limit: 2, hasnext: true, count: 3 });

  // Percent-encoded client ids in the path.
  const show5 = await adminRequest(node, 'GET', `/api/v5/clients/${encodeURIComponent('dev/4 x')}`);
  t.equal(show5.status, 200);
  t.match(show5.json, { clientid: 'dev/4 x', proto_ver: 4, keepalive: 45, clean_start: false, connected: true, inflight_cnt: 0, connected_at: /T.*Z$/ });
  const show4 = (await adminRequest(node, 'GET', `/api/v4/clients/${encodeURIComponent('dev/4 x')}`)).json as { code: number; data: unknown[] };
  t.equal(show4.code, 0);
  t.match(show4.data, [{ clientid: 'dev/4 x', proto_name: 'MQTT', proto_ver: 4 }]);

  t.match((await adminRequest(node, 'GET', '/api/v5/stats')).json, [
    { node: node.name, 'connections.count': 3, 'live_connections.count': 3, 'sessions.count': 3, 'subscriptions.count': 3, 'topics.count': 3 },
  ]);

  // Kick a 5.0 client with a will: DISCONNECT 0x98, and the will is published (server-side end).
  const willer = await connectClient(t, node.mqttPort, { clientId: 'willer', protocolVersion: 5, will: { topic: 'wills/willer', payload: Buffer.from('gone'), qos: 1, retain: false } });
  const reason = new Promise<number | undefined>((resolve) => willer.once('disconnect', (p) => resolve(p.reasonCode)));
  const kick = await adminRequest(node, 'DELETE', '/api/v5/clients/willer');
  t.equal(kick.status, 204);
  t.equal(kick.json, undefined);
  t.equal(await reason, 0x98, 'Administrative action');
  const [will] = await wills.next(1);
  t.equal(will?.topic, 'wills/willer');

  // Kick a 3.1.1 client through v4: closed; its persistent session stays, disconnected.
  const closed = new Promise<void>((resolve) => v4.once('close', () => resolve()));
  t.same((await adminRequest(node, 'DELETE', `/api/v4/clients/${encodeURIComponent('dev/4 x')}`)).json, { code: 0 });
  await closed;
  const after = (await adminRequest(node, 'GET', `/api/v5/clients/${encodeURIComponent('dev/4 x')}`)).json as Record<string, unknown>;
  t.match(after, { connected: false, ip_address: null, disconnected_at: String });
  t.match((await adminRequest(node, 'GET', '/api/v4/stats')).json, { code: 0, data: [{ 'live_connections.count': 2, 'sessions.count': 3 }] });
  // Kicking the disconnected session discards it (EMQX 4.4); then there is nothing left to kick.
  t.same((await adminRequest(node, 'DELETE', `/api/v4/clients/${encodeURIComponent('dev/4 x')}`)).json, { code: 0 }, 'disconnected session discarded');
  t.same((await adminRequest(node, 'GET', `/api/v4/clients/${encodeURIComponent('dev/4 x')}`)).json, { code: 0, data: [] });
  t.same((await adminRequest(node, 'DELETE', `/api/v4/clients/${encodeURIComponent('dev/4 x')}`)).json, { code: 112, message: 'not_found' }, 'nothing left to kick');
  t.match((await adminRequest(node, 'GET', '/api/v4/stats')).json, { code: 0, data: [{ 'live_connections.count': 2, 'sessions.count': 2 }] });
});
