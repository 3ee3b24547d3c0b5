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

export class FrameReader {
  /** Max remaining+header size for packets after the first; mutable (the broker may lower it). */
  maxPacketSize: number;
  private readonly maxConnectSize: number;
  private readonly handler: FrameHandler;
  private first = true;
  private halted = false;
  /** Start of a fixed header split across chunks (at most 4 bytes: header byte + 3 varint bytes). */
  private head: Buffer | undefined; // allocated on the first split header: most connections never see one
  private headLen = 0;
  /** The packet being assembled from several chunks. */
  private header = 0;
  private body: Buffer | undefined;
  private filled = 0;

  constructor(handler: FrameHandler, maxConnectSize: number, maxPacketSize: number) {
    this.handler = handler;
    this.maxConnectSize = maxConnectSize;
    this.maxPacketSize = maxPacketSize;
  }

  /** Bytes held for an incomplete packet (for bounds/metrics): a split fixed header, or the
   *  body received so far (its buffer is allocated once at the full remaining length). */
  get buffered(): number {
    return this.headLen + this.filled;
  }

  /** Bytes allocated for an incomplete packet: a split fixed header, or the whole body buffer
   *  (allocated at its declared length when its first bytes arrive). */
  get reserved(): number {
    return this.headLen + (this.body === undefined ? 0 : this.body.length);
  }

  /** Feeds socket bytes. Throws ProtocolError on a bad fixed header before buffering any body.
   *  An error thrown by onFrame (e.g. from a decoder) also propagates from here, and either
   *  halts the reader for good. */
  push(chunk: Buffer): void {
    if (this.halted) return;
    try {
      this.consume(chunk);
    } catch (err) {
      this.halted = true; // the connection is closing; never deliver past a bad packet
      throw err;
    }
  }

  private consume(chunk: Buffer): void {
    const end = chunk.length;
    let pos = 0;
    if (this.body !== undefined) {
      pos = this.fill(chunk, 0);
      if (this.body !== undefined) return;
    } else if (this.headLen > 0) {
      pos = this.completeHead(chunk);
      if (pos < 0) return;
    }
    while (pos < end) {
      const header = chunk[pos]!;
      this.checkHeader(header);
      const length = parseVarint(chunk, pos + 1, end);
      if (length === VARINT_INCOMPLETE) {
        chunk.copy((this.head ??= Buffer.allocUnsafe(5)), 0, pos, end);
        this.headLen = end - pos;
        return;
      }
      const start = pos + 1 + this.checkLength(length);
      if (end - start >= length) {
        pos = start + length;
        if (!this.deliver(header, chunk.subarray(start, pos))) return;
      } else {
        this.header = header;
        this.body = Buffer.allocUnsafe(length);
        this.filled = 0;
        this.fill(chunk, start);
        return;
      }
    }
  }

  /** Appends the next bytes of a split fixed header; returns the chunk position after it, or -1. */
  private completeHead(chunk: Buffer): number {
    const head = this.head as Buffer; // set when headLen > 0
    const had = this.headLen;
    const take = Math.min(head.length - had, chunk.length);
    chunk.copy(head, had, 0, take);
    const length = parseVarint(head, 1, had + take);
    if (length === VARINT_INCOMPLETE) {
      this.headLen = had + take;
      return -1;
    }
    const headerBytes = 1 + this.checkLength(length);
    const header = head[0]!;
    this.headLen = 0;
    const pos = headerBytes - had;
    this.header = header;
    this.body = Buffer.allocUnsafe(length);
    this.filled = 0;
    return this.fill(chunk, pos);
  }

  /** Copies chunk bytes from `pos` into the pending body; delivers it when full. */
  private fill(chunk: Buffer, pos: number): number {
    const body = this.body!;
    const n = Math.min(body.length - this.filled, chunk.length - pos);
    chunk.copy(body, this.filled, pos, pos + n);
    this.filled += n;
    if (this.filled < body.length) return chunk.length;
    this.body = undefined;
    this.filled = 0;
    return this.deliver(this.header, body) ? pos + n : chunk.length;
  }

  private deliver(header: number, body: Buffer): boolean {
    this.first = false;
    if (this.handler.onFrame(header, body) === false) this.halted = true;
    return !this.halted;
  }

  private checkHeader(header: number): void {
    // [MQTT-3.1.0-1] The first packet from a client must be CONNECT.
    if (this.first && header >> 4 !== PacketType.CONNECT) {
      throw new ProtocolError(ReasonCode.ProtocolError, 'first packet is not CONNECT');
    }
    checkFixedHeader(header);
  }

  /** Validates a parsed remaining length; returns the byte count of its varint. */
  private checkLength(length: number): number {
    if (length < 0) throw new ProtocolError(ReasonCode.MalformedPacket, 'bad remaining length'); // [MQTT-1.5.5-1]
    const size = varintSize(length);
    const limit = this.first ? this.maxConnectSize : this.maxPacketSize;
    if (1 + size + length > limit) {
      throw new ProtocolError(ReasonCode.PacketTooLarge, `packet of ${1 + size + length} bytes over the limit ${limit}`);
    }
    return size;
  }
}
