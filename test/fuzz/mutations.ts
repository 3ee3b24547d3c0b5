// Seeded inputs for the fuzz tests: valid MQTT 3.1/3.1.1/5.0 packets (encoded by mqtt-packet, an
// encoder independent of ours) and cluster handshake frames, then mutated: bit flips, rewritten
// length fields, truncation, splices of valid packets, and cuts into split writes.

import mqttPacket, { type Packet } from 'mqtt-packet';
import { encodeFrame, type LinkMessage } from '../../src/cluster/link.js';
import { pick, randomFilter, randomTopic } from '../helpers/random.js';

export type Rnd = () => number;
type Version = 3 | 4 | 5;

/** One case: the byte chunks to write, in order, each as its own write. */
export interface FuzzCase {
  readonly chunks: Buffer[];
  /** ms to wait between chunks (0: back to back). */
  readonly gapMs: number;
}

const int = (rnd: Rnd, n: number): number => Math.floor(rnd() * n);

function bytesOf(rnd: Rnd, max: number): Buffer {
  const b = Buffer.alloc(int(rnd, max + 1));
  for (let i = 0; i < b.length; i++) b[i] = int(rnd, 256);
  return b;
}

/** `n` seeded random bytes (a case must replay from its seed). */
function fixed(rnd: Rnd, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = int(rnd, 256);
  return b;
}

function props5(rnd: Rnd): Record<string, unknown> | undefined {
  if (rnd() < 0.5) return undefined;
  const p: Record<string, unknown> = {};
  if (rnd() < 0.3) p.userProperties = { k: 'v', [pick(rnd, ['a', 'b', ''])]: pick(rnd, ['x', '']) };
  if (rnd() < 0.3) p.topicAlias = int(rnd, 70);
  if (rnd() < 0.3) p.messageExpiryInterval = int(rnd, 100);
  if (rnd() < 0.2) p.contentType = 'text/plain';
  if (rnd() < 0.2) p.responseTopic = randomTopic(rnd);
  if (rnd() < 0.2) p.correlationData = bytesOf(rnd, 8);
  if (rnd() < 0.2) p.payloadFormatIndicator = rnd() < 0.5;
  return p;
}

function connectPacket(rnd: Rnd, version: Version, clientId: string): Packet {
  const will =
    rnd() < 0.3
      ? { topic: randomTopic(rnd), payload: bytesOf(rnd, 16), qos: int(rnd, 3) as 0 | 1 | 2, retain: rnd() < 0.3, ...(version === 5 ? { properties: { willDelayInterval: int(rnd, 3) } } : {}) }
      : undefined;
  const packet: mqttPacket.IConnectPacket = {
    cmd: 'connect',
    protocolId: version === 3 ? 'MQIsdp' : 'MQTT',
    protocolVersion: version,
    clean: rnd() < 0.7,
    clientId,
    keepalive: int(rnd, 120),
    ...(will === undefined ? {} : { will }),
    ...(rnd() < 0.2 ? { username: 'u', password: Buffer.from('p') } : {}),
  };
  if (version === 5) {
    const properties: mqttPacket.IConnectPacket['properties'] = {};
    if (rnd() < 0.3) properties.sessionExpiryInterval = int(rnd, 10);
    if (rnd() < 0.3) properties.receiveMaximum = 1 + int(rnd, 100);
    if (rnd() < 0.3) properties.topicAliasMaximum = int(rnd, 10);
    if (rnd() < 0.2) properties.maximumPacketSize = 16 + int(rnd, 4096);
    if (rnd() < 0.1) properties.authenticationMethod = 'none';
    packet.properties = properties;
  }
  return packet;
}

function otherPacket(rnd: Rnd, version: Version): Packet {
  const messageId = 1 + int(rnd, 65535);
  const properties = version === 5 ? props5(rnd) : undefined;
  const withProps = <T extends object>(p: T): T => (properties === undefined ? p : { ...p, properties });
  switch (int(rnd, 10)) {
    case 0:
    case 1:
    case 2: {
      const qos = int(rnd, 3) as 0 | 1 | 2;
      return withProps({ cmd: 'publish', topic: randomTopic(rnd), payload: bytesOf(rnd, 64), qos, retain: rnd() < 0.2, dup: rnd() < 0.1, ...(qos > 0 ? { messageId } : {}) }) as Packet;
    }
    case 3: {
      const subscriptions = Array.from({ length: 1 + int(rnd, 3) }, () => ({
        topic: rnd() < 0.2 ? `$share/g/${randomFilter(rnd)}` : randomFilter(rnd),
        qos: int(rnd, 3) as 0 | 1 | 2,
        ...(version === 5 ? { nl: rnd() < 0.3, rap: rnd() < 0.3, rh: int(rnd, 3) } : {}),
      }));
      return withProps({ cmd: 'subscribe', messageId, subscriptions }) as Packet;
    }
    case 4:
      return withProps({ cmd: 'unsubscribe', messageId, unsubscriptions: [randomFilter(rnd)] }) as Packet;
    case 5:
      return { cmd: pick(rnd, ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const), messageId } as Packet;
    case 6:
      return { cmd: 'pingreq' };
    case 7:
      return version === 5 ? ({ cmd: 'auth', reasonCode: pick(rnd, [0, 0x18, 0x19]), properties: { authenticationMethod: 'none' } } as Packet) : { cmd: 'pingreq' };
    case 8:
      return { cmd: 'disconnect', ...(version === 5 ? { reasonCode: pick(rnd, [0, 4, 0x80]) } : {}) } as Packet;
    default:
      // A second CONNECT on the same connection is itself a protocol error [MQTT-3.1.0-2].
      return connectPacket(rnd, version, 'again');
  }
}

/** Flips 1-8 random bits. */
function flipBits(rnd: Rnd, b: Buffer): Buffer {
  const out = Buffer.from(b);
  for (let n = 1 + int(rnd, 8); n > 0 && out.length > 0; n--) {
    const i = int(rnd, out.length);
    out[i] = (out[i] as number) ^ (1 << int(rnd, 8));
  }
  return out;
}

/** Rewrites the remaining-length field of an MQTT packet: bigger, smaller, overlong or unterminated. */
function rewriteLength(rnd: Rnd, b: Buffer): Buffer {
  let end = 1;
  while (end < b.length && end < 5 && ((b[end] as number) & 0x80) !== 0) end++;
  const body = b.subarray(end + 1);
  const choice = int(rnd, 5);
  let length: Buffer;
  if (choice === 0) length = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]); // five bytes: malformed
  else if (choice === 1) length = Buffer.from([0xff, 0xff, 0xff, 0x7f]); // 256 MB announced
  else if (choice === 2) length = Buffer.from([0x80, 0x80, 0x80, 0x80]); // never terminated
  else if (choice === 3) length = Buffer.from([0x80, 0x00]); // overlong zero
  else length = Buffer.from([int(rnd, 128)]);
  return Buffer.concat([b.subarray(0, 1), length, body]);
}

function truncate(rnd: Rnd, b: Buffer): Buffer {
  return b.subarray(0, int(rnd, b.length));
}

/** Part of one packet followed by part of another. */
function splice(rnd: Rnd, a: Buffer, b: Buffer): Buffer {
  return Buffer.concat([a.subarray(0, int(rnd, a.length + 1)), b.subarray(int(rnd, b.length + 1))]);
}

function mutate(rnd: Rnd, b: Buffer, other: Buffer, lengthField: boolean): Buffer {
  switch (int(rnd, lengthField ? 5 : 4)) {
    case 0:
      return flipBits(rnd, b);
    case 1:
      return truncate(rnd, b);
    case 2:
      return splice(rnd, b, other);
    case 3:
      return Buffer.concat([b, bytesOf(rnd, 32)]);
    default:
      return rewriteLength(rnd, b);
  }
}

/** Cuts the bytes into 1-6 writes at random places. */
function cut(rnd: Rnd, bytes: Buffer): Buffer[] {
  const n = 1 + int(rnd, 6);
  const points = Array.from({ length: n - 1 }, () => int(rnd, bytes.length + 1)).sort((x, y) => x - y);
  const chunks: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    if (p > at) chunks.push(bytes.subarray(at, p));
    at = Math.max(at, p);
  }
  chunks.push(bytes.subarray(at));
  return chunks.filter((c) => c.length > 0);
}

function asCase(rnd: Rnd, bytes: Buffer): FuzzCase {
  return { chunks: cut(rnd, bytes), gapMs: rnd() < 0.2 ? 1 + int(rnd, 5) : 0 };
}

/**
 * An MQTT case: a CONNECT (valid or mutated) and up to four more packets, one or more of them
 * mutated; `index` makes the client id unique.
 */
export function mqttCase(rnd: Rnd, index: number): FuzzCase {
  const version = pick(rnd, [3, 4, 5] as const);
  const gen = (p: Packet): Buffer => {
    try {
      return mqttPacket.generate(p, { protocolVersion: version });
    } catch {
      // mqtt-packet refuses some random values (an empty will topic): such a packet is a PINGREQ.
      return mqttPacket.generate({ cmd: 'pingreq' }, { protocolVersion: version });
    }
  };
  const packets = [gen(connectPacket(rnd, version, `fuzz-${index}`))];
  for (let n = int(rnd, 5); n > 0; n--) packets.push(gen(otherPacket(rnd, version)));
  // Mostly after a valid CONNECT, so that the packets behind it reach the session's code.
  const first = rnd() < 0.25 ? 0 : Math.min(packets.length - 1, 1 + int(rnd, packets.length));
  for (let i = first; i < packets.length; i++) {
    if (i === first || rnd() < 0.3) packets[i] = mutate(rnd, packets[i] as Buffer, pick(rnd, packets), true);
  }
  return asCase(rnd, Buffer.concat(packets));
}

/**
 * A case for a cluster port, from a stranger who does not know the cookie: handshake messages
 * (hellos claiming a member's name, proofs, welcomes, rejects, messages of an established link)
 * in frames, mutated or not.
 */
export function clusterCase(rnd: Rnd, members: readonly string[]): FuzzCase {
  const name = rnd() < 0.7 ? pick(rnd, members) : `stranger-${int(rnd, 100)}@127.0.0.1`;
  const nonce = (): Buffer => (rnd() < 0.9 ? fixed(rnd, 16) : bytesOf(rnd, 40));
  const messages: LinkMessage[] = [
    ['hello', name, nonce(), 'incarnation', pick(rnd, ['member', 'join', 'seed:x']), pick(rnd, [2, 2, 2, 1, undefined])],
    ['challenge', name, nonce(), 'incarnation', 2],
    ['proof', fixed(rnd, 32)],
    ['welcome', fixed(rnd, 32)],
    ['reject', pick(rnd, ['removed_from_cluster', 'name_in_use', 'bad_cookie', 'duplicate_link']), fixed(rnd, 32)],
    ['reject', 'removed_from_cluster'],
    [10, [[name, '127.0.0.1', 1, Date.now()]], [[pick(rnd, members), Date.now()]]],
    [14, pick(rnd, members), Date.now()],
    [13],
    [4, 't', Buffer.from('x'), 1, false, null, 0, 'c', 1, []],
    [int(rnd, 300), bytesOf(rnd, 8)],
  ];
  const frames: Buffer[] = [];
  // Mostly a hello first, then whatever: that is where the handshake's states are.
  if (rnd() < 0.7) frames.push(encodeFrame([messages[0] as LinkMessage]));
  for (let n = 1 + int(rnd, 3); n > 0; n--) {
    const batch = Array.from({ length: 1 + int(rnd, 3) }, () => pick(rnd, messages));
    frames.push(encodeFrame(batch));
  }
  const last = frames.length - 1;
  if (rnd() < 0.6) frames[last] = mutate(rnd, frames[last] as Buffer, pick(rnd, frames), false);
  // The 4-byte length prefix rewritten: anything up to 4 GiB announced.
  const tail = frames[last] as Buffer;
  if (rnd() < 0.15 && tail.length >= 4) {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(int(rnd, 2 ** 32), 0);
    frames[last] = Buffer.concat([head, tail.subarray(4)]);
  }
  if (rnd() < 0.1) frames.push(bytesOf(rnd, 64)); // raw garbage
  return asCase(rnd, Buffer.concat(frames));
}
