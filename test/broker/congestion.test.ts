// A subscriber that stops reading, in process over a fake transport whose backlog the test sets
// (no sockets, no sleeps): QoS 0 is dropped while the backlog is over mqtt.max_output_buffer,
// QoS 1 and 2 wait in the queue, and what waited is sent once the transport reports drained().
// The real socket's side of it (node's writableLength feeding the backlog, 'drain' calling
// drained()) is tested last, over a loopback socket.

import { once } from 'node:events';
import net from 'node:net';
import mqttPacket from 'mqtt-packet';
import t from 'tap';
import { Protocol } from '../../src/broker/protocol.js';
import { TcpConnection } from '../../src/broker/tcp-connection.js';
import { defaultConfig } from '../../src/config/schema.js';
import { testBroker } from '../helpers/broker.js';
import { FakeTransport } from '../helpers/fake-transport.js';
import { bytes, connectBytes, waitFor } from './support.js';

t.test('QoS 0 is dropped while congested; queued QoS 1/2 is delivered when the transport drains', async (t) => {
  const broker = testBroker();
  const mark = broker.config.mqtt.max_output_buffer;

  const subT = new FakeTransport(4);
  const sub = new Protocol(broker, subT, Date.now());
  sub.receive(connectBytes('slow-sub', 4));
  sub.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'slow/#', qos: 2 }] }));
  t.match(subT.take(), [{ cmd: 'connack' }, { cmd: 'suback', granted: [2] }]);

  const pubT = new FakeTransport(4);
  const pub = new Protocol(broker, pubT, Date.now());
  pub.receive(connectBytes('fast-pub', 4));
  pubT.take();
  const publish = (topic: string, qos: 0 | 1 | 2, messageId?: number): void =>
    pub.receive(bytes({ cmd: 'publish', topic, payload: Buffer.from(topic), qos, retain: false, dup: false, ...(messageId === undefined ? {} : { messageId }) }));

  publish('slow/before', 0);
  t.match(subT.take(), [{ cmd: 'publish', topic: 'slow/before' }], 'under the mark QoS 0 is sent');

  subT.backlog = mark + 1; // the client stopped reading
  const droppedBefore = broker.stats.dropped;
  for (let i = 0; i < 30; i++) publish('slow/bulk', 0);
  publish('slow/last1', 1, 1);
  publish('slow/last2', 2, 2);
  t.same(subT.take(), [], 'nothing is written while congested');
  t.equal(broker.stats.dropped - droppedBefore, 30, 'all 30 QoS 0 were dropped');
  t.match(pubT.take(), [{ cmd: 'puback', messageId: 1 }, { cmd: 'pubrec', messageId: 2 }], 'the publisher is acknowledged all the same');

  subT.backlog = mark; // at the mark is not over it
  sub.drained();
  const out = subT.take();
  t.match(out, [
    { cmd: 'publish', topic: 'slow/last1', qos: 1 },
    { cmd: 'publish', topic: 'slow/last2', qos: 2 },
  ], 'the queued QoS 1 and 2 go out on drain, in order, and no dropped QoS 0 with them');
  t.equal(out.length, 2);
  t.equal(broker.stats.dropped - droppedBefore, 30, 'nothing queued was dropped');
});

t.test("over TCP: 'drain' is listened for only while congested, and what waited goes out on it", async (t) => {
  const config = defaultConfig();
  config.mqtt.max_output_buffer = 64 * 1024;
  const broker = testBroker({ config });
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => void server.close());
  const accepted = once(server, 'connection');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.teardown(() => void client.destroy());
  await once(client, 'connect');
  const [socket] = (await accepted) as [net.Socket];
  new TcpConnection(socket, broker);
  t.equal(socket.listenerCount('drain'), 0, 'a fresh connection carries no drain listener');

  const received: mqttPacket.Packet[] = [];
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  parser.on('packet', (p: mqttPacket.Packet) => received.push(p));
  client.on('data', (chunk: Buffer) => parser.parse(chunk));
  client.write(Buffer.concat([connectBytes('tcp-slow', 4), bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'tcp/#', qos: 1 }] })]));
  await waitFor(() => received.some((p) => p.cmd === 'suback'), 'SUBACK');
  t.equal(socket.listenerCount('drain'), 0, 'nor a connected one that keeps up');

  const pubT = new FakeTransport(4);
  const pub = new Protocol(broker, pubT, Date.now());
  pub.receive(connectBytes('tcp-pub', 4));
  client.pause(); // the subscriber stops reading: the kernel buffers fill, then node's
  const payload = Buffer.alloc(64 * 1024, 1);
  let sent = 0;
  // Bounded: loopback buffers hold a few MB at most.
  while (socket.writableLength <= config.mqtt.max_output_buffer && sent < 2000) {
    pub.receive(bytes({ cmd: 'publish', topic: 'tcp/bulk', payload, qos: 0, retain: false, dup: false }));
    sent++;
    await new Promise((resolve) => setImmediate(resolve)); // let the cork flush reach the socket
  }
  t.ok(socket.writableLength > config.mqtt.max_output_buffer, `over the mark after ${sent} publishes`);
  pub.receive(bytes({ cmd: 'publish', topic: 'tcp/last', payload: Buffer.from('last'), qos: 1, retain: false, dup: false, messageId: 7 }));
  t.equal(socket.listenerCount('drain'), 1, 'congested: now it listens for drain');

  client.resume();
  await waitFor(() => received.some((p) => p.cmd === 'publish' && p.topic === 'tcp/last'), 'the queued QoS 1', 10_000);
  t.equal(socket.listenerCount('drain'), 0, 'the queued QoS 1 went out on drain, and the listener with it');
});

