// Packet body decoders for MQTT 3.1, 3.1.1 and 5.0. Each checks what the wire format alone can
// tell (sizes, flags, UTF-8, property rules) and throws ProtocolError with the 5.0 reason code;
// topic semantics are left to the broker (topic.ts).
import { ProtocolError } from './errors.js';
import { PacketType } from './packets.js';
import type {
  AckPacket,
  AuthPacket,
  ConnackPacket,
  ConnectPacket,
  DisconnectPacket,
  Packet,
  ProtocolVersion,
  PublishPacket,
  QoS,
  SubackPacket,
  SubscribePacket,
  SubscriptionRequest,
  UnsubackPacket,
  UnsubscribePacket,
  Will,
} from './packets.js';
import { ReasonCode } from './reason-codes.js';
import { Reader, malformed, protocolError } from './bytes.js';
import { decodeProperties, WILL_PROPERTIES } from './properties.js';
import { checkFixedHeader } from './frame-reader.js';

/** A CONNECT with a protocol name/level we do not speak; `protocolVersion` is the level seen. */
export class UnsupportedVersionError extends ProtocolError {
  readonly protocolVersion: number;
  constructor(protocolVersion: number, message: string) {
    super(ReasonCode.UnsupportedProtocolVersion, message);
    this.name = 'UnsupportedVersionError';
    this.protocolVersion = protocolVersion;
  }
}

const reader = new Reader();

/** Whether the CONNECT starts with the name "MQTT" (3.1.1 and 5.0): matched as bytes, so the
 *  common CONNECT decodes no string for it. */
function isMqttName(body: Buffer): boolean {
  return body[0] === 0 && body[1] === 4 && body[2] === 0x4d && body[3] === 0x51 && body[4] === 0x54 && body[5] === 0x54;
}

/** Decodes CONNECT, detecting the version from the protocol name and level. */
export function decodeConnect(body: Buffer): ConnectPacket {
  const r = reader.reset(body);
  let protocolName: string;
  if (isMqttName(body)) {
    r.pos = 6;
    protocolName = 'MQTT';
  } else protocolName = r.utf8('protocol name');
  const level = r.u8('protocol level');
  // [MQTT-3.1.2-1] [MQTT-3.1.2-2] "MQIsdp" is 3.1's name; 3.1.1 and 5.0 say "MQTT".
  const known = protocolName === 'MQTT' ? level === 4 || level === 5 : protocolName === 'MQIsdp' && level === 3;
  if (!known) throw new UnsupportedVersionError(level, `unsupported protocol ${protocolName} level ${level}`);
  const protocolVersion = level as ProtocolVersion;
  const flags = r.u8('connect flags');
  if (flags & 0x01) throw malformed('reserved connect flag set'); // [MQTT-3.1.2-3]
  const hasWill = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 0x03;
  const willRetain = (flags & 0x20) !== 0;
  if (willQos === 3) throw malformed('will QoS 3'); // [MQTT-3.1.2-14]
  // [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15] will QoS and retain need the will flag.
  if (!hasWill && (willQos !== 0 || willRetain)) throw malformed('will QoS or retain without a will');
  const hasPassword = (flags & 0x40) !== 0;
  const hasUsername = (flags & 0x80) !== 0;
  if (hasPassword && !hasUsername && protocolVersion < 5) throw malformed('password without user name'); // [MQTT-3.1.2-22]
  const packet: ConnectPacket = {
    type: PacketType.CONNECT,
    protocolName,
    protocolVersion,
    cleanStart: (flags & 0x02) !== 0,
    keepalive: r.u16('keep alive'),
    clientId: '',
  };
  if (protocolVersion === 5) {
    const properties = decodeProperties(r, PacketType.CONNECT);
    if (properties !== undefined) packet.properties = properties;
  }
  packet.clientId = r.utf8('client identifier');
  if (hasWill) {
    const properties = protocolVersion === 5 ? decodeProperties(r, WILL_PROPERTIES) : undefined;
    const will: Will = { topic: r.utf8('will topic'), payload: r.binary('will payload'), qos: willQos as QoS, retain: willRetain };
    if (properties !== undefined) will.properties = properties;
    packet.will = will;
  }
  if (hasUsername) packet.username = r.utf8('user name');
  if (hasPassword) packet.password = r.binary('password');
  r.done('CONNECT');
  return packet;
}

/** Decodes PUBLISH; the payload is a view of `body`. */
export function decodePublish(header: number, body: Buffer, version: ProtocolVersion): PublishPacket {
  const qos = (header >> 1) & 0x03;
  if (qos === 3) throw malformed('PUBLISH with QoS 3'); // [MQTT-3.3.1-4]
  const dup = (header & 0x08) !== 0;
  if (dup && qos === 0) throw malformed('DUP set on a QoS 0 PUBLISH'); // [MQTT-3.3.1-2]
  const r = reader.reset(body);
  const topic = r.utf8('topic name');
  let packetId = 0;
  if (qos > 0) {
    packetId = r.u16('packet identifier');
    if (packetId === 0) throw protocolError('packet identifier 0'); // [MQTT-2.2.1-3]
  }
  const properties = version === 5 ? decodeProperties(r, PacketType.PUBLISH) : undefined;
  return { type: PacketType.PUBLISH, dup, qos: qos as QoS, retain: (header & 0x01) !== 0, topic, packetId, properties, payload: r.rest() };
}

/** Decodes any packet type but CONNECT's version detection (which decodeConnect does) for `version`. */
export function decodePacket(header: number, body: Buffer, version: ProtocolVersion): Packet {
  const type = header >> 4;
  if (type === PacketType.PUBLISH) return decodePublish(header, body, version);
  checkFixedHeader(header);
  switch (type) {
    case PacketType.CONNECT:
      return decodeConnect(body);
    case PacketType.CONNACK:
      return decodeConnack(body, version);
    case PacketType.PUBACK:
    case PacketType.PUBREC:
    case PacketType.PUBREL:
    case PacketType.PUBCOMP:
      return decodeAck(type, body, version);
    case PacketType.SUBSCRIBE:
      return decodeSubscribe(body, version);
    case PacketType.SUBACK:
      return decodeSuback(body, version);
    case PacketType.UNSUBSCRIBE:
      return decodeUnsubscribe(body, version);
    case PacketType.UNSUBACK:
      return decodeUnsuback(body, version);
    case PacketType.PINGREQ:
    case PacketType.PINGRESP:
      if (body.length !== 0) throw malformed('PINGREQ/PINGRESP with a body');
      return { type };
    case PacketType.DISCONNECT:
      return decodeReasonOnly(PacketType.DISCONNECT, body, version);
    default:
      if (version !== 5) throw malformed('AUTH before MQTT 5.0'); // type 15 is reserved in 3.x
      return decodeReasonOnly(PacketType.AUTH, body, version);
  }
}

function decodeConnack(body: Buffer, version: ProtocolVersion): ConnackPacket {
  const r = reader.reset(body);
  const flags = r.u8('connack flags');
  if (flags & 0xfe) throw malformed('reserved CONNACK flags set'); // [MQTT-3.2.2-1]
  const packet: ConnackPacket = { type: PacketType.CONNACK, sessionPresent: flags === 1, reasonCode: r.u8('reason code') };
  if (version === 5) {
    const properties = decodeProperties(r, PacketType.CONNACK);
    if (properties !== undefined) packet.properties = properties;
  }
  r.done('CONNACK');
  return packet;
}

function decodeAck(type: AckPacket['type'], body: Buffer, version: ProtocolVersion): AckPacket {
  const r = reader.reset(body);
  const packet: AckPacket = { type, packetId: r.u16('packet identifier'), reasonCode: ReasonCode.Success };
  // 5.0: reason code and properties may be left off when Success / empty (spec 3.4.2.1).
  if (version === 5 && r.remaining > 0) {
    packet.reasonCode = r.u8('reason code');
    if (r.remaining > 0) {
      const properties = decodeProperties(r, type);
      if (properties !== undefined) packet.properties = properties;
    }
  }
  r.done('acknowledgement');
  return packet;
}

function decodeSubscribe(body: Buffer, version: ProtocolVersion): SubscribePacket {
  const r = reader.reset(body);
  const packetId = nonZeroPacketId(r);
  const properties = version === 5 ? decodeProperties(r, PacketType.SUBSCRIBE) : undefined;
  const subscriptions: SubscriptionRequest[] = [];
  while (r.remaining > 0) {
    const filter = r.utf8('topic filter');
    const options = r.u8('subscription options');
    // 3.x: only the QoS bits [MQTT-3.8.3-4]; 5.0: bits 6-7 reserved [MQTT-3.8.3-5].
    if (options & (version === 5 ? 0xc0 : 0xfc)) throw malformed('reserved subscription option bits set');
    const qos = options & 0x03;
    if (qos === 3) throw malformed('requested QoS 3');
    const retainHandling = (options >> 4) & 0x03;
    if (retainHandling === 3) throw malformed('retain handling 3');
    subscriptions.push({
      filter,
      qos: qos as QoS,
      noLocal: (options & 0x04) !== 0,
      retainAsPublished: (options & 0x08) !== 0,
      retainHandling: retainHandling as 0 | 1 | 2,
    });
  }
  if (subscriptions.length === 0) throw protocolError('SUBSCRIBE without topic filters'); // [MQTT-3.8.3-3]
  const packet: SubscribePacket = { type: PacketType.SUBSCRIBE, packetId, subscriptions };
  if (properties !== undefined) packet.properties = properties;
  return packet;
}

function decodeSuback(body: Buffer, version: ProtocolVersion): SubackPacket {
  const r = reader.reset(body);
  const packetId = r.u16('packet identifier');
  const properties = version === 5 ? decodeProperties(r, PacketType.SUBACK) : undefined;
  const packet: SubackPacket = { type: PacketType.SUBACK, packetId, reasonCodes: [...r.rest()] };
  if (properties !== undefined) packet.properties = properties;
  return packet;
}

function decodeUnsubscribe(body: Buffer, version: ProtocolVersion): UnsubscribePacket {
  const r = reader.reset(body);
  const packetId = nonZeroPacketId(r);
  const properties = version === 5 ? decodeProperties(r, PacketType.UNSUBSCRIBE) : undefined;
  const filters: string[] = [];
  while (r.remaining > 0) filters.push(r.utf8('topic filter'));
  if (filters.length === 0) throw protocolError('UNSUBSCRIBE without topic filters'); // [MQTT-3.10.3-2]
  const packet: UnsubscribePacket = { type: PacketType.UNSUBSCRIBE, packetId, filters };
  if (properties !== undefined) packet.properties = properties;
  return packet;
}

function decodeUnsuback(body: Buffer, version: ProtocolVersion): UnsubackPacket {
  const r = reader.reset(body);
  const packet: UnsubackPacket = { type: PacketType.UNSUBACK, packetId: r.u16('packet identifier'), reasonCodes: [] };
  if (version === 5) {
    const properties = decodeProperties(r, PacketType.UNSUBACK);
    if (properties !== undefined) packet.properties = properties;
    packet.reasonCodes = [...r.rest()];
  }
  r.done('UNSUBACK');
  return packet;
}

/** DISCONNECT and AUTH: 3.x has no body; 5.0 may leave off Success and empty properties. */
function decodeReasonOnly<T extends 14 | 15>(type: T, body: Buffer, version: ProtocolVersion): DisconnectPacket | AuthPacket {
  const r = reader.reset(body);
  const packet: DisconnectPacket | AuthPacket = { type, reasonCode: ReasonCode.Success };
  if (version === 5 && r.remaining > 0) {
    packet.reasonCode = r.u8('reason code');
    if (r.remaining > 0) {
      const properties = decodeProperties(r, type);
      if (properties !== undefined) packet.properties = properties;
    }
  }
  r.done(type === PacketType.DISCONNECT ? 'DISCONNECT' : 'AUTH');
  return packet;
}

function nonZeroPacketId(r: Reader): number {
  const id = r.u16('packet identifier');
  if (id === 0) throw protocolError('packet identifier 0'); // [MQTT-2.2.1-3]
  return id;
}
