// Round trip against the mqtt-packet reference codec over a seeded random set of packets:
// their bytes decode with ours to the same fields, and our bytes parse with theirs.
import t from 'tap';
import mqttPacket from 'mqtt-packet';
import { decodeConnect, decodePacket } from '../../src/mqtt/decode.js';
import { encodePacket } from '../../src/mqtt/encode.js';
import type { Packet, Properties, ProtocolVersion, QoS, UserProperties } from '../../src/mqtt/packets.js';
import { PROPERTY_TABLE, WILL_PROPERTIES } from '../../src/mqtt/properties.js';
import { parseVarint, varintSize } from '../../src/mqtt/strings.js';

// ---- seeded generator

/** xorshift32, so a failure names a seed that reproduces it. */
function prng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

class Gen {
  constructor(readonly rand: () => number) {}
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rand() * (hi - lo + 1));
  }
  bool(): boolean {
    return this.rand() < 0.5;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }
  qos(): QoS {
    return this.pick([0, 1, 2] as const);
  }
  /** Mixed ASCII and multi-byte characters, never U+0000. */
  str(min = 0, max = 12): string {
    const chars = ['a', 'b', 'z', '/', '-', '_', '0', 'é', '中', '😀', ' '];
    let s = '';
    for (let n = this.int(min, max); n > 0; n--) s += this.pick(chars);
    return s;
  }
  bytes(max: number): Buffer {
    const buf = Buffer.alloc(this.int(0, max));
    for (let i = 0; i < buf.length; i++) buf[i] = this.int(0, 255);
    return buf;
  }
  payload(): Buffer {
    return this.bytes(this.pick([0, 10, 300, 20_000]));
  }
  packetId(): number {
    return this.int(1, 0xffff);
  }
  /** A random valid property set for `context`, or undefined. */
  properties(context: number): Properties | undefined {
    if (this.bool()) return undefined;
    const props: Properties = {};
    const bag: Partial<Record<keyof Properties, unknown>> = props;
    for (const def of PROPERTY_TABLE) {
      if ((def.packets & (1 << context)) === 0 || this.rand() < 0.6) continue;
      switch (def.type) {
        case 'byte':
          bag[def.name] = this.int(0, 1);
          break;
        case 'u16':
          bag[def.name] = this.int(1, 0xffff);
          break;
        case 'u32':
          bag[def.name] = this.pick([1, 60, 0xffffffff, this.int(1, 0xfffffff)]);
          break;
        case 'varint':
          bag[def.name] = Array.from({ length: context === 3 ? this.int(1, 3) : 1 }, () =>
            this.pick([1, 127, 128, 16_383, 16_384, 268_435_455, this.int(1, 268_435_455)]),
          );
          break;
        case 'utf8':
          bag[def.name] = this.str(0, 20);
          break;
        case 'binary':
          bag[def.name] = this.bytes(40);
          break;
        case 'pair': {
          // Distinct, non-numeric keys: mqtt-packet keeps user properties in an object.
          const pairs: UserProperties = [];
          for (let i = this.int(1, 3); i > 0; i--) pairs.push([`k${i}${this.str(0, 4)}`, this.str(0, 8)]);
          bag[def.name] = pairs;
          break;
        }
      }
    }
    return Object.keys(props).length > 0 ? props : undefined;
  }
}

/** Sets `properties` only when there are some, as our decoders do (PUBLISH always has the key). */
function withProps<T extends object>(packet: T, properties: Properties | undefined): T {
  return properties === undefined ? packet : { ...packet, properties };
}

function generate(g: Gen, version: ProtocolVersion): Packet {
  const v5 = version === 5;
  const props = (context: number) => (v5 ? g.properties(context) : undefined);
  const type = g.int(1, v5 ? 15 : 14);
  switch (type) {
    case 1: {
      const hasWill = g.bool();
      const hasUser = g.bool();
      const packet: Packet = withProps(
        {
          type: 1,
          protocolName: version === 3 ? 'MQIsdp' : 'MQTT',
          protocolVersion: version,
          cleanStart: g.bool(),
          keepalive: g.int(0, 0xffff),
          clientId: g.str(version === 3 ? 1 : 0, 23), // 3.1 needs 1-23 characters
        },
        props(1),
      );
      if (hasWill) {
        packet.will = withProps({ topic: g.str(1, 20), payload: g.payload(), qos: g.qos(), retain: g.bool() }, props(WILL_PROPERTIES));
      }
      if (hasUser) packet.username = g.str(0, 10);
      // mqtt-packet will not write a password without a user name even in 5.0 (the 5.0
      // password-only CONNECT is a golden vector instead).
      if (hasUser && g.bool()) packet.password = g.bytes(20);
      return packet;
    }
    case 2:
      return withProps({ type: 2, sessionPresent: g.bool(), reasonCode: v5 ? g.pick([0, 0x80, 0x86, 0x9c]) : g.int(0, 5) }, props(2));
    case 3: {
      const qos = g.qos();
      const dup = qos > 0 && g.bool();
      return { type: 3, dup, qos, retain: g.bool(), topic: g.str(1, 30), packetId: qos > 0 ? g.packetId() : 0, properties: props(3), payload: g.payload() };
    }
    case 4:
    case 5:
    case 6:
    case 7: {
      const codes = type === 4 || type === 5 ? [0, 0x10, 0x80, 0x87, 0x91] : [0, 0x92];
      return withProps({ type, packetId: g.packetId(), reasonCode: v5 ? g.pick(codes) : 0 }, props(type));
    }
    case 8:
      return withProps(
        {
          type: 8,
          packetId: g.packetId(),
          subscriptions: Array.from({ length: g.int(1, 4) }, () => ({
            filter: g.str(1, 20),
            qos: g.qos(),
            noLocal: v5 && g.bool(),
            retainAsPublished: v5 && g.bool(),
            retainHandling: v5 ? g.pick([0, 1, 2] as const) : 0,
          })),
        },
        props(8),
      );
    case 9:
      return withProps(
        { type: 9, packetId: g.packetId(), reasonCodes: Array.from({ length: g.int(1, 4) }, () => g.pick(v5 ? [0, 1, 2, 0x80, 0x87, 0x8f] : [0, 1, 2, 0x80])) },
        props(9),
      );
    case 10:
      return withProps({ type: 10, packetId: g.packetId(), filters: Array.from({ length: g.int(1, 4) }, () => g.str(1, 20)) }, props(10));
    case 11:
      return withProps({ type: 11, packetId: g.packetId(), reasonCodes: v5 ? Array.from({ length: g.int(1, 4) }, () => g.pick([0, 0x11, 0x80])) : [] }, props(11));
    case 12:
    case 13:
      return { type };
    case 14:
      return withProps({ type: 14, reasonCode: v5 ? g.pick([0, 0x04, 0x8e, 0x9c]) : 0 }, props(14));
    default:
      // mqtt-packet cannot parse the empty AUTH body (Success, no properties), so always a reason.
      return withProps({ type: 15, reasonCode: g.pick([0x18, 0x19]) }, props(15));
  }
}

// ---- conversion to and from mqtt-packet's shapes

const BOOLEAN_IN_MQTT_PACKET = new Set<string>(
  PROPERTY_TABLE.filter((d) => d.type === 'byte' && d.name !== 'maximumQoS').map((d) => d.name),
);
const CMDS = ['', 'connect', 'connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'suback', 'unsubscribe', 'unsuback', 'pingreq', 'pingresp', 'disconnect', 'auth'] as const;

type Loose = Record<string, unknown>;

function propsToTheirs(props: Properties | undefined, context: number): Loose | undefined {
  if (props === undefined) return undefined;
  const out: Loose = {};
  for (const [name, value] of Object.entries(props)) {
    if (name === 'subscriptionIdentifiers') {
      const ids = value as number[];
      out.subscriptionIdentifier = context === 3 && ids.length > 1 ? ids : ids[0];
    } else if (name === 'userProperties') {
      out.userProperties = Object.fromEntries(value as UserProperties);
    } else if (BOOLEAN_IN_MQTT_PACKET.has(name)) {
      out[name] = value === 1;
    } else {
      out[name] = value;
    }
  }
  return out;
}

function propsFromTheirs(props: unknown): Properties | undefined {
  if (props === undefined) return undefined;
  const out: Loose = {};
  for (const [name, value] of Object.entries(props as Loose)) {
    if (name === 'subscriptionIdentifier') {
      out.subscriptionIdentifiers = Array.isArray(value) ? value : [value];
    } else if (name === 'userProperties') {
      out.userProperties = Object.entries(value as Record<string, string | string[]>).flatMap(([k, v]) =>
        (Array.isArray(v) ? v : [v]).map((x): [string, string] => [k, x]),
      );
    } else if (typeof value === 'boolean') {
      out[name] = value ? 1 : 0;
    } else {
      out[name] = value;
    }
  }
  return out as Properties;
}

function toTheirs(p: Packet, version: ProtocolVersion): Loose {
  const cmd = CMDS[p.type];
  switch (p.type) {
    case 1:
      return {
        cmd,
        protocolId: p.protocolName,
        protocolVersion: version,
        clean: p.cleanStart,
        keepalive: p.keepalive,
        clientId: p.clientId,
        properties: propsToTheirs(p.properties, 1),
        will: p.will && { ...p.will, properties: propsToTheirs(p.will.properties, WILL_PROPERTIES) },
        username: p.username,
        password: p.password,
      };
    case 2:
      return { cmd, sessionPresent: p.sessionPresent, [version === 5 ? 'reasonCode' : 'returnCode']: p.reasonCode, properties: propsToTheirs(p.properties, 2) };
    case 3:
      return { cmd, topic: p.topic, payload: p.payload, qos: p.qos, dup: p.dup, retain: p.retain, messageId: p.qos > 0 ? p.packetId : undefined, properties: propsToTheirs(p.properties, 3) };
    case 4:
    case 5:
    case 6:
    case 7:
      return { cmd, messageId: p.packetId, reasonCode: p.reasonCode, properties: propsToTheirs(p.properties, p.type) };
    case 8:
      return {
        cmd,
        messageId: p.packetId,
        subscriptions: p.subscriptions.map((s) => ({ topic: s.filter, qos: s.qos, nl: s.noLocal, rap: s.retainAsPublished, rh: s.retainHandling })),
        properties: propsToTheirs(p.properties, 8),
      };
    case 9:
      return { cmd, messageId: p.packetId, granted: p.reasonCodes, properties: propsToTheirs(p.properties, 9) };
    case 10:
      return { cmd, messageId: p.packetId, unsubscriptions: p.filters, properties: propsToTheirs(p.properties, 10) };
    case 11:
      return { cmd, messageId: p.packetId, granted: p.reasonCodes, properties: propsToTheirs(p.properties, 11) };
    case 12:
    case 13:
      return { cmd };
    case 14:
    case 15:
      return { cmd, reasonCode: p.reasonCode, properties: propsToTheirs(p.properties, p.type) };
  }
}

function fromTheirs(o: Loose, version: ProtocolVersion): Packet {
  const type = CMDS.indexOf(o.cmd as (typeof CMDS)[number]);
  const properties = propsFromTheirs(o.properties);
  const messageId = o.messageId as number;
  switch (type) {
    case 1: {
      const will = o.will as Loose | undefined;
      const packet: Packet = withProps(
        {
          type: 1,
          protocolName: o.protocolId as string,
          protocolVersion: o.protocolVersion as ProtocolVersion,
          cleanStart: o.clean as boolean,
          keepalive: o.keepalive as number,
          clientId: o.clientId as string,
        },
        properties,
      );
      if (will) {
        packet.will = withProps(
          { topic: will.topic as string, payload: will.payload as Buffer, qos: will.qos as QoS, retain: will.retain as boolean },
          propsFromTheirs(will.properties),
        );
      }
      if (o.username !== undefined) packet.username = o.username as string;
      if (o.password !== undefined) packet.password = o.password as Buffer;
      return packet;
    }
    case 2:
      return withProps({ type: 2, sessionPresent: o.sessionPresent as boolean, reasonCode: (version === 5 ? o.reasonCode : o.returnCode) as number }, properties);
    case 3:
      return { type: 3, dup: o.dup as boolean, qos: o.qos as QoS, retain: o.retain as boolean, topic: o.topic as string, packetId: (o.messageId as number | undefined) ?? 0, properties, payload: o.payload as Buffer };
    case 4:
    case 5:
    case 6:
    case 7:
      return withProps({ type, packetId: messageId, reasonCode: (o.reasonCode as number | undefined) ?? 0 }, properties);
    case 8:
      return withProps(
        {
          type: 8,
          packetId: messageId,
          subscriptions: (o.subscriptions as Loose[]).map((s) => ({
            filter: s.topic as string,
            qos: s.qos as QoS,
            noLocal: (s.nl as boolean | undefined) ?? false,
            retainAsPublished: (s.rap as boolean | undefined) ?? false,
            retainHandling: (s.rh as 0 | 1 | 2 | undefined) ?? 0,
          })),
        },
        properties,
      );
    case 9:
      return withProps({ type: 9, packetId: messageId, reasonCodes: o.granted as number[] }, properties);
    case 10:
      return withProps({ type: 10, packetId: messageId, filters: o.unsubscriptions as string[] }, properties);
    case 11:
      return withProps({ type: 11, packetId: messageId, reasonCodes: (o.granted as number[] | undefined) ?? [] }, properties);
    case 12:
    case 13:
      return { type };
    case 14:
    case 15:
      return withProps({ type, reasonCode: (o.reasonCode as number | undefined) ?? 0 }, properties);
  }
  throw new Error(`unknown cmd ${String(o.cmd)}`);
}

// ---- the round trips

function ourDecode(bytes: Buffer, version: ProtocolVersion): Packet {
  const length = parseVarint(bytes, 1, bytes.length);
  const body = bytes.subarray(1 + varintSize(length));
  if (body.length !== length) throw new Error(`remaining length ${length}, body ${body.length}`);
  return bytes[0]! >> 4 === 1 ? decodeConnect(body) : decodePacket(bytes[0]!, body, version);
}

function theirParse(bytes: Buffer, version: ProtocolVersion): Loose {
  const parser = mqttPacket.parser({ protocolVersion: version });
  const packets: Loose[] = [];
  const errors: Error[] = [];
  parser.on('packet', (p) => packets.push(p as unknown as Loose));
  parser.on('error', (e) => errors.push(e));
  parser.parse(bytes);
  if (errors.length > 0) throw errors[0]!;
  if (packets.length !== 1) throw new Error(`mqtt-packet parsed ${packets.length} packets`);
  return packets[0]!;
}

const SEED = 0x7e57;
const PER_VERSION = 250;

for (const version of [3, 4, 5] as const) {
  t.test(`MQTT level ${version}: ${PER_VERSION} random packets both ways (seed ${SEED})`, async (t) => {
    const g = new Gen(prng(SEED + version));
    const types = new Set<number>();
    let failures = 0;
    for (let i = 0; i < PER_VERSION && failures < 5; i++) {
      const packet = generate(g, version);
      types.add(packet.type);
      const theirBytes = mqttPacket.generate(toTheirs(packet, version) as unknown as mqttPacket.Packet, { protocolVersion: version });
      const ours = ourDecode(theirBytes, version);
      const ourBytes = encodePacket(packet, version);
      const back = fromTheirs(theirParse(ourBytes, version), version);
      const ok1 = t.strictSame(ours, packet, `#${i} type ${packet.type}: their bytes decode with ours`);
      const ok2 = t.strictSame(back, packet, `#${i} type ${packet.type}: our bytes parse with theirs`);
      if (!ok1 || !ok2) failures++;
    }
    t.equal(types.size, version === 5 ? 15 : 14, 'every packet type was generated');
  });
}
