// The MQTT 5.0 property block (spec 2.2.2): the full property table, its decoder and encoder.
import type { Properties, UserProperties } from './packets.js';
import { PacketType } from './packets.js';
import { malformed, protocolError } from './bytes.js';
import { ProtocolError } from './errors.js';
import { ReasonCode } from './reason-codes.js';
import type { Reader } from './bytes.js';
import { varintSize, writeString, writeVarint } from './strings.js';

export type PropertyDataType = 'byte' | 'u16' | 'u32' | 'varint' | 'utf8' | 'binary' | 'pair';

export interface PropertyDef {
  id: number;
  name: keyof Properties;
  type: PropertyDataType;
  /** Bit n set = packet type n may carry it; bit 0 = the will properties of CONNECT. */
  packets: number;
}

/** Context for the will properties inside CONNECT (packet type 0 is reserved, so bit 0 is free). */
export const WILL_PROPERTIES = 0;

const bit = (...types: number[]): number => types.reduce((m, t) => m | (1 << t), 0);
const P = PacketType;
const W = WILL_PROPERTIES;

/** Spec 2.2.2.2, in identifier order. */
export const PROPERTY_TABLE: readonly PropertyDef[] = [
  { id: 0x01, name: 'payloadFormatIndicator', type: 'byte', packets: bit(P.PUBLISH, W) },
  { id: 0x02, name: 'messageExpiryInterval', type: 'u32', packets: bit(P.PUBLISH, W) },
  { id: 0x03, name: 'contentType', type: 'utf8', packets: bit(P.PUBLISH, W) },
  { id: 0x08, name: 'responseTopic', type: 'utf8', packets: bit(P.PUBLISH, W) },
  { id: 0x09, name: 'correlationData', type: 'binary', packets: bit(P.PUBLISH, W) },
  { id: 0x0b, name: 'subscriptionIdentifiers', type: 'varint', packets: bit(P.PUBLISH, P.SUBSCRIBE) },
  { id: 0x11, name: 'sessionExpiryInterval', type: 'u32', packets: bit(P.CONNECT, P.CONNACK, P.DISCONNECT) },
  { id: 0x12, name: 'assignedClientIdentifier', type: 'utf8', packets: bit(P.CONNACK) },
  { id: 0x13, name: 'serverKeepAlive', type: 'u16', packets: bit(P.CONNACK) },
  { id: 0x15, name: 'authenticationMethod', type: 'utf8', packets: bit(P.CONNECT, P.CONNACK, P.AUTH) },
  { id: 0x16, name: 'authenticationData', type: 'binary', packets: bit(P.CONNECT, P.CONNACK, P.AUTH) },
  { id: 0x17, name: 'requestProblemInformation', type: 'byte', packets: bit(P.CONNECT) },
  { id: 0x18, name: 'willDelayInterval', type: 'u32', packets: bit(W) },
  { id: 0x19, name: 'requestResponseInformation', type: 'byte', packets: bit(P.CONNECT) },
  { id: 0x1a, name: 'responseInformation', type: 'utf8', packets: bit(P.CONNACK) },
  { id: 0x1c, name: 'serverReference', type: 'utf8', packets: bit(P.CONNACK, P.DISCONNECT) },
  {
    id: 0x1f,
    name: 'reasonString',
    type: 'utf8',
    packets: bit(P.CONNACK, P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP, P.SUBACK, P.UNSUBACK, P.DISCONNECT, P.AUTH),
  },
  { id: 0x21, name: 'receiveMaximum', type: 'u16', packets: bit(P.CONNECT, P.CONNACK) },
  { id: 0x22, name: 'topicAliasMaximum', type: 'u16', packets: bit(P.CONNECT, P.CONNACK) },
  { id: 0x23, name: 'topicAlias', type: 'u16', packets: bit(P.PUBLISH) },
  { id: 0x24, name: 'maximumQoS', type: 'byte', packets: bit(P.CONNACK) },
  { id: 0x25, name: 'retainAvailable', type: 'byte', packets: bit(P.CONNACK) },
  {
    id: 0x26,
    name: 'userProperties',
    type: 'pair',
    // Every packet type that has a property block (all but PINGREQ/PINGRESP), and the will.
    packets: bit(W, P.CONNECT, P.CONNACK, P.PUBLISH, P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP, P.SUBSCRIBE,
      P.SUBACK, P.UNSUBSCRIBE, P.UNSUBACK, P.DISCONNECT, P.AUTH),
  },
  { id: 0x27, name: 'maximumPacketSize', type: 'u32', packets: bit(P.CONNECT, P.CONNACK) },
  { id: 0x28, name: 'wildcardSubscriptionAvailable', type: 'byte', packets: bit(P.CONNACK) },
  { id: 0x29, name: 'subscriptionIdentifiersAvailable', type: 'byte', packets: bit(P.CONNACK) },
  { id: 0x2a, name: 'sharedSubscriptionAvailable', type: 'byte', packets: bit(P.CONNACK) },
];

const byId: (PropertyDef | undefined)[] = [];
for (const def of PROPERTY_TABLE) byId[def.id] = def;

/** Values of these must not be 0 (spec 3.1.2.11.3, 3.1.2.11.4, 3.3.2.3.4). */
const NONZERO = new Set<keyof Properties>(['receiveMaximum', 'maximumPacketSize']);

// Properties is a bag of optional fields keyed by the table's names; this view lets the
// table-driven loops read and write them by name. The table keeps name and type in step.
type PropertyBag = Partial<Record<keyof Properties, unknown>>;

/**
 * Reads a property block (length, then properties) for packet type `context` (or
 * WILL_PROPERTIES). An empty block gives undefined, so most packets allocate nothing here.
 */
export function decodeProperties(r: Reader, context: number): Properties | undefined {
  const length = r.varint('property length');
  if (length === 0) return undefined;
  if (length > r.remaining) throw malformed('property length exceeds the packet');
  const end = r.pos + length;
  const props: Properties = {};
  const bag: PropertyBag = props;
  while (r.pos < end) {
    const id = r.varint('property identifier');
    const def = byId[id];
    if (def === undefined || (def.packets & (1 << context)) === 0) {
      throw malformed(`property 0x${id.toString(16)} not allowed in packet type ${context}`);
    }
    const { name } = def;
    switch (def.type) {
      case 'pair': {
        const key = r.utf8('user property name');
        const value = r.utf8('user property value');
        (props.userProperties ??= []).push([key, value]);
        continue;
      }
      case 'varint': {
        const v = r.varint(name);
        if (v === 0) throw protocolError('subscription identifier 0'); // spec 3.3.4, 3.8.2.1.2
        const ids = (props.subscriptionIdentifiers ??= []);
        // Several in a PUBLISH to a client (one per matching subscription); once in SUBSCRIBE.
        if (ids.length > 0 && context !== PacketType.PUBLISH) throw protocolError('subscription identifier twice');
        ids.push(v);
        continue;
      }
    }
    if (bag[name] !== undefined) throw protocolError(`property ${name} appears twice`);
    let value: number | string | Buffer;
    switch (def.type) {
      case 'byte':
        value = r.u8(name);
        // Every byte property is a 0/1 flag; other values are a Protocol Error (spec 3.1.2.11.6 etc.).
        if (value > 1) throw protocolError(`${name} must be 0 or 1`);
        break;
      case 'u16':
        value = r.u16(name);
        break;
      case 'u32':
        value = r.u32(name);
        break;
      case 'utf8':
        value = r.utf8(name);
        break;
      case 'binary':
        value = r.binary(name);
        break;
    }
    if (value === 0 && NONZERO.has(name)) throw protocolError(`${name} must not be 0`);
    // [MQTT-3.3.2-8] Topic Alias 0 is not permitted; its own reason code says so (0x94).
    if (value === 0 && name === 'topicAlias') throw new ProtocolError(ReasonCode.TopicAliasInvalid, 'topic alias 0');
    bag[name] = value;
  }
  // A property that ran past the declared block length is malformed.
  if (r.pos !== end) throw malformed('property block length mismatch');
  return props;
}

/** Bytes the properties take, excluding the property-length prefix. */
export function propertiesSize(props: Properties): number {
  const bag: PropertyBag = props;
  let size = 0;
  for (const def of PROPERTY_TABLE) {
    const value = bag[def.name];
    if (value === undefined) continue;
    switch (def.type) {
      case 'byte':
        size += 2;
        break;
      case 'u16':
        size += 3;
        break;
      case 'u32':
        size += 5;
        break;
      case 'varint':
        for (const v of value as number[]) size += 1 + varintSize(v);
        break;
      case 'utf8':
        size += 3 + Buffer.byteLength(value as string);
        break;
      case 'binary':
        size += 3 + (value as Buffer).length;
        break;
      case 'pair':
        for (const [k, v] of value as UserProperties) size += 5 + Buffer.byteLength(k) + Buffer.byteLength(v);
        break;
    }
  }
  return size;
}

/** Writes the properties (without the length prefix) at `pos`; returns the position after. */
export function writeProperties(buf: Buffer, pos: number, props: Properties): number {
  const bag: PropertyBag = props;
  for (const def of PROPERTY_TABLE) {
    const value = bag[def.name];
    if (value === undefined) continue;
    switch (def.type) {
      case 'byte':
        buf[pos++] = def.id;
        buf[pos++] = value as number;
        break;
      case 'u16':
        buf[pos++] = def.id;
        pos = buf.writeUInt16BE(value as number, pos);
        break;
      case 'u32':
        buf[pos++] = def.id;
        pos = buf.writeUInt32BE(value as number, pos);
        break;
      case 'varint':
        for (const v of value as number[]) {
          buf[pos++] = def.id;
          pos = writeVarint(buf, pos, v);
        }
        break;
      case 'utf8':
        buf[pos++] = def.id;
        pos = writeString(buf, pos, value as string);
        break;
      case 'binary':
        buf[pos++] = def.id;
        pos = buf.writeUInt16BE((value as Buffer).length, pos);
        pos += (value as Buffer).copy(buf, pos);
        break;
      case 'pair':
        for (const [k, v] of value as UserProperties) {
          buf[pos++] = def.id;
          pos = writeString(buf, pos, k);
          pos = writeString(buf, pos, v);
        }
        break;
    }
  }
  return pos;
}
