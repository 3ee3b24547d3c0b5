// FrameReader: fixed-header checks before buffering, size limits, halting, chunk-split fuzzing.
import t from 'tap';
import { ProtocolError } from '../../src/mqtt/errors.js';
import { FrameReader } from '../../src/mqtt/frame-reader.js';
import { encodePacket } from '../../src/mqtt/encode.js';
import type { Packet } from '../../src/mqtt/packets.js';
import { ReasonCode } from '../../src/mqtt/reason-codes.js';
import { reasonOf } from './support.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const CONNECT = hex('10 0e 0004 4d515454 04 02 003c 0002 6331');

interface Frame {
  header: number;
  /** Kept as given: chunks are never reused, so a view stays valid. */
  body: Buffer;
  /** The body was a view of the chunk being pushed. */
  view: boolean;
}

/** A reader that records frames; `chunk` is the chunk being pushed, for zero-copy checks. */
function recorder(maxConnect = 1024, maxPacket = 1 << 20) {
  const frames: Frame[] = [];
  let chunk: Buffer = Buffer.alloc(0);
  const reader = new FrameReader(
    {
      onFrame(header, body) {
        frames.push({ header, body, view: body.buffer === chunk.buffer && body.length > 0 });
      },
    },
    maxConnect,
    maxPacket,
  );
  return {
    frames,
    reader,
    push(c: Buffer) {
      chunk = c;
      reader.push(c);
    },
  };
}

t.test('the first packet must be CONNECT [MQTT-3.1.0-1]', async (t) => {
  const r = recorder();
  t.equal(reasonOf(() => r.push(hex('30 03 0001 74'))), ReasonCode.ProtocolError);
  t.equal(r.reader.buffered, 0);
  t.strictSame(r.frames, []);
});

t.test('a CONNECT with reserved flags is malformed', async (t) => {
  const r = recorder();
  t.equal(reasonOf(() => r.push(hex('11 00'))), ReasonCode.MalformedPacket);
});

t.test('fixed header flags after CONNECT [MQTT-2.1.3-1]', async (t) => {
  const bad: Array<[string, string]> = [
    ['type 0', '00 00'],
    ['PUBLISH QoS 3', '36 03 0001 74'],
    ['PUBACK flags', '41 02 0001'],
    ['PUBREL without 0b0010', '60 02 0001'],
    ['SUBSCRIBE without 0b0010', '80 06 0001 0001 61 00'],
    ['UNSUBSCRIBE without 0b0010', 'a0 05 0001 0001 61'],
    ['PINGREQ flags', 'c8 00'],
    ['DISCONNECT flags', 'e2 00'],
    ['AUTH flags', 'f1 00'],
  ];
  for (const [name, bytes] of bad) {
    const r = recorder();
    r.push(CONNECT);
    t.equal(reasonOf(() => r.push(hex(bytes))), ReasonCode.MalformedPacket, name);
    t.equal(r.reader.buffered, 0, `${name}: nothing buffered`);
  }
  const good = ['62 02 0001', '82 06 0001 0001 61 00', 'a2 05 0001 0001 61', '3d 05 0001 74 0001', 'c0 00', 'f0 00'];
  const r = recorder();
  r.push(CONNECT);
  r.push(hex(good.join('')));
  t.equal(r.frames.length, 1 + good.length, 'valid flags pass');
});

t.test('remaining length: more than 4 bytes or not minimal [MQTT-1.5.5-1]', async (t) => {
  for (const [name, bytes] of [
    ['5 bytes', '30 ff ff ff ff 7f'],
    ['non-minimal 0 (80 00)', '30 80 00'],
    ['non-minimal 2-byte (ff 80 00)', '30 ff 80 00'],
  ] as const) {
    const r = recorder();
    r.push(CONNECT);
    t.equal(reasonOf(() => r.push(hex(bytes))), ReasonCode.MalformedPacket, name);
  }
  const r = recorder(1024, 1 << 29);
  r.push(CONNECT);
  t.equal(reasonOf(() => r.push(hex('30 ff ff ff 7f'))), 'no error', '4-byte maximum accepted (and buffered)');
});

t.test('size limits: maxConnectSize for CONNECT, maxPacketSize after; the limit counts the header', async (t) => {
  const exact = recorder(CONNECT.length, 5);
  exact.push(CONNECT);
  exact.push(hex('30 03 0001 74'));
  t.equal(exact.frames.length, 2, 'packets of exactly the limits pass');

  const connect = recorder(CONNECT.length - 1, 1 << 20);
  t.equal(reasonOf(() => connect.push(CONNECT)), ReasonCode.PacketTooLarge, 'CONNECT one byte over');

  const after = recorder(1024, 4);
  after.push(CONNECT);
  t.equal(reasonOf(() => after.push(hex('30 03 0001 74'))), ReasonCode.PacketTooLarge, 'PUBLISH one byte over');
});

t.test('maxPacketSize can be lowered, even from onFrame for the rest of the same chunk', async (t) => {
  const frames: number[] = [];
  const reader: FrameReader = new FrameReader(
    {
      onFrame(header) {
        frames.push(header);
        if (header === 0x10) reader.maxPacketSize = 4;
      },
    },
    1024,
    1 << 20,
  );
  const stream = Buffer.concat([CONNECT, hex('c0 00'), hex('30 03 0001 74')]);
  t.equal(reasonOf(() => reader.push(stream)), ReasonCode.PacketTooLarge);
  t.strictSame(frames, [0x10, 0xc0]);
});

t.test('a 100 MB length prefix fails at once without allocating', async (t) => {
  // 104857600 = 0x6400000 -> varint 80 80 80 32
  const huge = hex('80 80 80 32');
  for (const [name, prefix, before] of [
    ['as CONNECT', '10', Buffer.alloc(0)],
    ['after CONNECT', '30', CONNECT],
  ] as const) {
    const r = recorder(1024, 1 << 20);
    r.push(before);
    const external = process.memoryUsage().arrayBuffers;
    const start = process.hrtime.bigint();
    t.equal(reasonOf(() => r.push(Buffer.concat([hex(prefix), huge, Buffer.alloc(64)]))), ReasonCode.PacketTooLarge, name);
    t.ok(process.hrtime.bigint() - start < 50_000_000n, `${name}: at once`);
    t.ok(process.memoryUsage().arrayBuffers - external < 10_000_000, `${name}: no large allocation`);
    t.equal(r.reader.buffered, 0, `${name}: nothing buffered`);
  }
  // Byte by byte, it still fails as soon as the length is complete, holding only header bytes.
  const r = recorder(1024, 1 << 20);
  r.push(CONNECT);
  const bytes = Buffer.concat([hex('30'), huge]);
  for (let i = 0; i < bytes.length - 1; i++) r.push(bytes.subarray(i, i + 1));
  t.ok(r.reader.buffered <= 4, 'only the partial fixed header is held');
  t.equal(reasonOf(() => r.push(bytes.subarray(bytes.length - 1))), ReasonCode.PacketTooLarge, 'split prefix');
});

t.test('onFrame returning false halts this and later pushes', async (t) => {
  const seen: number[] = [];
  const reader = new FrameReader(
    {
      onFrame(header) {
        seen.push(header);
        return header !== 0xc0;
      },
    },
    1024,
    1024,
  );
  reader.push(Buffer.concat([CONNECT, hex('c0 00 d0 00')]));
  reader.push(hex('d0 00'));
  t.strictSame(seen, [0x10, 0xc0]);

  // Halting from a frame that completes a split body also stops the rest of that chunk.
  const seen2: number[] = [];
  const reader2 = new FrameReader({ onFrame: (h) => (seen2.push(h), false) }, 1024, 1024);
  reader2.push(CONNECT.subarray(0, 5));
  reader2.push(Buffer.concat([CONNECT.subarray(5), hex('c0 00')]));
  t.strictSame(seen2, [0x10]);
});

t.test('after a ProtocolError the reader delivers nothing more', async (t) => {
  const r = recorder();
  t.throws(() => r.push(hex('c0 00')));
  r.push(CONNECT);
  t.strictSame(r.frames, []);
});

t.test('an error thrown by onFrame propagates from push and halts the reader', async (t) => {
  const seen: number[] = [];
  const reader = new FrameReader(
    {
      onFrame(header) {
        seen.push(header);
        if (header === 0xc0) throw new ProtocolError(ReasonCode.ProtocolError, 'from the handler');
      },
    },
    1024,
    1024,
  );
  t.equal(reasonOf(() => reader.push(Buffer.concat([CONNECT, hex('c0 00 d0 00')]))), ReasonCode.ProtocolError);
  reader.push(hex('d0 00'));
  t.strictSame(seen, [0x10, 0xc0]);
});

t.test('buffered counts held bytes of an incomplete packet', async (t) => {
  const r = recorder();
  r.push(CONNECT.subarray(0, 1));
  t.equal(r.reader.buffered, 1, 'header byte');
  r.push(CONNECT.subarray(1, 6));
  t.equal(r.reader.buffered, 4, 'the 4 body bytes received (the header is parsed)');
  r.push(CONNECT.subarray(6));
  t.equal(r.reader.buffered, 0, 'delivered');
  t.equal(r.frames.length, 1);
});

// ---- chunk-split fuzzing

/** xorshift32: a seeded PRNG so failures reproduce. */
function prng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

const packets: Packet[] = [
  { type: 1, protocolName: 'MQTT', protocolVersion: 5, cleanStart: true, keepalive: 30, clientId: 'fuzz', properties: { receiveMaximum: 5 } },
  { type: 3, dup: false, qos: 0, retain: false, topic: 'a/b', packetId: 0, payload: Buffer.from('hello') },
  { type: 12 },
  { type: 3, dup: false, qos: 1, retain: true, topic: 't', packetId: 7, payload: Buffer.alloc(200, 0xab) },
  { type: 8, packetId: 9, subscriptions: [{ filter: '#', qos: 2, noLocal: false, retainAsPublished: false, retainHandling: 0 }] },
  { type: 3, dup: false, qos: 2, retain: false, topic: 'big', packetId: 8, payload: Buffer.alloc(20_000, 0xcd) },
  { type: 15, reasonCode: 0 },
  { type: 6, packetId: 8, reasonCode: 0 },
  { type: 14, reasonCode: 0 },
];
const encoded = packets.map((p) => encodePacket(p, 5));
const stream = Buffer.concat(encoded);
const expected = encoded.map((b) => {
  const headerLength = b.length - frameBodyLength(b);
  return { header: b[0]!, body: b.subarray(headerLength) };
});

function frameBodyLength(packet: Buffer): number {
  let i = 1;
  while (packet[i]! & 0x80) i++;
  return packet.length - (i + 1);
}

function run(cuts: number[]): Frame[] {
  const r = recorder(1024, 1 << 20);
  let last = 0;
  for (const cut of [...cuts, stream.length]) {
    // A fresh unpooled copy per chunk (Buffer.alloc never uses the shared pool), so a body
    // sharing its ArrayBuffer can only be a view of this chunk.
    const chunk = Buffer.alloc(cut - last);
    stream.copy(chunk, 0, last, cut);
    r.push(chunk);
    last = cut;
  }
  if (r.reader.buffered !== 0) throw new Error(`${r.reader.buffered} bytes left buffered after cuts ${cuts.join(',')}`);
  return r.frames;
}

const strip = (frames: Frame[]) => frames.map(({ header, body }) => ({ header, body }));

/** Cheap equality for the fuzz loops; t.strictSame reports the difference when it fails. */
const sameFrames = (frames: Frame[]): boolean =>
  frames.length === expected.length && frames.every((f, i) => f.header === expected[i]!.header && f.body.equals(expected[i]!.body));

t.test('one chunk: every frame, each a view of the chunk', async (t) => {
  const frames = run([]);
  t.strictSame(strip(frames), expected);
  t.ok(frames.filter((f) => f.body.length > 0).every((f) => f.view), 'zero copy');
});

t.test('cut at every byte boundary: same frames; frames inside one chunk are views', async (t) => {
  let starts = 0;
  for (let cut = 1; cut < stream.length; cut++) {
    const frames = run([cut]);
    if (!sameFrames(frames)) {
      t.strictSame(strip(frames), expected, `cut at ${cut}`);
      return;
    }
    // Packets wholly before or after the cut must not have been copied.
    let offset = 0;
    for (let i = 0; i < encoded.length; i++) {
      const end = offset + encoded[i]!.length;
      const whole = end <= cut || offset >= cut;
      if (whole && frames[i]!.body.length > 0 && !frames[i]!.view) {
        t.fail(`packet ${i} lies in one chunk (cut ${cut}) but was copied`);
        return;
      }
      if (!whole && frames[i]!.view) t.fail(`packet ${i} spans the cut but is a view`);
      offset = end;
    }
    starts++;
  }
  t.equal(starts, stream.length - 1, 'all cuts agree');
});

t.test('random multi-cuts and single-byte chunks: same frames', async (t) => {
  const rand = prng(0x5eed);
  for (let round = 0; round < 300; round++) {
    const n = 1 + Math.floor(rand() * 20);
    const cuts = [...new Set(Array.from({ length: n }, () => 1 + Math.floor(rand() * (stream.length - 1))))].sort((a, b) => a - b);
    const frames = run(cuts);
    if (!sameFrames(frames)) {
      t.strictSame(strip(frames), expected, `cuts ${cuts.join(',')}`);
      return;
    }
  }
  t.pass('300 random cut sets agree');
  const everyByte = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
  t.strictSame(strip(run(everyByte)), expected, 'one byte per chunk');
});
