// PROXY protocol v1/v2 header parsing: every accepted form, every refusal, and partial input.
import t from 'tap';
import { parseProxyHeader, ProxyHeaderError, V2_MAX } from '../../src/broker/proxy-protocol.js';

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function v2(verCmd: number, family: number, addresses: number[], tlvs: number[] = []): Buffer {
  const body = Buffer.from([...addresses, ...tlvs]);
  const fixed = Buffer.from([verCmd, family, body.length >> 8, body.length & 0xff]);
  return Buffer.concat([SIG, fixed, body]);
}

const V4 = [10, 1, 2, 3, 192, 168, 0, 1, 0x30, 0x39, 0x07, 0x5b]; // 10.1.2.3:12345 -> 192.168.0.1:1883
const V6 = [0x20, 0x01, 0x0d, 0xb8, ...Array<number>(11).fill(0), 0x01, ...Array<number>(15).fill(0), 0x02, 0x00, 0x50, 0x07, 0x5b];

t.test('v1', async (t) => {
  const line = Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 55000 1883\r\n');
  t.same(parseProxyHeader(Buffer.concat([line, Buffer.from([0x10, 0x0c])])), { length: line.length, address: '203.0.113.7', port: 55000 });
  t.same(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 ::1 1 65535\r\n')), { length: 36, address: '2001:db8::1', port: 1 });
  t.same(parseProxyHeader(Buffer.from('PROXY UNKNOWN whatever\r\n')), { length: 24, address: undefined, port: undefined }, 'UNKNOWN: the socket address is used');
  for (let n = 0; n < line.length; n++) t.equal(parseProxyHeader(line.subarray(0, n)), null, `incomplete after ${n} bytes`);
  const bad = [
    'PROXY TCP4 203.0.113.7 127.0.0.1 55000\r\n',
    'PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n',
    'PROXY TCP6 203.0.113.7 ::1 1 2\r\n',
    'PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n',
    'PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n',
    'PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n',
    'PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n',
    'PROXZ TCP4',
    `PROXY UNKNOWN ${'x'.repeat(100)}\r\n`,
  ];
  for (const b of bad) t.throws(() => parseProxyHeader(Buffer.from(b)), ProxyHeaderError, JSON.stringify(b));
  t.throws(() => parseProxyHeader(Buffer.from(`PROXY ${'x'.repeat(101)}`)), ProxyHeaderError, 'no CRLF within 107 bytes');
});

t.test('v2', async (t) => {
  const h4 = v2(0x21, 0x11, V4);
  t.same(parseProxyHeader(Buffer.concat([h4, Buffer.from('rest')])), { length: 28, address: '10.1.2.3', port: 12345 });
  t.same(parseProxyHeader(v2(0x21, 0x21, V6)), { length: 52, address: '2001:db8::1', port: 80 });
  t.same(parseProxyHeader(v2(0x21, 0x11, V4, [0x04, 0x00, 0x02, 0xaa, 0xbb])), { length: 33, address: '10.1.2.3', port: 12345 }, 'TLVs are skipped');
  t.same(parseProxyHeader(v2(0x20, 0x00, [])), { length: 16, address: undefined, port: undefined }, 'LOCAL (health check)');
  t.same(parseProxyHeader(v2(0x20, 0x11, V4)), { length: 28, address: undefined, port: undefined }, 'LOCAL ignores addresses');
  t.same(parseProxyHeader(v2(0x21, 0x31, Array<number>(216).fill(0)))?.address, undefined, 'unix: the socket address is used');
  for (let n = 0; n < h4.length; n++) t.equal(parseProxyHeader(h4.subarray(0, n)), null, `incomplete after ${n} bytes`);
  t.throws(() => parseProxyHeader(v2(0x11, 0x11, V4)), ProxyHeaderError, 'version 1 in a v2 header');
  t.throws(() => parseProxyHeader(v2(0x22, 0x11, V4)), ProxyHeaderError, 'unknown command');
  t.throws(() => parseProxyHeader(v2(0x21, 0x41, V4)), ProxyHeaderError, 'unknown family');
  t.throws(() => parseProxyHeader(v2(0x21, 0x11, V4.slice(0, 8))), ProxyHeaderError, 'IPv4 addresses cut short');
  t.throws(() => parseProxyHeader(v2(0x21, 0x21, V4)), ProxyHeaderError, 'IPv6 addresses cut short');
  const huge = Buffer.concat([SIG, Buffer.from([0x21, 0x11, (V2_MAX >> 8) & 0xff, V2_MAX & 0xff])]);
  t.throws(() => parseProxyHeader(huge), ProxyHeaderError, 'a length over the bound is refused before it is buffered');
});

t.test('garbage is refused on its first bytes', async (t) => {
  t.throws(() => parseProxyHeader(Buffer.from([0x10])), ProxyHeaderError, 'an MQTT CONNECT without a header');
  t.throws(() => parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')), ProxyHeaderError);
  t.throws(() => parseProxyHeader(Buffer.from('PRX')), ProxyHeaderError);
  t.throws(() => parseProxyHeader(Buffer.from([0x0d, 0x0a, 0x0d, 0x0b])), ProxyHeaderError);
  t.equal(parseProxyHeader(Buffer.alloc(0)), null);
});
