// Golden byte vectors for every packet type: bytes decode to the packet, the packet encodes to the bytes.
import t from 'tap';
import { decodeConnect, decodePacket } from '../../src/mqtt/decode.js';
import { encodeAck, encodePacket, encodePublishHeader } from '../../src/mqtt/encode.js';
import type { Packet, ProtocolVersion } from '../../src/mqtt/packets.js';
import { parseVarint, varintSize } from '../../src/mqtt/strings.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const str = (s: string): Buffer => Buffer.from(s);

interface Vector {
  name: string;
  version: ProtocolVersion;
  bytes: string;
  packet: Packet;
  /** Accepted on decode, but our encoder writes a shorter form. */
  decodeOnly?: boolean;
}

const vectors: Vector[] = [
  // ---- MQTT 3.1 (level 3, "MQIsdp")
  {
    name: '3.1 CONNECT',
    version: 3,
    bytes: '10 10 0006 4d5149736470 03 02 003c 0002 6331',
    packet: { type: 1, protocolName: 'MQIsdp', protocolVersion: 3, cleanStart: true, keepalive: 60, clientId: 'c1' },
  },
  // ---- MQTT 3.1.1 (level 4)
  {
    name: '3.1.1 CONNECT minimal',
    version: 4,
    bytes: '10 0e 0004 4d515454 04 02 003c 0002 6331',
    packet: { type: 1, protocolName: 'MQTT', protocolVersion: 4, cleanStart: true, keepalive: 60, clientId: 'c1' },
  },
  {
    name: '3.1.1 CONNECT with will, user name and password',
    version: 4,
    bytes: '10 1b 0004 4d515454 04 ee 000a 0001 63 0001 77 0002 6869 0001 75 0002 7077',
    packet: {
      type: 1,
      protocolName: 'MQTT',
      protocolVersion: 4,
      cleanStart: true,
      keepalive: 10,
      clientId: 'c',
      will: { topic: 'w', payload: str('hi'), qos: 1, retain: true },
      username: 'u',
      password: str('pw'),
    },
  },
  { name: '3.1.1 CONNACK', version: 4, bytes: '20 02 01 00', packet: { type: 2, sessionPresent: true, reasonCode: 0 } },
  { name: '3.1.1 CONNACK refused', version: 4, bytes: '20 02 00 05', packet: { type: 2, sessionPresent: false, reasonCode: 5 } },
  {
    name: '3.1.1 PUBLISH QoS 0',
    version: 4,
    bytes: '30 06 0003 612f62 78',
    packet: { type: 3, dup: false, qos: 0, retain: false, topic: 'a/b', packetId: 0, properties: undefined, payload: str('x') },
  },
  {
    name: '3.1.1 PUBLISH QoS 1 dup retain',
    version: 4,
    bytes: '3b 07 0001 74 000a 6869',
    packet: { type: 3, dup: true, qos: 1, retain: true, topic: 't', packetId: 10, properties: undefined, payload: str('hi') },
  },
  {
    name: '3.1.1 PUBLISH QoS 2 empty payload, non-ASCII topic',
    version: 4,
    bytes: '34 06 0002 c3a9 ffff',
    packet: { type: 3, dup: false, qos: 2, retain: false, topic: 'é', packetId: 0xffff, properties: undefined, payload: str('') },
  },
  { name: '3.1.1 PUBACK', version: 4, bytes: '40 02 000a', packet: { type: 4, packetId: 10, reasonCode: 0 } },
  { name: '3.1.1 PUBREC', version: 4, bytes: '50 02 000a', packet: { type: 5, packetId: 10, reasonCode: 0 } },
  { name: '3.1.1 PUBREL', version: 4, bytes: '62 02 000a', packet: { type: 6, packetId: 10, reasonCode: 0 } },
  { name: '3.1.1 PUBCOMP', version: 4, bytes: '70 02 000a', packet: { type: 7, packetId: 10, reasonCode: 0 } },
  {
    name: '3.1.1 SUBSCRIBE',
    version: 4,
    bytes: '82 0c 0005 0003 612f23 01 0001 62 02',
    packet: {
      type: 8,
      packetId: 5,
      subscriptions: [
        { filter: 'a/#', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 },
        { filter: 'b', qos: 2, noLocal: false, retainAsPublished: false, retainHandling: 0 },
      ],
    },
  },
  { name: '3.1.1 SUBACK', version: 4, bytes: '90 04 0005 01 80', packet: { type: 9, packetId: 5, reasonCodes: [1, 0x80] } },
  {
    name: '3.1.1 UNSUBSCRIBE',
    version: 4,
    bytes: 'a2 07 0006 0003 612f23',
    packet: { type: 10, packetId: 6, filters: ['a/#'] },
  },
  { name: '3.1.1 UNSUBACK', version: 4, bytes: 'b0 02 0006', packet: { type: 11, packetId: 6, reasonCodes: [] } },
  { name: '3.1.1 PINGREQ', version: 4, bytes: 'c0 00', packet: { type: 12 } },
  { name: '3.1.1 PINGRESP', version: 4, bytes: 'd0 00', packet: { type: 13 } },
  { name: '3.1.1 DISCONNECT', version: 4, bytes: 'e0 00', packet: { type: 14, reasonCode: 0 } },
  // ---- MQTT 5.0 (level 5)
  {
    name: '5.0 CONNECT with properties, will properties and user name',
    version: 5,
    bytes:
      '10 26 0004 4d515454 05 86 003c 08 11 00000078 21 000a 0002 6331 05 18 00000005 0001 77 0001 70 0001 75',
    packet: {
      type: 1,
      protocolName: 'MQTT',
      protocolVersion: 5,
      cleanStart: true,
      keepalive: 60,
      clientId: 'c1',
      properties: { sessionExpiryInterval: 120, receiveMaximum: 10 },
      will: { topic: 'w', payload: str('p'), qos: 0, retain: false, properties: { willDelayInterval: 5 } },
      username: 'u',
    },
  },
  {
    name: '5.0 CONNECT, password without user name',
    version: 5,
    bytes: '10 13 0004 4d515454 05 40 0000 00 0002 6331 0002 7077',
    packet: {
      type: 1,
      protocolName: 'MQTT',
      protocolVersion: 5,
      cleanStart: false,
      keepalive: 0,
      clientId: 'c1',
      password: str('pw'),
    },
  },
  {
    name: '5.0 CONNACK with properties',
    version: 5,
    bytes: '20 0d 00 00 0a 12 0002 6964 22 0005 24 01',
    packet: {
      type: 2,
      sessionPresent: false,
      reasonCode: 0,
      properties: { assignedClientIdentifier: 'id', topicAliasMaximum: 5, maximumQoS: 1 },
    },
  },
  { name: '5.0 CONNACK error', version: 5, bytes: '20 03 00 9c 00', packet: { type: 2, sessionPresent: false, reasonCode: 0x9c } },
  {
    name: '5.0 PUBLISH QoS 1 with properties',
    version: 5,
    bytes: '32 14 0001 74 0001 0c 01 01 23 0003 26 0001 6b 0001 76 6869',
    packet: {
      type: 3,
      dup: false,
      qos: 1,
      retain: false,
      topic: 't',
      packetId: 1,
      properties: { payloadFormatIndicator: 1, topicAlias: 3, userProperties: [['k', 'v']] },
      payload: str('hi'),
    },
  },
  {
    name: '5.0 PUBLISH QoS 0 no properties',
    version: 5,
    bytes: '30 05 0001 74 00 78',
    packet: { type: 3, dup: false, qos: 0, retain: false, topic: 't', packetId: 0, properties: undefined, payload: str('x') },
  },
  {
    name: '5.0 PUBLISH with two subscription identifiers, empty topic (alias use)',
    version: 5,
    bytes: '31 08 0000 05 0b 01 0b c801',
    packet: {
      type: 3,
      dup: false,
      qos: 0,
      retain: true,
      topic: '',
      packetId: 0,
      properties: { subscriptionIdentifiers: [1, 200] },
      payload: str(''),
    },
  },
  { name: '5.0 PUBACK success', version: 5, bytes: '40 02 0001', packet: { type: 4, packetId: 1, reasonCode: 0 } },
  {
    name: '5.0 PUBACK success with empty property block',
    version: 5,
    bytes: '40 04 0001 00 00',
    packet: { type: 4, packetId: 1, reasonCode: 0 },
    decodeOnly: true,
  },
  { name: '5.0 PUBACK reason only', version: 5, bytes: '40 03 0001 10', packet: { type: 4, packetId: 1, reasonCode: 0x10 } },
  {
    name: '5.0 PUBREC with reason string',
    version: 5,
    bytes: '50 09 0001 87 05 1f 0002 6e6f',
    packet: { type: 5, packetId: 1, reasonCode: 0x87, properties: { reasonString: 'no' } },
  },
  { name: '5.0 PUBREL', version: 5, bytes: '62 02 0001', packet: { type: 6, packetId: 1, reasonCode: 0 } },
  { name: '5.0 PUBCOMP not found', version: 5, bytes: '70 03 0001 92', packet: { type: 7, packetId: 1, reasonCode: 0x92 } },
  {
    name: '5.0 SUBSCRIBE with options and a subscription identifier',
    version: 5,
    bytes: '82 0b 0002 02 0b 07 0003 612f2b 2e',
    packet: {
      type: 8,
      packetId: 2,
      properties: { subscriptionIdentifiers: [7] },
      subscriptions: [{ filter: 'a/+', qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2 }],
    },
  },
  { name: '5.0 SUBACK', version: 5, bytes: '90 05 0002 00 02 8f', packet: { type: 9, packetId: 2, reasonCodes: [2, 0x8f] } },
  {
    name: '5.0 UNSUBSCRIBE with a user property',
    version: 5,
    bytes: 'a2 0d 0003 07 26 0001 61 0001 62 0001 78',
    packet: { type: 10, packetId: 3, properties: { userProperties: [['a', 'b']] }, filters: ['x'] },
  },
  { name: '5.0 UNSUBACK', version: 5, bytes: 'b0 05 0003 00 00 11', packet: { type: 11, packetId: 3, reasonCodes: [0, 0x11] } },
  { name: '5.0 PINGREQ', version: 5, bytes: 'c0 00', packet: { type: 12 } },
  { name: '5.0 PINGRESP', version: 5, bytes: 'd0 00', packet: { type: 13 } },
  { name: '5.0 DISCONNECT normal', version: 5, bytes: 'e0 00', packet: { type: 14, reasonCode: 0 } },
  { name: '5.0 DISCONNECT taken over', version: 5, bytes: 'e0 01 8e', packet: { type: 14, reasonCode: 0x8e } },
  {
    name: '5.0 DISCONNECT with will and reason string',
    version: 5,
    bytes: 'e0 08 04 06 1f 0003 627965',
    packet: { type: 14, reasonCode: 4, properties: { reasonString: 'bye' } },
  },
  { name: '5.0 AUTH success', version: 5, bytes: 'f0 00', packet: { type: 15, reasonCode: 0 } },
  {
    name: '5.0 AUTH continue',
    version: 5,
    bytes: 'f0 0b 18 09 15 0001 6d 16 0002 0102',
    packet: { type: 15, reasonCode: 0x18, properties: { authenticationMethod: 'm', authenticationData: hex('0102') } },
  },
];

for (const v of vectors) {
  t.test(v.name, async (t) => {
    const bytes = hex(v.bytes);
    const length = parseVarint(bytes, 1, bytes.length);
    const body = bytes.subarray(1 + varintSize(length));
    t.equal(body.length, length, 'the vector itself has the right remaining length');
    const decoded = v.packet.type === 1 ? decodeConnect(body) : decodePacket(bytes[0]!, body, v.version);
    t.strictSame(decoded, v.packet, 'decodes');
    if (!v.decodeOnly) t.strictSame(encodePacket(v.packet, v.version), bytes, 'encodes');
  });
}

t.test('decodePacket dispatches CONNECT to decodeConnect', async (t) => {
  const bytes = hex('10 0e 0004 4d515454 04 02 003c 0002 6331');
  t.strictSame(decodePacket(0x10, bytes.subarray(2), 4), decodeConnect(bytes.subarray(2)));
});

t.test('PUBLISH payload and binary fields are views of the body, not copies', async (t) => {
  const bytes = hex('32 14 0001 74 0001 0c 01 01 23 0003 26 0001 6b 0001 76 6869');
  const body = bytes.subarray(2);
  const p = decodePacket(bytes[0]!, body, 5);
  t.equal(p.type, 3);
  if (p.type !== 3) return;
  t.equal(p.payload.buffer, bytes.buffer);
  t.equal(p.payload.byteOffset, bytes.byteOffset + bytes.length - 2);
  const c = decodeConnect(hex('0004 4d515454 04 c2 003c 0002 6331 0001 75 0002 7077'));
  t.equal(c.password?.toString(), 'pw');
});

t.test('encodePublishHeader + payload equals the whole PUBLISH', async (t) => {
  const whole = hex('32 14 0001 74 0001 0c 01 01 23 0003 26 0001 6b 0001 76 6869');
  const head = encodePublishHeader('t', 1, false, false, 1, { payloadFormatIndicator: 1, topicAlias: 3, userProperties: [['k', 'v']] }, 2, 5);
  t.strictSame(Buffer.concat([head, str('hi')]), whole);
  // 3.x writes no property block even when given properties.
  t.strictSame(encodePublishHeader('a/b', 0, false, false, 0, { topicAlias: 1 }, 1, 4), hex('30 06 0003 612f62'));
  // A payload large enough for a 3-byte remaining length.
  const big = encodePublishHeader('t', 0, false, false, 0, undefined, 20_000, 5);
  t.strictSame(big, hex('30 a49c01 0001 74 00'), 'remaining length 20004 = a4 9c 01');
});

t.test('encodeAck forms', async (t) => {
  t.strictSame(encodeAck(4, 0x1234, 0, 5), hex('40 02 1234'), 'success: 4 bytes');
  t.strictSame(encodeAck(4, 0x1234, 0, 5, {}), hex('40 02 1234'), 'empty properties: 4 bytes');
  t.strictSame(encodeAck(4, 0x1234, 0x10, 4), hex('40 02 1234'), '3.x never carries a reason code');
  t.strictSame(encodeAck(6, 1, 0x92, 5), hex('62 03 0001 92'), 'PUBREL flags, reason only');
  t.strictSame(encodeAck(7, 1, 0, 5, { reasonString: 'x' }), hex('70 08 0001 00 04 1f 0001 78'), 'properties');
});

t.test('encodePacket rejects AUTH before 5.0', async (t) => {
  t.throws(() => encodePacket({ type: 15, reasonCode: 0 }, 4), RangeError);
});

t.test('strings and binary over 65535 bytes are refused by the encoder', async (t) => {
  const long = 'x'.repeat(65536);
  t.throws(() => encodePacket({ type: 10, packetId: 1, filters: [long] }, 4), RangeError);
  t.throws(() => encodePublishHeader(long, 0, false, false, 0, undefined, 0, 4), RangeError);
  // The writer is usable again after a failed encode.
  t.strictSame(encodePacket({ type: 12 }, 4), hex('c0 00'));
});
