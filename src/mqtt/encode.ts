// Packet encoders for MQTT 3.1, 3.1.1 and 5.0. PUBLISH headers and acks are built into exactly
// sized buffers (hot path); everything else goes through one reused scratch writer (cold path).
import { PacketType } from './packets.js';
import type { Packet, ProtocolVersion, Properties, QoS, SubscriptionRequest } from './packets.js';
import { Writer } from './bytes.js';
import { propertiesSize, writeProperties } from './properties.js';
import { varintSize, writeString, writeVarint, VARINT_MAX } from './strings.js';

/**
 * PUBLISH fixed header + variable header (+ 5.0 properties) only; the caller writes the payload
 * after it (writev) so fan-out never copies payloads.
 */
export function encodePublishHeader(
  topic: string,
  qos: QoS,
  retain: boolean,
  dup: boolean,
  packetId: number,
  properties: Properties | undefined,
  payloadLength: number,
  version: ProtocolVersion,
): Buffer {
  const topicLength = Buffer.byteLength(topic);
  let variable = 2 + topicLength + (qos > 0 ? 2 : 0);
  let propsLength = 0;
  if (version === 5) {
    propsLength = properties === undefined ? 0 : propertiesSize(properties);
    variable += varintSize(propsLength) + propsLength;
  }
  const remaining = variable + payloadLength;
  if (remaining > VARINT_MAX) throw new RangeError('PUBLISH larger than the maximum remaining length');
  const buf = Buffer.allocUnsafe(1 + varintSize(remaining) + variable);
  buf[0] = (PacketType.PUBLISH << 4) | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0);
  let pos = writeString(buf, writeVarint(buf, 1, remaining), topic);
  if (qos > 0) pos = buf.writeUInt16BE(packetId, pos);
  if (version === 5) {
    pos = writeVarint(buf, pos, propsLength);
    if (propsLength > 0) writeProperties(buf, pos, properties!);
  }
  return buf;
}

/**
 * PUBACK/PUBREC/PUBREL/PUBCOMP; the 4-byte form when the reason code is 0 and there are no
 * properties (and always for 3.x), the reason code alone when there are no properties.
 */
export function encodeAck(
  type: 4 | 5 | 6 | 7,
  packetId: number,
  reasonCode: number,
  version: ProtocolVersion,
  properties?: Properties,
): Buffer {
  const header = (type << 4) | (type === PacketType.PUBREL ? 0x02 : 0); // [MQTT-3.6.1-1]
  const propsLength = version === 5 && properties !== undefined ? propertiesSize(properties) : 0;
  if (version < 5 || (reasonCode === 0 && propsLength === 0)) {
    const buf = Buffer.allocUnsafe(4);
    buf[0] = header;
    buf[1] = 2;
    buf[2] = packetId >>> 8;
    buf[3] = packetId & 0xff;
    return buf;
  }
  const remaining = propsLength === 0 ? 3 : 3 + varintSize(propsLength) + propsLength;
  const buf = Buffer.allocUnsafe(1 + varintSize(remaining) + remaining);
  buf[0] = header;
  let pos = writeVarint(buf, 1, remaining);
  pos = buf.writeUInt16BE(packetId, pos);
  buf[pos++] = reasonCode;
  if (propsLength > 0) writeProperties(buf, writeVarint(buf, pos, propsLength), properties!);
  return buf;
}

const writer = new Writer();

/** Any packet type, for `version`; cold path (PUBLISH copies its payload here). */
export function encodePacket(packet: Packet, version: ProtocolVersion): Buffer {
  const w = writer;
  w.pos = 0; // a previous encode may have thrown half-way
  const v5 = version === 5;
  switch (packet.type) {
    case PacketType.CONNECT: {
      w.utf8(version === 3 ? 'MQIsdp' : 'MQTT');
      w.u8(version);
      const { will } = packet;
      let flags = packet.cleanStart ? 0x02 : 0;
      if (will !== undefined) flags |= 0x04 | (will.qos << 3) | (will.retain ? 0x20 : 0);
      if (packet.password !== undefined) flags |= 0x40;
      if (packet.username !== undefined) flags |= 0x80;
      w.u8(flags);
      w.u16(packet.keepalive);
      if (v5) writeBlock(w, packet.properties);
      w.utf8(packet.clientId);
      if (will !== undefined) {
        if (v5) writeBlock(w, will.properties);
        w.utf8(will.topic);
        w.binary(will.payload);
      }
      if (packet.username !== undefined) w.utf8(packet.username);
      if (packet.password !== undefined) w.binary(packet.password);
      return w.finish(PacketType.CONNECT << 4);
    }
    case PacketType.CONNACK:
      w.u8(packet.sessionPresent ? 1 : 0);
      w.u8(packet.reasonCode);
      if (v5) writeBlock(w, packet.properties);
      return w.finish(PacketType.CONNACK << 4);
    case PacketType.PUBLISH: {
      const { topic, qos, retain, dup, packetId, properties, payload } = packet;
      const head = encodePublishHeader(topic, qos, retain, dup, packetId, properties, payload.length, version);
      return Buffer.concat([head, payload], head.length + payload.length);
    }
    case PacketType.PUBACK:
    case PacketType.PUBREC:
    case PacketType.PUBREL:
    case PacketType.PUBCOMP:
      return encodeAck(packet.type, packet.packetId, packet.reasonCode, version, packet.properties);
    case PacketType.SUBSCRIBE:
      w.u16(packet.packetId);
      if (v5) writeBlock(w, packet.properties);
      for (const sub of packet.subscriptions) {
        w.utf8(sub.filter);
        w.u8(v5 ? subscriptionOptions(sub) : sub.qos);
      }
      return w.finish((PacketType.SUBSCRIBE << 4) | 0x02);
    case PacketType.SUBACK:
      w.u16(packet.packetId);
      if (v5) writeBlock(w, packet.properties);
      for (const code of packet.reasonCodes) w.u8(code);
      return w.finish(PacketType.SUBACK << 4);
    case PacketType.UNSUBSCRIBE:
      w.u16(packet.packetId);
      if (v5) writeBlock(w, packet.properties);
      for (const filter of packet.filters) w.utf8(filter);
      return w.finish((PacketType.UNSUBSCRIBE << 4) | 0x02);
    case PacketType.UNSUBACK:
      w.u16(packet.packetId);
      if (v5) {
        writeBlock(w, packet.properties);
        for (const code of packet.reasonCodes) w.u8(code);
      }
      return w.finish(PacketType.UNSUBACK << 4);
    case PacketType.PINGREQ:
    case PacketType.PINGRESP:
      return w.finish(packet.type << 4);
    case PacketType.DISCONNECT:
    case PacketType.AUTH:
      if (packet.type === PacketType.AUTH && !v5) throw new RangeError('AUTH exists only in MQTT 5.0');
      // 5.0: Success with no properties is the empty body; a reason alone needs no property length.
      if (v5 && (packet.reasonCode !== 0 || hasProperties(packet.properties))) {
        w.u8(packet.reasonCode);
        if (hasProperties(packet.properties)) writeBlock(w, packet.properties);
      }
      return w.finish(packet.type << 4);
  }
}

function subscriptionOptions(sub: SubscriptionRequest): number {
  return sub.qos | (sub.noLocal ? 0x04 : 0) | (sub.retainAsPublished ? 0x08 : 0) | (sub.retainHandling << 4);
}

function hasProperties(props: Properties | undefined): boolean {
  return props !== undefined && propertiesSize(props) > 0;
}

/** A property block: its length, then the properties. */
function writeBlock(w: Writer, props: Properties | undefined): void {
  const size = props === undefined ? 0 : propertiesSize(props);
  w.varint(size);
  if (size > 0) w.pos = writeProperties(w.room(size), w.pos, props!);
}
