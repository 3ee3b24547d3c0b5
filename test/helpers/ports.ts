// Free loopback ports for test processes.

import { createServer } from 'node:net';

/** Ports handed out by this process: the OS may offer a just-closed port again. */
const handedOut = new Set<number>();

/** A port that was free a moment ago (listen on 0, read it, close), never the same one twice. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen({ host, port: 0, exclusive: true }, () => {
        const address = server.address();
        const p = typeof address === 'object' && address !== null ? address.port : 0;
        server.close(() => resolve(p));
      });
    });
    if (port > 0 && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no unused free port on ${host} after 100 attempts`);
}
