// Every malformed packet and codec-level protocol violation, each with the exact 5.0 reason code.
import t from 'tap';
import { decodeConnect, decodePacket, decodePublish, UnsupportedVersionError } from '../../src/mqtt/decode.js';
import { ProtocolError } from '../../src/mqtt/errors.js';
import type { ProtocolVersion } from '../../src/mqtt/packets.js';
import { ReasonCode } from '../../src/mqtt/reason-codes.js';
import { parseVarint, varintSize } from '../../src/mqtt/strings.js';
import { reasonOf } from './support.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const M = ReasonCode.MalformedPacket;
const P = ReasonCode.ProtocolError;

/** Decodes a whole packet (fixed header included) the way the broker does. */
function decodeBytes(bytes: Buffer, version: ProtocolVersion): unknown {
  const length = parseVarint(bytes, 1, bytes.length);
  const body = bytes.subarray(1 + varintSize(length));
  if (body.length !== length) throw new Error(`test vector has remaining length ${length} but ${body.length} body bytes`);
  return bytes[0]! >> 4 === 1 ? decodeConnect(body) : decodePacket(bytes[0]!, body, version);
}

// CONNECT prefix for 3.1.1 and 5.0: protocol name and level.
const V4 = '0004 4d515454 04';
const V5 = '0004 4d515454 05';

const cases: Array<{ name: string; version: ProtocolVersion; bytes: string; reason: number }> = [
  // ---- CONNECT
  { name: 'CONNECT reserved flag [MQTT-3.1.2-3]', version: 4, bytes: `10 0d ${V4} 03 003c 0001 63`, reason: M },
  { name: 'CONNECT will QoS 3 [MQTT-3.1.2-14]', version: 4, bytes: `10 13 ${V4} 1c 003c 0001 63 0001 77 0001 70`, reason: M },
  { name: 'CONNECT will QoS without will flag [MQTT-3.1.2-13]', version: 4, bytes: `10 0d ${V4} 08 003c 0001 63`, reason: M },
  { name: 'CONNECT will retain without will flag [MQTT-3.1.2-15]', version: 4, bytes: `10 0d ${V4} 20 003c 0001 63`, reason: M },
  { name: 'CONNECT 3.1.1 password without user name [MQTT-3.1.2-22]', version: 4, bytes: `10 10 ${V4} 40 003c 0001 63 0001 70`, reason: M },
  {
    name: 'CONNECT 3.1 password without user name',
    version: 3,
    bytes: '10 12 0006 4d5149736470 03 40 003c 0001 63 0001 70',
    reason: M,
  },
  { name: 'CONNECT client id with U+0000 [MQTT-1.5.4-2]', version: 4, bytes: `10 0e ${V4} 02 003c 0002 6300`, reason: M },
  { name: 'CONNECT client id ill-formed UTF-8 [MQTT-1.5.4-1]', version: 4, bytes: `10 0e ${V4} 02 003c 0002 63ff`, reason: M },
  { name: 'CONNECT client id with a UTF-16 surrogate', version: 4, bytes: `10 0f ${V4} 02 003c 0003 eda080`, reason: M },
  { name: 'CONNECT client id overlong U+0000 (C0 80)', version: 4, bytes: `10 0e ${V4} 02 003c 0002 c080`, reason: M },
  { name: 'CONNECT trailing byte', version: 4, bytes: `10 0e ${V4} 02 003c 0001 63 00`, reason: M },
  { name: 'CONNECT truncated client id', version: 4, bytes: `10 0d ${V4} 02 003c 0005 63`, reason: M },
  { name: 'CONNECT truncated before the flags', version: 4, bytes: `10 07 ${V4}`, reason: M },
  { name: 'CONNECT truncated protocol name', version: 4, bytes: '10 04 0004 4d51', reason: M },
  { name: 'CONNECT will without payload', version: 4, bytes: `10 10 ${V4} 06 003c 0001 63 0001 77`, reason: M },
  { name: 'CONNECT user name flag without user name', version: 4, bytes: `10 0d ${V4} 82 003c 0001 63`, reason: M },
  { name: 'CONNECT 5.0 topic alias property not allowed', version: 5, bytes: `10 11 ${V5} 02 003c 03 230001 0001 63`, reason: M },
  {
    name: 'CONNECT 5.0 will delay in CONNECT properties',
    version: 5,
    bytes: `10 13 ${V5} 02 003c 05 1800000001 0001 63`,
    reason: M,
  },
  {
    name: 'CONNECT 5.0 session expiry in will properties',
    version: 5,
    bytes: `10 1a ${V5} 06 003c 00 0001 63 05 1100000001 0001 77 0001 70`,
    reason: M,
  },
  { name: 'CONNECT 5.0 receive maximum 0', version: 5, bytes: `10 11 ${V5} 02 003c 03 210000 0001 63`, reason: P },
  { name: 'CONNECT 5.0 maximum packet size 0', version: 5, bytes: `10 13 ${V5} 02 003c 05 2700000000 0001 63`, reason: P },
  { name: 'CONNECT 5.0 request problem information 2', version: 5, bytes: `10 10 ${V5} 02 003c 02 1702 0001 63`, reason: P },
  { name: 'CONNECT 5.0 request response information 2', version: 5, bytes: `10 10 ${V5} 02 003c 02 1902 0001 63`, reason: P },
  {
    name: 'CONNECT 5.0 session expiry twice',
    version: 5,
    bytes: `10 18 ${V5} 02 003c 0a 1100000001 1100000002 0001 63`,
    reason: P,
  },
  {
    name: 'CONNECT 5.0 will payload format indicator 2',
    version: 5,
    bytes: `10 17 ${V5} 06 003c 00 0001 63 02 0102 0001 77 0001 70`,
    reason: P,
  },
  // ---- PUBLISH
  { name: 'PUBLISH QoS 0 with DUP [MQTT-3.3.1-2]', version: 4, bytes: '38 03 0001 74', reason: M },
  { name: 'PUBLISH QoS 1 packet id 0 [MQTT-2.2.1-3]', version: 4, bytes: '32 05 0001 74 0000', reason: P },
  { name: 'PUBLISH QoS 2 packet id 0 (5.0)', version: 5, bytes: '34 06 0001 74 0000 00', reason: P },
  { name: 'PUBLISH topic with U+0000', version: 4, bytes: '30 04 0002 6100', reason: M },
  { name: 'PUBLISH topic ill-formed UTF-8', version: 4, bytes: '30 04 0002 61c3', reason: M },
  { name: 'PUBLISH topic longer than the packet', version: 4, bytes: '30 03 0005 74', reason: M },
  { name: 'PUBLISH QoS 1 without packet id', version: 4, bytes: '32 03 0001 74', reason: M },
  { name: 'PUBLISH 5.0 without property length', version: 5, bytes: '30 03 0001 74', reason: M },
  { name: 'PUBLISH 5.0 property length past the packet', version: 5, bytes: '30 05 0001 74 05 01', reason: M },
  { name: 'PUBLISH 5.0 property length not minimal [MQTT-1.5.5-1]', version: 5, bytes: '30 05 0001 74 8000', reason: M },
  { name: 'PUBLISH 5.0 property ends past its block', version: 5, bytes: '30 08 0001 74 02 230003 61', reason: M },
  { name: 'PUBLISH 5.0 unknown property 0x7f', version: 5, bytes: '30 06 0001 74 02 7f00', reason: M },
  { name: 'PUBLISH 5.0 session expiry not allowed', version: 5, bytes: '30 09 0001 74 05 1100000001', reason: M },
  { name: 'PUBLISH 5.0 topic alias 0', version: 5, bytes: '30 07 0001 74 03 230000', reason: 0x94 },
  { name: 'PUBLISH 5.0 topic alias twice', version: 5, bytes: '30 0a 0001 74 06 230001 230002', reason: P },
  { name: 'PUBLISH 5.0 subscription identifier 0', version: 5, bytes: '30 06 0001 74 02 0b00', reason: P },
  { name: 'PUBLISH 5.0 payload format indicator 2', version: 5, bytes: '30 06 0001 74 02 0102', reason: P },
  { name: 'PUBLISH 5.0 content type with U+0000', version: 5, bytes: '30 08 0001 74 04 03 0001 00', reason: M },
  { name: 'PUBLISH 5.0 user property value truncated', version: 5, bytes: '30 0a 0001 74 06 26 0001 61 0005', reason: M },
  // ---- acknowledgements
  { name: 'PUBACK 3.1.1 with a reason code', version: 4, bytes: '40 03 0001 00', reason: M },
  { name: 'PUBACK truncated packet id', version: 4, bytes: '40 01 00', reason: M },
  { name: 'PUBREC 5.0 topic alias not allowed', version: 5, bytes: '50 07 0001 10 03 230001', reason: M },
  { name: 'PUBCOMP 5.0 property block past the packet', version: 5, bytes: '70 05 0001 00 09 1f', reason: M },
  { name: 'PUBREL reserved flags 0 [MQTT-3.6.1-1]', version: 4, bytes: '60 02 0001', reason: M },
  { name: 'PUBACK reserved flag set [MQTT-2.1.3-1]', version: 4, bytes: '41 02 0001', reason: M },
  // ---- CONNACK
  { name: 'CONNACK reserved flag bits [MQTT-3.2.2-1]', version: 4, bytes: '20 02 02 00', reason: M },
  { name: 'CONNACK 3.1.1 trailing byte', version: 4, bytes: '20 03 00 00 00', reason: M },
  { name: 'CONNACK 5.0 without property length', version: 5, bytes: '20 02 00 00', reason: M },
  { name: 'CONNACK 5.0 maximum QoS 2', version: 5, bytes: '20 05 00 00 02 2402', reason: P },
  // ---- SUBSCRIBE / UNSUBSCRIBE
  { name: 'SUBSCRIBE without filters [MQTT-3.8.3-3]', version: 4, bytes: '82 02 0001', reason: P },
  { name: 'SUBSCRIBE 5.0 without filters', version: 5, bytes: '82 03 0001 00', reason: P },
  { name: 'SUBSCRIBE packet id 0 [MQTT-2.2.1-3]', version: 4, bytes: '82 06 0000 0001 61 00', reason: P },
  { name: 'SUBSCRIBE 3.1.1 requested QoS 3', version: 4, bytes: '82 06 0001 0001 61 03', reason: M },
  { name: 'SUBSCRIBE 3.1.1 reserved option bits [MQTT-3.8.3-4]', version: 4, bytes: '82 06 0001 0001 61 04', reason: M },
  { name: 'SUBSCRIBE 5.0 reserved option bits [MQTT-3.8.3-5]', version: 5, bytes: '82 07 0001 00 0001 61 40', reason: M },
  { name: 'SUBSCRIBE 5.0 retain handling 3', version: 5, bytes: '82 07 0001 00 0001 61 30', reason: M },
  { name: 'SUBSCRIBE 5.0 requested QoS 3', version: 5, bytes: '82 07 0001 00 0001 61 03', reason: M },
  { name: 'SUBSCRIBE filter without options byte', version: 4, bytes: '82 05 0001 0001 61', reason: M },
  { name: 'SUBSCRIBE filter with ill-formed UTF-8', version: 4, bytes: '82 06 0001 0001 ff 00', reason: M },
  {
    name: 'SUBSCRIBE 5.0 subscription identifier twice',
    version: 5,
    bytes: '82 0b 0001 04 0b01 0b02 0001 61 00',
    reason: P,
  },
  { name: 'SUBSCRIBE 5.0 topic alias not allowed', version: 5, bytes: '82 0a 0001 03 230001 0001 61 00', reason: M },
  { name: 'SUBSCRIBE reserved flags 0 [MQTT-3.8.1-1]', version: 4, bytes: '80 06 0001 0001 61 00', reason: M },
  { name: 'UNSUBSCRIBE without filters [MQTT-3.10.3-2]', version: 4, bytes: 'a2 02 0001', reason: P },
  { name: 'UNSUBSCRIBE 5.0 without filters', version: 5, bytes: 'a2 03 0001 00', reason: P },
  { name: 'UNSUBSCRIBE packet id 0', version: 4, bytes: 'a2 05 0000 0001 61', reason: P },
  { name: 'UNSUBSCRIBE truncated filter', version: 4, bytes: 'a2 05 0001 0002 61', reason: M },
  { name: 'UNSUBSCRIBE reserved flags 0 [MQTT-3.10.1-1]', version: 4, bytes: 'a0 05 0001 0001 61', reason: M },
  // ---- other types
  { name: 'SUBACK truncated packet id', version: 4, bytes: '90 01 00', reason: M },
  { name: 'UNSUBACK 3.1.1 trailing bytes', version: 4, bytes: 'b0 03 0001 00', reason: M },
  { name: 'PINGREQ with a body', version: 4, bytes: 'c0 01 00', reason: M },
  { name: 'PINGRESP with a body', version: 5, bytes: 'd0 01 00', reason: M },
  { name: 'DISCONNECT 3.1.1 with a body', version: 4, bytes: 'e0 01 00', reason: M },
  { name: 'DISCONNECT 5.0 topic alias not allowed', version: 5, bytes: 'e0 05 00 03 230001', reason: M },
  { name: 'DISCONNECT 5.0 trailing byte after properties', version: 5, bytes: 'e0 03 00 00 00', reason: M },
  { name: 'DISCONNECT reserved flags', version: 5, bytes: 'e1 00', reason: M },
  { name: 'AUTH in 3.1.1 (reserved type)', version: 4, bytes: 'f0 00', reason: M },
  { name: 'AUTH 5.0 reason string twice', version: 5, bytes: 'f0 0a 18 08 1f 0001 61 1f 0001 62', reason: P },
  { name: 'AUTH 5.0 session expiry not allowed', version: 5, bytes: 'f0 07 18 05 1100000001', reason: M },
  { name: 'packet type 0', version: 4, bytes: '00 00', reason: M },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    t.equal(reasonOf(() => decodeBytes(hex(c.bytes), c.version)), c.reason);
  });
}

t.test('decodePublish rejects QoS 3 by itself (not only the frame reader)', async (t) => {
  t.equal(reasonOf(() => decodePublish(0x36, hex('0001 74 0001'), 4)), M);
});

t.test('unsupported protocol name or level: 0x84 with the level seen', async (t) => {
  const unsupported: Array<[string, string, number]> = [
    ['MQTT level 6', '0004 4d515454 06', 6],
    ['MQTT level 3', '0004 4d515454 03', 3],
    ['MQIsdp level 4', '0006 4d5149736470 04', 4],
    ['bridge bit (0x84)', '0004 4d515454 84', 0x84],
    ['unknown name', '0004 4d515458 04', 4],
  ];
  for (const [name, prefix, level] of unsupported) {
    const body = hex(`${prefix} 02 003c 0001 63`);
    try {
      decodeConnect(body);
      t.fail(`${name}: no error`);
    } catch (err) {
      t.ok(err instanceof UnsupportedVersionError, `${name}: UnsupportedVersionError`);
      t.ok(err instanceof ProtocolError, `${name}: is a ProtocolError`);
      if (err instanceof UnsupportedVersionError) {
        t.equal(err.reason, ReasonCode.UnsupportedProtocolVersion, `${name}: reason 0x84`);
        t.equal(err.protocolVersion, level, `${name}: level seen`);
      }
    }
  }
});

t.test('a ProtocolError carries a metric label', async (t) => {
  try {
    decodeBytes(hex('38 03 0001 74'), 4);
  } catch (err) {
    t.ok(err instanceof ProtocolError);
    if (err instanceof ProtocolError) t.equal(err.label, 'malformed_packet');
  }
});
