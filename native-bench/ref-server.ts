// The runtime's reference server: the same job as `nbench serve` over node:net. Frames one
// CONNECT, answers a fixed CONNACK, then holds the connection (answering PINGREQ). A broker
// cannot accept connections faster or hold them cheaper than this on Node.js.
// Run: node native-bench/build/ref-server.js <port>
import net from 'node:net';
import { pathToFileURL } from 'node:url';

const CONNACK_V3 = Buffer.from([0x20, 2, 0, 0]);
const CONNACK_V5 = Buffer.from([0x20, 3, 0, 0, 0]);
const PINGRESP = Buffer.from([0xd0, 0]);
const MAX_CONNECT = 65536;
const EMPTY: Buffer = Buffer.alloc(0);

/** Header length of a complete packet at the start of buf (body follows), 0 if more bytes are
 * needed, -1 if the remaining length is malformed. */
function headerLength(buf: Buffer): number {
  let rem = 0;
  for (let i = 1; i <= 4; i++) {
    const b = buf[i];
    if (b === undefined) return 0;
    rem += (b & 0x7f) * 2 ** (7 * (i - 1));
    if ((b & 0x80) === 0) return buf.length >= 1 + i + rem ? 1 + i : 0;
  }
  return -1;
}

function bodyLength(buf: Buffer, hdr: number): number {
  let rem = 0;
  for (let i = 1; i < hdr; i++) rem += ((buf[i] ?? 0) & 0x7f) * 2 ** (7 * (i - 1));
  return rem;
}

function serve(socket: net.Socket): void {
  let pending = EMPTY;
  let connected = false;
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      const hdr = headerLength(pending);
      if (hdr < 0 || (!connected && pending.length > MAX_CONNECT)) return void socket.destroy();
      if (hdr === 0) break;
      const len = hdr + bodyLength(pending, hdr);
      const type = (pending[0] ?? 0) >> 4;
      if (!connected) {
        // the first packet must be CONNECT [MQTT-3.1.0-1]; the level follows the 6-byte protocol name
        if (type !== 1 || len - hdr < 7) return void socket.destroy();
        socket.write(pending[hdr + 6] === 5 ? CONNACK_V5 : CONNACK_V3);
        connected = true;
      } else if (type === 12) {
        socket.write(PINGRESP);
      } else if (type === 14) {
        return void socket.end();
      }
      pending = pending.length === len ? EMPTY : pending.subarray(len);
    }
    if (pending.length) pending = Buffer.from(pending); // do not pin the whole read chunk
  });
}

export function startRefServer(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ noDelay: true }, serve);
    server.maxConnections = 1_000_000;
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => resolve(server));
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const server = await startRefServer(Number(process.argv[2] ?? 1883));
  const addr = server.address();
  console.log(`LISTENING port=${typeof addr === 'object' && addr ? addr.port : 0}`);
  process.once('SIGTERM', () => process.exit(0));
}
