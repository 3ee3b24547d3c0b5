// Memory floods, shared by the benchmark's memory section and the memory-bound tests: a raw MQTT
// 3.1.1 publisher that pipelines numbered QoS 0/1 PUBLISHes as fast as the broker acknowledges
// them (a window of unacknowledged ones), a subscriber that records what it receives, and an RSS
// sampler for the broker process. Any MQTT 3.1.1 broker: they run against Mosquitto too.

import { connect, type Socket } from 'node:net';
import { rssBytes } from './proc.js';

/** Every socket a flood opens is handed to `track` (the caller destroys them when done). */
export type Track = (socket: Socket) => void;

/** A 3.1.1 CONNECT for `clientId`, keepalive 0. */
export function connectPacket(clientId: string, clean: boolean): Buffer {
  const id = Buffer.from(clientId);
  const body = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, clean ? 0x02 : 0x00, 0, 0, id.length >> 8, id.length & 0xff]), id]);
  return Buffer.concat([Buffer.from([0x10, ...varint(body.length)]), body]);
}

/** The start of a CONNECT declaring `declared` bytes, with all but the last 1000 of them. */
export function partialConnect(declared: number): Buffer {
  return Buffer.concat([Buffer.from([0x10, ...varint(declared)]), Buffer.alloc(declared - 1000, 0x61)]);
}

export interface FloodResult {
  /** Messages sent, and acknowledged (QoS 1: PUBACKs, in order, so seqs 0..acked-1). */
  sent: number;
  acked: number;
}

export interface FloodOptions {
  port: number;
  clientId: string;
  topic: string;
  /** Payload bytes; the first 4 carry the message's sequence number. */
  size: number;
  qos: 0 | 1;
  durationMs: number;
  /** QoS 1 PUBLISHes in flight (default 256). */
  window?: number;
}

function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** A PUBLISH of `topic` whose payload starts with `seq` (3.1.1, packet id `id` for QoS 1). */
function publishBytes(topic: Buffer, seq: number, size: number, qos: 0 | 1, id: number): Buffer {
  const idBytes = qos === 1 ? 2 : 0;
  const remaining = 2 + topic.length + idBytes + size;
  const head = Buffer.from([0x30 | (qos << 1), ...varint(remaining), topic.length >> 8, topic.length & 0xff]);
  const buf = Buffer.alloc(head.length + topic.length + idBytes + size);
  head.copy(buf, 0);
  topic.copy(buf, head.length);
  let pos = head.length + topic.length;
  if (qos === 1) {
    buf.writeUInt16BE(id, pos);
    pos += 2;
  }
  buf.writeUInt32BE(seq, pos);
  return buf;
}

/** The sequence number a flood PUBLISH carries. */
export function seqOf(payload: Buffer): number {
  return payload.readUInt32BE(0);
}

/**
 * Publishes for `durationMs` as fast as the broker takes it (QoS 1: at most `window` unacked;
 * QoS 0: as fast as the socket drains), then waits for the last acks and disconnects.
 */
export async function flood(track: Track, opts: FloodOptions): Promise<FloodResult> {
  const socket: Socket = connect({ host: '127.0.0.1', port: opts.port });
  track(socket);
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.setNoDelay(true);
  socket.write(connectPacket(opts.clientId, true));
  const topic = Buffer.from(opts.topic);
  const window = opts.window ?? 256;
  let sent = 0;
  let acked = 0;
  let connacked = false;
  let rest = Buffer.alloc(0);
  let writable = true;
  let finished: (() => void) | undefined;
  const deadline = Date.now() + opts.durationMs;

  const pump = (): void => {
    if (!connacked) return;
    while (writable && Date.now() < deadline && (opts.qos === 0 || sent - acked < window)) {
      writable = socket.write(publishBytes(topic, sent, opts.size, opts.qos, (sent % 65535) + 1));
      sent++;
      if (opts.qos === 0 && sent % 64 === 0) break; // let timers and reads run
    }
    if (Date.now() >= deadline && (opts.qos === 0 || acked === sent)) finished?.();
    else if (opts.qos === 0 && writable) setImmediate(pump);
  };
  socket.on('drain', () => {
    writable = true;
    pump();
  });
  socket.on('data', (chunk: Buffer) => {
    let buf = rest.length === 0 ? chunk : Buffer.concat([rest, chunk]);
    if (!connacked && buf.length >= 4) {
      connacked = true;
      buf = buf.subarray(4);
    }
    acked += Math.floor(buf.length / 4); // PUBACKs only: 0x40 0x02 id id
    rest = Buffer.from(buf.subarray(buf.length - (buf.length % 4)));
    pump();
  });
  const done = new Promise<void>((resolve) => (finished = resolve));
  const timer = setInterval(pump, 100); // the deadline passes while waiting for a drain or acks
  await Promise.race([done, new Promise((r) => setTimeout(r, opts.durationMs + 15_000))]);
  clearInterval(timer);
  socket.end(Buffer.from([0xe0, 0x00]));
  return { sent, acked };
}

export interface RssSampler {
  /** Bytes at start. */
  readonly baseline: number;
  /** Largest growth over the baseline seen so far, bytes. */
  readonly maxGrowth: number;
  stop(): void;
}

/** Samples the process's VmRSS every 100 ms from now until stop(). */
export function sampleRss(pid: number): RssSampler {
  const baseline = rssBytes(pid);
  let max = baseline;
  let stopped = false;
  const read = (): void => {
    if (!stopped) max = Math.max(max, rssBytes(pid));
  };
  const timer = setInterval(read, 100);
  return {
    baseline,
    get maxGrowth() {
      read();
      return max - baseline;
    },
    stop: () => {
      read();
      stopped = true;
      clearInterval(timer);
    },
  };
}

/** A raw 3.1.1 subscriber that records the sequence numbers it receives and acks QoS 1. */
export interface SeqSubscriber {
  readonly socket: Socket;
  /** Sequence numbers of the PUBLISHes received, in order. */
  readonly seqs: number[];
  readonly isClosed: boolean;
  /** Resolves once `cond` holds (checked on every packet and on close); rejects after timeoutMs. */
  until(cond: () => boolean, what: string, timeoutMs?: number): Promise<void>;
}

/**
 * Connects `clientId` (clean session or not), subscribes `filter` at QoS 1 and resolves after
 * the SUBACK. Every QoS 1 PUBLISH is acknowledged as it is parsed; socket.pause() stops reading.
 */
export async function seqSubscriber(track: Track, port: number, clientId: string, filter: string, clean: boolean): Promise<SeqSubscriber> {
  const socket: Socket = connect({ host: '127.0.0.1', port });
  track(socket);
  socket.on('error', () => {});
  const seqs: number[] = [];
  const types: number[] = [];
  let isClosed = false;
  let rest = Buffer.alloc(0);
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  socket.on('close', () => {
    isClosed = true;
    wake();
  });
  socket.on('data', (chunk: Buffer) => {
    const buf = rest.length === 0 ? chunk : Buffer.concat([rest, chunk]);
    let pos = 0;
    const acks: number[] = [];
    for (;;) {
      if (buf.length - pos < 2) break;
      let length = 0;
      let i = pos + 1;
      let mul = 1;
      for (; i < buf.length; i++, mul *= 128) {
        length += ((buf[i] as number) & 0x7f) * mul;
        if (((buf[i] as number) & 0x80) === 0) break;
      }
      if (i >= buf.length || buf.length - (i + 1) < length) break;
      const header = buf[pos] as number;
      const body = buf.subarray(i + 1, i + 1 + length);
      pos = i + 1 + length;
      types.push(header >> 4);
      if (header >> 4 !== 3) continue;
      const qos = (header >> 1) & 3;
      const topicLength = body.readUInt16BE(0);
      const payloadStart = 2 + topicLength + (qos > 0 ? 2 : 0);
      seqs.push(seqOf(body.subarray(payloadStart)));
      if (qos === 1) acks.push(body.readUInt16BE(2 + topicLength));
    }
    rest = Buffer.from(buf.subarray(pos));
    if (acks.length > 0) socket.write(Buffer.concat(acks.map((id) => Buffer.from([0x40, 0x02, id >> 8, id & 0xff]))));
    wake();
  });
  const until = (cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (!cond()) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${seqs.length} publishes received)`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(connectPacket(clientId, clean));
  const topic = Buffer.from(filter);
  socket.write(Buffer.from([0x82, 2 + 2 + topic.length + 1, 0, 1, topic.length >> 8, topic.length & 0xff, ...topic, 1]));
  await until(() => types.includes(9), 'SUBACK');
  return {
    socket,
    seqs,
    get isClosed() {
      return isClosed;
    },
    until,
  };
}

/** A SUBSCRIBE (3.1.1) of `filters` at QoS 1. */
function subscribePacket(id: number, filters: readonly string[]): Buffer {
  const parts = [Buffer.from([id >> 8, id & 0xff])];
  for (const f of filters) {
    const b = Buffer.from(f);
    parts.push(Buffer.from([b.length >> 8, b.length & 0xff]), b, Buffer.from([1]));
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([0x82, ...varint(body.length)]), body]);
}

/**
 * One client subscribes `total` distinct filters, 100 per SUBSCRIBE, one SUBSCRIBE at a time;
 * returns how many the SUBACKs granted and refused (0x80 / 0x97).
 */
export async function subscribeMany(track: Track, port: number, clientId: string, total: number): Promise<{ granted: number; refused: number }> {
  const socket: Socket = connect({ host: '127.0.0.1', port });
  track(socket);
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let rest = Buffer.alloc(0);
  let granted = 0;
  let refused = 0;
  let acks = 0;
  let wake: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    const buf = rest.length === 0 ? chunk : Buffer.concat([rest, chunk]);
    let pos = 0;
    for (;;) {
      let length = 0;
      let i = pos + 1;
      for (let mul = 1; i < buf.length; i++, mul *= 128) {
        length += ((buf[i] as number) & 0x7f) * mul;
        if (((buf[i] as number) & 0x80) === 0) break;
      }
      if (i >= buf.length || buf.length - (i + 1) < length) break;
      if ((buf[pos] as number) >> 4 === 9) {
        for (const code of buf.subarray(i + 3, i + 1 + length)) {
          if (code < 0x80) granted++;
          else refused++;
        }
        acks++;
      }
      pos = i + 1 + length;
    }
    rest = Buffer.from(buf.subarray(pos));
    wake?.();
  });
  socket.on('close', () => wake?.());
  const next = (want: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no SUBACK ${want} within 10 s`)), 10_000);
      wake = () => {
        if (acks < want && !socket.destroyed) return;
        clearTimeout(timer);
        wake = undefined;
        if (acks < want) reject(new Error('connection closed'));
        else resolve();
      };
      wake();
    });
  socket.write(connectPacket(clientId, true));
  for (let n = 0; n < total; n += 100) {
    const filters = Array.from({ length: Math.min(100, total - n) }, (_, k) => `subs/${n + k}/+/#`);
    socket.write(subscribePacket((n / 100) % 65535 + 1, filters));
    await next(n / 100 + 1);
  }
  return { granted, refused };
}
