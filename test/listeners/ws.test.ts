// MQTT over WebSocket (uWebSockets.js): MQTT.js clients beside TCP clients, frames cut across
// and packed into WebSocket messages, and clean refusals of bad upgrades and bad messages.
import mqtt from 'mqtt';
import t from 'tap';
import { connectClient, messageCollector } from '../helpers/clients.js';
import { DropReason, LimitHit } from '../../src/broker/stats.js';
import { eventually, rawWs, startTestNode } from './support.js';

const CONNECT = Buffer.from([0x10, 0x10, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x04, 0x72, 0x61, 0x77, 0x31]);
const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
const SUBSCRIBE = Buffer.from([0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x00]);
const SUBACK = Buffer.from([0x90, 0x03, 0x00, 0x01, 0x00]);
const PUBLISH = Buffer.from([0x30, 0x07, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x68, 0x69]);

t.test('MQTT.js over ws:// and TCP clients share subscriptions both ways', async (t) => {
  const node = await startTestNode(t);
  const wsClient = await mqtt.connectAsync(`ws://127.0.0.1:${node.port('ws')}/mqtt`, { clientId: 'ws-1', reconnectPeriod: 0, connectTimeout: 5000 });
  t.teardown(() => wsClient.endAsync(true));
  const tcpClient = await connectClient(t, node.port('tcp'), { clientId: 'tcp-1', protocolVersion: 5 });
  const atWs = messageCollector(wsClient);
  const atTcp = messageCollector(tcpClient);
  await wsClient.subscribeAsync('from/tcp', { qos: 1 });
  await tcpClient.subscribeAsync('from/ws', { qos: 1 });
  await tcpClient.publishAsync('from/tcp', 'hello ws', { qos: 1 });
  await wsClient.publishAsync('from/ws', Buffer.alloc(100_000, 7), { qos: 1 });
  const [m1] = await atWs.next(1);
  t.equal(m1?.payload.toString(), 'hello ws');
  const [m2] = await atTcp.next(1);
  t.equal(m2?.payload.length, 100_000, 'a 100 kB payload crosses from WebSocket to TCP whole');
  t.ok(m2?.payload.every((b) => b === 7));
  const debug = node.logs().find((r) => r.msg === 'client connected' && r.clientId === 'ws-1');
  t.equal(debug?.address, '127.0.0.1', 'the debug connect line names the WebSocket client address');
});

t.test('MQTT 3.1 over WebSocket uses the mqttv3.1 subprotocol', async (t) => {
  const node = await startTestNode(t);
  const client = await mqtt.connectAsync(`ws://127.0.0.1:${node.port('ws')}/mqtt`, { protocolVersion: 3, protocolId: 'MQIsdp', clientId: 'old', reconnectPeriod: 0 });
  t.teardown(() => client.endAsync(true));
  await client.subscribeAsync('x', { qos: 0 });
  const got = messageCollector(client);
  await client.publishAsync('x', 'v3.1');
  t.equal((await got.next(1))[0]?.payload.toString(), 'v3.1');
});

t.test('frames may span WebSocket messages, and several may share one', async (t) => {
  const node = await startTestNode(t);
  const ws = await rawWs(t, node.port('ws'), { protocol: 'foo, mqtt' });
  t.match(ws.status, / 101 /);
  t.match(ws.headers, /sec-websocket-protocol: mqtt$/im, 'the mqtt subprotocol is picked from the offered list');
  // CONNECT in three messages, cut inside the fixed header and inside the payload.
  ws.send(CONNECT.subarray(0, 1));
  ws.send(CONNECT.subarray(1, 7));
  ws.send(CONNECT.subarray(7));
  t.same(await ws.read(4), CONNACK);
  // SUBSCRIBE and PUBLISH in one message; the second PUBLISH's start rides along too.
  ws.send(Buffer.concat([SUBSCRIBE, PUBLISH, PUBLISH.subarray(0, 3)]));
  ws.send(PUBLISH.subarray(3));
  t.same(await ws.read(SUBACK.length), SUBACK);
  t.same(await ws.read(PUBLISH.length), PUBLISH);
  t.same(await ws.read(PUBLISH.length), PUBLISH);
});

t.test('bad upgrades and bad messages are refused cleanly', async (t) => {
  const node = await startTestNode(t, { mqtt: { max_packet_size: 1024, max_connect_size: 1024 } });
  const port = node.port('ws');
  const stats = node.listeners.find((l) => l.name === 'ws')?.stats;

  const noProtocol = await rawWs(t, port, { protocol: undefined });
  t.match(noProtocol.status, / 400 /, 'an upgrade without a subprotocol gets 400');
  const wrongProtocol = await rawWs(t, port, { protocol: 'wamp' });
  t.match(wrongProtocol.status, / 400 /, 'an upgrade with only other subprotocols gets 400');
  const wrongPath = await rawWs(t, port, { path: '/other', protocol: 'mqtt' });
  t.match(wrongPath.status, / 404 /, 'another path gets 404');
  t.equal(stats?.refused, 2, 'both subprotocol refusals are counted');

  const oversize = await rawWs(t, port, { protocol: 'mqtt' });
  oversize.send(CONNECT);
  t.same(await oversize.read(4), CONNACK);
  oversize.send(Buffer.alloc(4096));
  await oversize.closed();
  t.pass('a message over max_packet_size closes the WebSocket (uWS maxPayloadLength)');

  const text = await rawWs(t, port, { protocol: 'mqtt' });
  text.send(CONNECT, 1);
  t.equal(await text.closed(), 1003, 'a text frame closes with 1003 [MQTT-6.0.0-1]');

  const garbage = await rawWs(t, port, { protocol: 'mqtt' });
  garbage.send(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]));
  await garbage.closed();
  t.pass('a malformed MQTT stream closes its WebSocket');

  const fine = await rawWs(t, port, { protocol: 'mqtt' });
  fine.send(CONNECT);
  t.same(await fine.read(4), CONNACK, 'the listener still serves');
  fine.send(Buffer.from([0xe0, 0x00]));
  await fine.closed();
  await eventually(() => stats?.live === 0 && node.broker.stats.connectionsLive === 0, 5000, 'every connection released');
  t.pass('live counts are back to 0');
});

t.test('ws_max_connections caps the WebSocket listener', async (t) => {
  const node = await startTestNode(t, { listeners: { ws_max_connections: 1 } });
  const first = await rawWs(t, node.port('ws'), { protocol: 'mqtt' });
  t.match(first.status, / 101 /);
  const second = await rawWs(t, node.port('ws'), { protocol: 'mqtt' });
  t.match(second.status, / 503 /, 'over the cap the upgrade gets 503');
  t.equal(node.listeners.find((l) => l.name === 'ws')?.stats.maxConnections, 1);
  const tcp = await connectClient(t, node.port('tcp'), { clientId: 'tcp-ok' });
  t.ok(tcp.connected, 'the TCP listener has its own count');
});

t.test('a slow WebSocket reader: bounded output, QoS 0 dropped, the stream stays whole', async (t) => {
  const node = await startTestNode(t);
  const slow = await rawWs(t, node.port('ws'), { protocol: 'mqtt' });
  slow.send(CONNECT);
  t.same(await slow.read(4), CONNACK);
  slow.send(SUBSCRIBE);
  t.same(await slow.read(SUBACK.length), SUBACK);
  slow.pause();
  const publisher = await connectClient(t, node.port('tcp'), { clientId: 'flood' });
  const payload = Buffer.alloc(64 * 1024, 1);
  for (let i = 0; i < 300; i++) publisher.publish('a/b', payload, { qos: 0 });
  await eventually(() => node.broker.stats.dropped > 0, 10_000, 'QoS 0 to be dropped for the congested WebSocket');
  t.notOk(slow.isClosed, 'a slow reader under the bound stays connected');
  slow.resume();
  // Whatever arrives is whole PUBLISH frames: 0x30, remaining length 65541 (3 bytes), topic, payload.
  const frame = await slow.read(4 + 5 + payload.length, 10_000);
  t.same(frame.subarray(0, 4), Buffer.from([0x30, 0x85, 0x80, 0x04]));
  t.ok(frame.subarray(9).equals(payload));
});

t.test('a WebSocket client over the output mark for slow_consumer_timeout is closed, as on TCP', async (t) => {
  const node = await startTestNode(t, { mqtt: { slow_consumer_timeout: 1, max_output_buffer: 256 * 1024 } });
  const slow = await rawWs(t, node.port('ws'), { protocol: 'mqtt' });
  slow.send(CONNECT);
  t.same(await slow.read(4), CONNACK);
  slow.send(SUBSCRIBE);
  t.same(await slow.read(SUBACK.length), SUBACK);
  slow.pause();
  const publisher = await connectClient(t, node.port('tcp'), { clientId: 'flood-ws' });
  const payload = Buffer.alloc(64 * 1024, 1);
  const stats = node.broker.stats;
  for (let i = 0; i < 200 && stats.limitHits[LimitHit.SlowConsumer] === 0; i++) {
    publisher.publish('a/b', payload, { qos: 0 });
    await new Promise((r) => setTimeout(r, 20));
  }
  await eventually(() => stats.limitHits[LimitHit.SlowConsumer] === 1, 10_000, 'the slow WebSocket to be closed');
  t.equal(stats.serverDisconnects[0x97], 1, 'counted as a server disconnect, quota exceeded');
  t.ok((stats.drops[DropReason.Congested] as number) > 0, 'QoS 0 was dropped while it was over the mark');
  await eventually(() => stats.connectionsLive === 1, 5000, 'the WebSocket connection to be gone');
  t.pass('only the publisher is left');
});
