// PROXY protocol v1 (text) and v2 (binary) headers, as a load balancer (HAProxy `send-proxy`,
// `send-proxy-v2`) puts them in front of the client's bytes. Pure parsing, no I/O:
// https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt
import { isIPv4, isIPv6 } from 'node:net';

export interface ProxyHeader {
  /** Bytes the header takes at the start of the stream; the client's bytes follow. */
  readonly length: number;
  /**
   * The client's source address, or undefined when the header carries none (v1 UNKNOWN, v2
   * LOCAL such as the proxy's own health checks, v2 UNSPEC/unix): the connection's own is used.
   */
  readonly address: string | undefined;
  readonly port: number | undefined;
}

/** Not a PROXY header: the connection is refused. */
export class ProxyHeaderError extends Error {
  override readonly name = 'ProxyHeaderError';
}

/** A v1 line is at most 107 bytes including CRLF (spec 2.1). */
const V1_MAX = 107;
const V1_PREFIX = Buffer.from('PROXY ');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED = 16;
/**
 * Largest v2 header accepted. The format allows 64 KiB of TLVs; proxies send a few dozen bytes
 * (HAProxy's SSL and unique-id TLVs included), and a pending header is buffered memory.
 */
export const V2_MAX = 4096;

/** True while `buf` could still be the start of `prefix`, and once it starts with it. */
function startsLike(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.compare(prefix, 0, n, 0, n) === 0;
}

/**
 * The PROXY header at the start of `buf`: null while more bytes are needed; throws
 * ProxyHeaderError as soon as the bytes cannot be one (garbage is refused on its first bytes).
 */
export function parseProxyHeader(buf: Buffer): ProxyHeader | null {
  if (buf.length === 0) return null;
  if (buf[0] === V1_PREFIX[0]) {
    if (!startsLike(buf, V1_PREFIX)) throw new ProxyHeaderError('not a PROXY v1 header');
    return parseV1(buf);
  }
  if (buf[0] === V2_SIGNATURE[0]) {
    if (!startsLike(buf, V2_SIGNATURE)) throw new ProxyHeaderError('not a PROXY v2 signature');
    return parseV2(buf);
  }
  throw new ProxyHeaderError('no PROXY protocol header');
}

function parseV1(buf: Buffer): ProxyHeader | null {
  const end = buf.indexOf('\r\n', 0, 'latin1');
  if (end < 0) {
    if (buf.length >= V1_MAX) throw new ProxyHeaderError('PROXY v1 line longer than 107 bytes');
    return null;
  }
  const length = end + 2;
  if (length > V1_MAX) throw new ProxyHeaderError('PROXY v1 line longer than 107 bytes');
  const fields = buf.toString('latin1', V1_PREFIX.length, end).split(' ');
  const proto = fields[0];
  // UNKNOWN: the proxy could not tell; the rest of the line is to be ignored.
  if (proto === 'UNKNOWN') return { length, address: undefined, port: undefined };
  if (fields.length !== 5) throw new ProxyHeaderError('PROXY v1 line needs protocol, two addresses and two ports');
  const [, src = '', dst = '', srcPort = '', dstPort = ''] = fields;
  const isIP = proto === 'TCP4' ? isIPv4 : proto === 'TCP6' ? isIPv6 : undefined;
  if (isIP === undefined) throw new ProxyHeaderError(`PROXY v1 protocol ${JSON.stringify(proto)}`);
  if (!isIP(src) || !isIP(dst)) throw new ProxyHeaderError(`PROXY v1 address not ${proto}`);
  const port = v1Port(srcPort);
  v1Port(dstPort);
  return { length, address: src, port };
}

function v1Port(text: string): number {
  // Decimal without leading zeros (spec 2.1), 0-65535.
  if (!/^(?:0|[1-9]\d{0,4})$/.test(text) || Number(text) > 65535) throw new ProxyHeaderError('PROXY v1 port out of range');
  return Number(text);
}

function parseV2(buf: Buffer): ProxyHeader | null {
  if (buf.length < V2_FIXED) return null;
  const verCmd = buf[12] as number;
  if (verCmd >> 4 !== 2) throw new ProxyHeaderError('PROXY v2 version is not 2');
  const command = verCmd & 0x0f;
  if (command > 1) throw new ProxyHeaderError('PROXY v2 command is neither LOCAL nor PROXY');
  const family = buf[13] as number;
  const length = V2_FIXED + buf.readUInt16BE(14);
  if (length > V2_MAX) throw new ProxyHeaderError(`PROXY v2 header longer than ${V2_MAX} bytes`);
  if (buf.length < length) return null;
  // LOCAL: the proxy speaking for itself (health checks); the addresses are to be ignored.
  if (command === 0) return { length, address: undefined, port: undefined };
  switch (family) {
    case 0x11: // TCP over IPv4
    case 0x12: // UDP over IPv4
      if (length < V2_FIXED + 12) throw new ProxyHeaderError('PROXY v2 IPv4 addresses truncated');
      return { length, address: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`, port: buf.readUInt16BE(24) };
    case 0x21: // TCP over IPv6
    case 0x22: // UDP over IPv6
      if (length < V2_FIXED + 36) throw new ProxyHeaderError('PROXY v2 IPv6 addresses truncated');
      return { length, address: ipv6Text(buf, 16), port: buf.readUInt16BE(48) };
    case 0x00: // UNSPEC
    case 0x31: // unix stream
    case 0x32: // unix datagram
      return { length, address: undefined, port: undefined };
    default:
      throw new ProxyHeaderError(`PROXY v2 address family 0x${family.toString(16)}`);
  }
}

/** The usual compressed text form (`2001:db8::1`) of the 16 bytes at `at`. */
function ipv6Text(buf: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(at + 2 * i).toString(16));
  // The WHATWG URL parser applies RFC 5952 compression; it keeps the brackets.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}
