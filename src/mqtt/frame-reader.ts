// Cuts a byte stream into MQTT packets (fixed header + body), checking the fixed header before
// any of the body is buffered (spec 2.1).
import { ProtocolError } from './errors.js';
import { PacketType } from './packets.js';
import { ReasonCode } from './reason-codes.js';
import { parseVarint, varintSize, VARINT_INCOMPLETE } from './strings.js';

export interface FrameHandler {
  /** `header` = the first fixed-header byte; `body` = the remaining-length bytes: a subarray of the
   *  socket chunk when the whole packet sits in one chunk (no copy), else one buffer allocated once
   *  at exactly the remaining length. Return false to halt the reader (the connection is closing):
   *  no further frame of this or any later push is delivered. */
  onFrame(header: number, body: Buffer): boolean | void;
}

/**
 * Throws ProtocolError when the first fixed-header byte is invalid for its packet type:
 * type 0, reserved flag bits [MQTT-2.1.3-1], or PUBLISH QoS 3 [MQTT-3.3.1-4].
 */
export function checkFixedHeader(header: number): void {
  const type = header >> 4;
  const flags = header & 0x0f;
  if (type === PacketType.PUBLISH) {
    if ((flags & 0x06) === 0x06) throw new ProtocolError(ReasonCode.MalformedPacket, 'PUBLISH with QoS 3');
    return;
  }
  if (type === 0) throw new ProtocolError(ReasonCode.MalformedPacket, 'reserved packet type 0');
  const expected =
    type === PacketType.PUBREL || type === PacketType.SUBSCRIBE || type === PacketType.UNSUBSCRIBE ? 0x02 : 0;
  if (flags !== expected) {
    throw new ProtocolError(ReasonCode.MalformedPacket, `reserved flags 0x${flags.toString(16)} in packet type ${type}`);
  }
}

/** A packet split across chunks: the start of its fixed header, or its body being filled. Only a
 *  connection in the middle of one holds it (most never do). */
class SplitFrame {
  /** At most 5 bytes: header byte + 4 varint bytes; allocated on the first split header. */
  head: Buffer | undefined = undefined;
  headLen = 0;
  header = 0;
  /** Allocated once at the packet's remaining length. */
  body: Buffer | undefined = undefined;
  filled = 0;
}

const enum Phase {
  /** No packet delivered yet: the next must be CONNECT, within maxConnectSize. */
  First,
  Reading,
  /** A bad packet or the handler stopped it: nothing more is delivered. */
  Halted,
}

export class FrameReader {
  /** Max remaining+header size for packets after the first; a lowered value applies from the next
   *  packet on (the protocol keeps the configured one). */
  maxPacketSize: number;
  private readonly maxConnectSize: number;
  private readonly handler: FrameHandler;
  private phase = Phase.First;
  private split: SplitFrame | null = null;

  constructor(handler: FrameHandler, maxConnectSize: number, maxPacketSize: number) {
    this.handler = handler;
    this.maxConnectSize = maxConnectSize;
    this.maxPacketSize = maxPacketSize;
  }

  /** Bytes held for an incomplete packet (for bounds/metrics): a split fixed header, or the
   *  body received so far (its buffer is allocated once at the full remaining length). */
  get buffered(): number {
    const split = this.split;
    return split === null ? 0 : split.headLen + split.filled;
  }

  /** Bytes allocated for an incomplete packet: a split fixed header, or the whole body buffer
   *  (allocated at its declared length when its first bytes arrive). */
  get reserved(): number {
    const split = this.split;
    return split === null ? 0 : split.headLen + (split.body === undefined ? 0 : split.body.length);
  }

  /** Feeds socket bytes. Throws ProtocolError on a bad fixed header before buffering any body.
   *  An error thrown by onFrame (e.g. from a decoder) also propagates from here, and either
   *  halts the reader for good. */
  push(chunk: Buffer): void {
    if (this.phase === Phase.Halted) return;
    try {
      this.consume(chunk);
    } catch (err) {
      this.phase = Phase.Halted; // the connection is closing; never deliver past a bad packet
      this.split = null;
      throw err;
    }
  }

  private consume(chunk: Buffer): void {
    const end = chunk.length;
    let pos = 0;
    const split = this.split;
    if (split !== null) {
      pos = split.body !== undefined ? this.fill(split, chunk, 0) : this.completeHead(split, chunk);
      if (pos < 0) return;
    }
    while (pos < end) {
      const header = chunk[pos]!;
      this.checkHeader(header);
      const length = parseVarint(chunk, pos + 1, end);
      if (length === VARINT_INCOMPLETE) {
        const held = (this.split ??= new SplitFrame());
        chunk.copy((held.head ??= Buffer.allocUnsafe(5)), 0, pos, end);
        held.headLen = end - pos;
        return;
      }
      const start = pos + 1 + this.checkLength(length);
      if (end - start >= length) {
        pos = start + length;
        if (!this.deliver(header, chunk.subarray(start, pos))) return;
      } else {
        const held = (this.split ??= new SplitFrame());
        held.header = header;
        held.body = Buffer.allocUnsafe(length);
        held.filled = 0;
        this.fill(held, chunk, start);
        return;
      }
    }
  }

  /** Appends the next bytes of a split fixed header; returns the chunk position after its packet
   *  (when the chunk completes it), or -1 while more bytes are needed. */
  private completeHead(split: SplitFrame, chunk: Buffer): number {
    const head = split.head as Buffer; // set with headLen
    const had = split.headLen;
    const take = Math.min(head.length - had, chunk.length);
    chunk.copy(head, had, 0, take);
    const length = parseVarint(head, 1, had + take);
    if (length === VARINT_INCOMPLETE) {
      split.headLen = had + take;
      return -1;
    }
    const headerBytes = 1 + this.checkLength(length);
    split.headLen = 0;
    split.header = head[0]!;
    split.body = Buffer.allocUnsafe(length);
    split.filled = 0;
    return this.fill(split, chunk, headerBytes - had);
  }

  /** Copies chunk bytes from `pos` into the split body; delivers it when full. Returns the chunk
   *  position after it, or -1 while more bytes are needed (or the reader halted). */
  private fill(split: SplitFrame, chunk: Buffer, pos: number): number {
    const body = split.body!;
    const n = Math.min(body.length - split.filled, chunk.length - pos);
    chunk.copy(body, split.filled, pos, pos + n);
    split.filled += n;
    if (split.filled < body.length) return -1;
    this.split = null;
    return this.deliver(split.header, body) ? pos + n : -1;
  }

  private deliver(header: number, body: Buffer): boolean {
    this.phase = Phase.Reading;
    if (this.handler.onFrame(header, body) === false) {
      this.phase = Phase.Halted;
      this.split = null;
      return false;
    }
    return true;
  }

  private checkHeader(header: number): void {
    // [MQTT-3.1.0-1] The first packet from a client must be CONNECT.
    if (this.phase === Phase.First && header >> 4 !== PacketType.CONNECT) {
      throw new ProtocolError(ReasonCode.ProtocolError, 'first packet is not CONNECT');
    }
    checkFixedHeader(header);
  }

  /** Validates a parsed remaining length; returns the byte count of its varint. */
  private checkLength(length: number): number {
    if (length < 0) throw new ProtocolError(ReasonCode.MalformedPacket, 'bad remaining length'); // [MQTT-1.5.5-1]
    const size = varintSize(length);
    const limit = this.phase === Phase.First ? this.maxConnectSize : this.maxPacketSize;
    if (1 + size + length > limit) {
      throw new ProtocolError(ReasonCode.PacketTooLarge, `packet of ${1 + size + length} bytes over the limit ${limit}`);
    }
    return size;
  }
}
