// The protocol state machine alone: Protocol over a fake Transport, bytes in and bytes out, no
// sockets. Input is encoded and output decoded by mqtt-packet, independently of our codec.

import type mqttPacket from 'mqtt-packet';
import t from 'tap';
import { Broker } from '../../src/broker/broker.js';
import { Protocol } from '../../src/broker/protocol.js';
import { bytes, connectBytes } from '../broker/support.js';
import { testBroker } from '../helpers/broker.js';
import { FakeTransport } from '../helpers/fake-transport.js';

function newBroker(): Broker {
  return testBroker();
}

function client(broker: Broker, version: 3 | 4 | 5): { protocol: Protocol; transport: FakeTransport } {
  const transport = new FakeTransport(version);
  return { protocol: new Protocol(broker, transport, Date.now()), transport };
}

t.test('connect, subscribe, publish QoS 1 and the acks, ping, disconnect (3.1.1)', async (t) => {
  const broker = newBroker();
  const sub = client(broker, 4);
  const pub = client(broker, 4);
  sub.protocol.receive(connectBytes('sub', 4, { clean: false }));
  t.match(sub.transport.take(), [{ cmd: 'connack', returnCode: 0, sessionPresent: false }]);
  sub.protocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/+', qos: 1 }] }));
  t.match(sub.transport.take(), [{ cmd: 'suback', messageId: 1, granted: [1] }]);

  // Fed one byte at a time: the frame reader reassembles it.
  const connect = connectBytes('pub', 4);
  for (const b of connect) pub.protocol.receive(Buffer.from([b]));
  t.match(pub.transport.take(), [{ cmd: 'connack', returnCode: 0 }]);
  pub.protocol.receive(bytes({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('hi'), qos: 1, messageId: 9, retain: false, dup: false }));
  t.match(pub.transport.take(), [{ cmd: 'puback', messageId: 9 }]);
  const [delivered] = sub.transport.take();
  t.match(delivered, { cmd: 'publish', topic: 'a/b', qos: 1 });
  t.equal((delivered as mqttPacket.IPublishPacket).payload.toString(), 'hi');
  const session = broker.sessions.get('sub');
  t.equal(session?.inflight.size, 1, 'unacked until PUBACK');
  sub.protocol.receive(bytes({ cmd: 'puback', messageId: (delivered as mqttPacket.IPublishPacket).messageId ?? 0 }));
  t.equal(session?.inflight.size, 0, 'PUBACK completes the delivery');

  sub.protocol.receive(bytes({ cmd: 'pingreq' }));
  t.match(sub.transport.take(), [{ cmd: 'pingresp' }]);
  sub.protocol.receive(bytes({ cmd: 'disconnect' }));
  t.ok(sub.transport.ended, 'DISCONNECT closes the transport');
  t.equal(broker.sessions.get('sub')?.owner, null, 'the persistent session stays, detached');
  t.equal(broker.connections.size, 1);
});

t.test('QoS 2 is exactly once: a resent PUBLISH before PUBREL is not routed again (5.0)', async (t) => {
  const broker = newBroker();
  const sub = client(broker, 5);
  const pub = client(broker, 5);
  sub.protocol.receive(connectBytes('sub', 5));
  pub.protocol.receive(connectBytes('pub', 5));
  sub.protocol.receive(bytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q', qos: 2 }] }, 5));
  sub.transport.take();
  pub.transport.take();
  const publish: mqttPacket.IPublishPacket = { cmd: 'publish', topic: 'q', payload: Buffer.from('x'), qos: 2, messageId: 7, retain: false, dup: false };
  pub.protocol.receive(bytes(publish, 5));
  pub.protocol.receive(bytes({ ...publish, dup: true }, 5));
  t.match(pub.transport.take(), [
    { cmd: 'pubrec', messageId: 7 },
    { cmd: 'pubrec', messageId: 7 },
  ]);
  pub.protocol.receive(bytes({ cmd: 'pubrel', messageId: 7 }, 5));
  t.match(pub.transport.take(), [{ cmd: 'pubcomp', messageId: 7 }]);
  const got = sub.transport.take();
  t.equal(got.length, 1, 'delivered once');
  t.match(got[0], { cmd: 'publish', topic: 'q', qos: 2 });
  // The receiver side of QoS 2: PUBREC -> PUBREL -> PUBCOMP.
  const id = (got[0] as mqttPacket.IPublishPacket).messageId ?? 0;
  sub.protocol.receive(bytes({ cmd: 'pubrec', messageId: id }, 5));
  t.match(sub.transport.take(), [{ cmd: 'pubrel', messageId: id }]);
  sub.protocol.receive(bytes({ cmd: 'pubcomp', messageId: id }, 5));
  t.equal(broker.sessions.get('sub')?.inflight.size, 0);
});

t.test('a packet before CONNECT closes without an answer; a 5.0 error after CONNECT is a DISCONNECT', async (t) => {
  const broker = newBroker();
  const early = client(broker, 4);
  early.protocol.receive(bytes({ cmd: 'pingreq' }));
  t.ok(early.transport.ended);
  t.same(early.transport.take(), []);
  t.equal(broker.connections.size, 0);

  const bad = client(broker, 5);
  bad.protocol.receive(connectBytes('bad', 5));
  bad.transport.take();
  bad.protocol.receive(bytes({ cmd: 'publish', topic: 'a/#', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false }, 5));
  t.match(bad.transport.take(), [{ cmd: 'disconnect', reasonCode: 0x90 }]);
  t.ok(bad.transport.ended);
  t.equal(broker.sessions.size, 0, 'the clean session ended with the connection');
});

t.test('every CONNECT refusal leaves through one exit: one CONNACK with its code, counted once, closed, no session', async (t) => {
  const broker = newBroker();
  const cases: Array<{ name: string; version: 3 | 4 | 5; packet: Buffer; code: number; reason: number }> = [
    // A client id over mqtt.max_client_id_length: 3.1.1 return code 2 (identifier rejected).
    { name: 'client id too long', version: 4, packet: connectBytes('x'.repeat(9), 4), code: 2, reason: 0x85 },
    // [MQTT-3.2.2-12] a will QoS over the maximum is refused with 0x9B.
    { name: 'will QoS 2 over max_qos 1', version: 5, packet: connectBytes('w', 5, { will: { topic: 'w', payload: Buffer.from('x'), qos: 2, retain: false } }), code: 0x9b, reason: 0x9b },
    { name: 'enhanced authentication', version: 5, packet: connectBytes('e', 5, { properties: { authenticationMethod: 'SCRAM' } }), code: 0x8c, reason: 0x8c },
  ];
  broker.config.mqtt.max_qos = 1;
  broker.config.mqtt.max_client_id_length = 8;
  for (const c of cases) {
    const { protocol, transport } = client(broker, c.version);
    protocol.receive(c.packet);
    const out = transport.take();
    t.equal(out.length, 1, `${c.name}: one packet out`);
    t.match(out[0], c.version === 5 ? { cmd: 'connack', reasonCode: c.code } : { cmd: 'connack', returnCode: c.code }, `${c.name}: CONNACK ${c.code}`);
    t.ok(transport.ended, `${c.name}: closed`);
    t.equal(broker.stats.connectRefused.get(c.reason), 1, `${c.name}: counted once`);
  }
  // Refused while evacuating, before authentication: 0x9C with the Server Reference, counted by the agent too.
  broker.connectRefusal = { properties: { serverReference: 'elsewhere:1883' }, refused: 0 };
  const { protocol, transport } = client(broker, 5);
  protocol.receive(connectBytes('evacuated', 5));
  t.match(transport.take(), [{ cmd: 'connack', reasonCode: 0x9c, properties: { serverReference: 'elsewhere:1883' } }]);
  t.equal(broker.connectRefusal.refused, 1);
  t.equal(broker.stats.connectRefused.get(0x9c), 1);
  t.equal(broker.sessions.size, 0, 'no session was opened');
  t.equal(broker.stats.protocolErrors.size, 0, 'refusals are not protocol errors');
});
