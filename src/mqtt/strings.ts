// UTF-8 string checks (MQTT 5.0 section 1.5.4) and Variable Byte Integers (section 1.5.5).
import { isUtf8 } from 'node:buffer';

/**
 * Whether bytes [start, end) are a valid MQTT UTF-8 string: well-formed UTF-8 [MQTT-1.5.4-1]
 * with no U+0000 [MQTT-1.5.4-2]. Topics and ids are nearly always ASCII, so one byte loop
 * answers; only a non-ASCII string pays for the full validator.
 */
export function isMqttUtf8(buf: Buffer, start: number, end: number): boolean {
  let ascii = true;
  for (let i = start; i < end; i++) {
    const b = buf[i]!;
    if (b === 0) return false; // well-formed UTF-8 encodes U+0000 only as 0x00
    if (b >= 0x80) ascii = false;
  }
  return ascii || isUtf8(buf.subarray(start, end));
}

/** Largest value a Variable Byte Integer can carry (4 bytes). */
export const VARINT_MAX = 268_435_455;

/** Returned by parseVarint when the buffer ends inside the integer. */
export const VARINT_INCOMPLETE = -1;
/** Returned by parseVarint for more than 4 bytes or a non-minimal encoding [MQTT-1.5.5-1]. */
export const VARINT_MALFORMED = -2;

/**
 * Reads a Variable Byte Integer at `pos`. Because only minimal encodings are accepted, the
 * number of bytes it took is always `varintSize(value)`, so no second result is needed.
 */
export function parseVarint(buf: Buffer, pos: number, end: number): number {
  let value = 0;
  let multiplier = 1;
  for (let i = 0; i < 4; i++) {
    if (pos + i >= end) return VARINT_INCOMPLETE;
    const b = buf[pos + i]!;
    value += (b & 0x7f) * multiplier;
    if ((b & 0x80) === 0) {
      // A last byte of 0 after the first byte means a shorter encoding existed.
      return b === 0 && i > 0 ? VARINT_MALFORMED : value;
    }
    multiplier *= 128;
  }
  return VARINT_MALFORMED;
}

/** Bytes needed to encode `value` (0..VARINT_MAX) as a Variable Byte Integer. */
export function varintSize(value: number): number {
  return value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4;
}

/** Writes `value` as a Variable Byte Integer at `pos`; returns the position after it. */
export function writeVarint(buf: Buffer, pos: number, value: number): number {
  do {
    let b = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) b |= 0x80;
    buf[pos++] = b;
  } while (value > 0);
  return pos;
}

/**
 * Writes a length-prefixed UTF-8 string at `pos` into a buffer the caller sized; returns the
 * position after it. Throws RangeError past 65535 bytes.
 */
export function writeString(buf: Buffer, pos: number, s: string): number {
  const len = buf.write(s, pos + 2, 'utf8');
  buf.writeUInt16BE(len, pos);
  return pos + 2 + len;
}
