// GET /metrics of a real node: well-formed (HELP, TYPE, names, low cardinality) and counters that
// move on the events they count.
import t from 'tap';
import { rawHandshake } from '../broker/support.js';
import { adminRequest } from '../helpers/admin.js';
import { connectClient, rawConnect } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';
import { parsePrometheus, value, type Family } from './prom-text.js';


t.test('/metrics of a real node', async (t) => {
  const node = await startNode(t);
  const scrape = async (): Promise<Map<string, Family>> => {
    const res = await fetch(`http://127.0.0.1:${node.mgmtPort}/metrics`);
    t.equal(res.status, 200, 'no credentials needed');
    return parsePrometheus(await res.text());
  };

  t.test('every metric has HELP and TYPE, the tidemq_ prefix, _total on counters, no per-client labels', async (t) => {
    const families = await scrape();
    t.ok(families.size > 30, `${families.size} metric families`);
    for (const [name, f] of families) {
      t.ok(f.help !== undefined && f.help.length > 0, `${name} has HELP`);
      t.ok(f.type !== undefined, `${name} has TYPE`);
      t.match(name, /^tidemq_[a-z0-9_]+$/, `${name}: prefixed snake case`);
      if (f.type === 'counter') t.match(name, /_total$/, `counter ${name} ends in _total`);
      for (const s of f.samples) {
        for (const label of Object.keys(s.labels)) t.notMatch(label, /client|topic|user|address/, `${name}: no per-client label ${label}`);
      }
    }
    for (const name of [
      'tidemq_connections',
      'tidemq_sessions',
      'tidemq_connacks_total',
      'tidemq_accepts_total',
      'tidemq_packets_received_total',
      'tidemq_sent_bytes_total',
      'tidemq_process_resident_memory_bytes',
      'tidemq_nodejs_heap_size_used_bytes',
      'tidemq_nodejs_eventloop_lag_seconds',
      'tidemq_process_open_fds',
      'tidemq_process_max_fds',
    ]) {
      t.ok(families.has(name), `exports ${name}`);
    }
    t.equal(value(families, 'tidemq_node_info', { node: node.name }), 1);
  });

  t.test('counters move on connect, publish, disconnects and a protocol error', async (t) => {
    const before = await scrape();
    const client = await connectClient(t, node.mqttPort, { clientId: 'm1', protocolVersion: 4 });
    // PUBLISH QoS 1, topic "m/t", payload "hello": 2 fixed header + 2+3 topic + 2 packet id + 5 = 14 bytes.
    await client.publishAsync('m/t', 'hello', { qos: 1 });
    const afterPublish = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}): number => value(afterPublish, name, labels) - value(before, name, labels);
    t.equal(delta('tidemq_connacks_total', { reason: 'success' }), 1);
    t.equal(delta('tidemq_packets_received_total', { type: 'connect' }), 1);
    t.equal(delta('tidemq_packets_sent_total', { type: 'connack' }), 1);
    t.equal(delta('tidemq_sent_bytes_total', { type: 'connack' }), 4, 'a 3.1.1 CONNACK is 4 bytes');
    t.equal(delta('tidemq_connections_opened_total'), 1);
    t.equal(delta('tidemq_accepts_total', { listener: 'tcp', outcome: 'accepted' }), 1);
    t.equal(delta('tidemq_packets_received_total', { type: 'publish' }), 1);
    t.equal(delta('tidemq_received_bytes_total', { type: 'publish' }), 14);
    t.equal(delta('tidemq_packets_sent_total', { type: 'puback' }), 1);
    t.equal(delta('tidemq_messages_routed_total'), 1);
    t.equal(delta('tidemq_sessions_created_total'), 1);
    t.equal(value(afterPublish, 'tidemq_connections'), 1);
    t.equal(value(afterPublish, 'tidemq_listener_connections', { listener: 'tcp' }), 1, 'open on the TCP listener');
    t.equal(value(afterPublish, 'tidemq_sessions', { state: 'connected' }), 1);

    // A refused CONNECT (3.1.1, empty client id with Clean Session 0 [MQTT-3.1.3-8]) and a malformed packet.
    const refused = await rawConnect(t, node.mqttPort);
    refused.send([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 60, 0, 0]);
    await refused.closed();
    const bad = await rawConnect(t, node.mqttPort);
    await rawHandshake(bad, 'bad', 4);
    bad.send([0x80, 0x00]); // SUBSCRIBE with reserved flags 0000 [MQTT-3.8.1-1]
    await bad.closed();

    // A server-side disconnect (kick) and a client's DISCONNECT.
    const kicked = await connectClient(t, node.mqttPort, { clientId: 'kicked', protocolVersion: 5 });
    const gone = new Promise<void>((resolve) => kicked.once('disconnect', () => resolve()));
    t.equal((await adminRequest(node, 'DELETE', '/api/v5/clients/kicked')).status, 204);
    await gone;
    const polite = await connectClient(t, node.mqttPort, { clientId: 'polite', protocolVersion: 5 });
    await polite.endAsync();

    const after = await scrape();
    const d = (name: string, labels: Record<string, string> = {}): number => value(after, name, labels) - value(afterPublish, name, labels);
    t.equal(d('tidemq_connacks_total', { reason: 'client_identifier_not_valid' }), 1);
    t.equal(d('tidemq_protocol_errors_total', { reason: 'malformed_packet' }), 1);
    t.equal(d('tidemq_disconnects_total', { origin: 'server', reason: 'administrative_action' }), 1);
    t.equal(d('tidemq_disconnects_total', { origin: 'client', reason: 'success' }), 1);
    t.equal(d('tidemq_packets_sent_total', { type: 'disconnect' }), 1, 'the kick');
    t.equal(d('tidemq_packets_received_total', { type: 'disconnect' }), 1);
    await client.endAsync();
  });
});
