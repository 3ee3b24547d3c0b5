// Bounds-checked reading of a packet body and growable writing of one. Both are reused module
// singletons (decoding and encoding are synchronous, never re-entered), so decoding a packet
// allocates only what the packet object itself holds.
import { ProtocolError } from './errors.js';
import { ReasonCode } from './reason-codes.js';
import { isMqttUtf8, parseVarint, varintSize, writeString, writeVarint, VARINT_MAX } from './strings.js';

export function malformed(message: string): ProtocolError {
  return new ProtocolError(ReasonCode.MalformedPacket, message);
}

export function protocolError(message: string): ProtocolError {
  return new ProtocolError(ReasonCode.ProtocolError, message);
}

/** A cursor over one packet body. Every read past `end` is a malformed packet. */
export class Reader {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;

  reset(buf: Buffer): this {
    this.buf = buf;
    this.pos = 0;
    this.end = buf.length;
    return this;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): void {
    if (this.end - this.pos < n) throw malformed(`truncated ${what}`);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  u16(what: string): number {
    this.need(2, what);
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  varint(what: string): number {
    const v = parseVarint(this.buf, this.pos, this.end);
    if (v < 0) throw malformed(`bad variable byte integer in ${what}`); // [MQTT-1.5.5-1]
    this.pos += varintSize(v);
    return v;
  }

  /** A length-prefixed UTF-8 string [MQTT-1.5.4-1] [MQTT-1.5.4-2]. */
  utf8(what: string): string {
    const len = this.u16(what);
    this.need(len, what);
    const start = this.pos;
    this.pos += len;
    if (!isMqttUtf8(this.buf, start, this.pos)) throw malformed(`invalid UTF-8 in ${what}`);
    return this.buf.toString('utf8', start, this.pos);
  }

  /** Length-prefixed binary data, as a view of the packet bytes. */
  binary(what: string): Buffer {
    const len = this.u16(what);
    this.need(len, what);
    const start = this.pos;
    this.pos += len;
    return this.buf.subarray(start, this.pos);
  }

  /** The rest of the body, as a view. */
  rest(): Buffer {
    const v = this.buf.subarray(this.pos, this.end);
    this.pos = this.end;
    return v;
  }

  /** Every decoder consumes exactly the remaining length. */
  done(what: string): void {
    if (this.pos !== this.end) throw malformed(`${this.end - this.pos} bytes left over in ${what}`);
  }
}

/** Appends to a growing scratch buffer; `finish` copies the body behind its fixed header. */
export class Writer {
  private buf = Buffer.allocUnsafe(1024);
  pos = 0;

  /** Makes room for `n` more bytes and returns the buffer to write them into at `pos`. */
  room(n: number): Buffer {
    if (this.pos + n > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
      this.buf.copy(grown, 0, 0, this.pos);
      this.buf = grown;
    }
    return this.buf;
  }

  u8(v: number): void {
    this.room(1)[this.pos++] = v;
  }

  u16(v: number): void {
    const b = this.room(2);
    b[this.pos++] = v >>> 8;
    b[this.pos++] = v & 0xff;
  }

  varint(v: number): void {
    this.pos = writeVarint(this.room(4), this.pos, v);
  }

  utf8(s: string): void {
    this.pos = writeString(this.room(2 + Buffer.byteLength(s)), this.pos, s);
  }

  binary(data: Buffer): void {
    if (data.length > 0xffff) throw new RangeError('binary data longer than 65535 bytes');
    this.u16(data.length);
    this.bytes(data);
  }

  bytes(data: Buffer): void {
    data.copy(this.room(data.length), this.pos);
    this.pos += data.length;
  }

  /** The packet: fixed header byte, remaining length, then everything written since `pos = 0`. */
  finish(header: number): Buffer {
    if (this.pos > VARINT_MAX) throw new RangeError('packet larger than the maximum remaining length');
    const out = Buffer.allocUnsafe(1 + varintSize(this.pos) + this.pos);
    out[0] = header;
    const start = writeVarint(out, 1, this.pos);
    this.buf.copy(out, start, 0, this.pos);
    this.pos = 0;
    return out;
  }
}
